"""Pod actions: delete, evict (PDB-aware), read logs, collect diagnostics, clean up failed pods."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    Effect,
    KubeClient,
    check,
    check_name,
    check_namespace,
    check_target,
    client_for,
    declare_action,
    delete,
    delete_options,
    deletion_effect,
    grace_param,
    names_output,
    namespace_param,
    object_output,
    patch,
    read,
    rule,
    stamp,
    stamp_then_delete,
    stamped,
    target_params,
)
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, duration, integer, obj, string
from kurative.durations import parse_duration
from kurative.errors import ActionError, ObjectConflict, ObjectNotFound, PermanentActionError

MAX_LOG_CHARS = 64 * 1024  # a log tail lands in the journal: keep it bounded
# At most this much of a log is read (limitBytes: the kubelet sends the start of the tail asked for),
# of which the last MAX_LOG_CHARS are kept. A longer tail loses its most recent part, but a 40 MiB
# line is never read whole.
LOG_READ_BYTES = 1024 * 1024

_DELETE_PARAMS = target_params("pod", {"grace_period": grace_param()}, key="pod")
_POD_OUT = {"pod": string("name of the pod"), "uid": string("uid of the pod acted on")}

declare_action(
    name="delete_pod",
    summary="Delete a pod so that its controller recreates it; preconditioned on the pod's uid.",
    params=_DELETE_PARAMS,
    output=obj({**_POD_OUT, "deleted": boolean("false when the pod was already gone or replaced")}),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.PRECONDITIONED,
    rbac=(rule("", "pods", "get patch delete"),),
)

declare_action(
    name="evict_pod",
    summary="Evict a pod through the Eviction API, so PodDisruptionBudgets are honoured (429 = retry).",
    params=_DELETE_PARAMS,
    output=obj({**_POD_OUT, "evicted": boolean("false when the pod was already gone or replaced")}),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.PRECONDITIONED,
    rbac=(rule("", "pods", "get patch"), rule("", "pods/eviction", "create")),
)

declare_action(
    name="pod_logs",
    summary="Read the tail of a container's log (also of its previous instance after a crash).",
    params=target_params(
        "pod",
        {
            "container": string("container name (default: the only or first container)"),
            "tail_lines": integer("lines from the end", minimum=1, maximum=10000, default=200),
            "previous": boolean("read the previous, crashed instance", False),
            "since": duration("only lines newer than this"),
        },
        key="pod",
    ),
    output=obj(
        {
            "pod": string("name of the pod"),
            "container": string("container read"),
            "logs": string("the log text"),
            "lines": integer("number of lines returned"),
        }
    ),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(rule("", "pods", "get"), rule("", "pods/log", "get")),
)

declare_action(
    name="collect_diagnostics",
    summary="Gather a pod's spec, status, events and container logs into the step output (journal).",
    params=target_params(
        "pod",
        {
            "tail_lines": integer("log lines per container", minimum=0, maximum=5000, default=100),
            "previous": boolean("also read logs of crashed previous instances", True),
        },
        key="pod",
    ),
    output=obj(
        {
            "pod": object_output(),
            "events": {"type": "array", "description": "events about the pod, oldest first"},
            "logs": {"type": "object", "description": "container name -> log tail"},
            "previous_logs": {"type": "object", "description": "container name -> previous log tail"},
        }
    ),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(rule("", "pods", "get"), rule("", "pods/log", "get"), rule("", "events", "list")),
)

declare_action(
    name="cleanup_failed_pods",
    summary="Delete pods in phase Failed (evicted, OOM-killed Jobs) in a namespace, oldest first.",
    params=obj(
        {
            "namespace": namespace_param(),
            "label_selector": string("only pods matching this label selector"),
            "older_than": duration("only pods that finished longer ago than this", "0s"),
            "max": integer("delete at most this many", minimum=1, maximum=1000, default=100),
        },
        ("namespace",),
    ),
    output=obj(
        {
            "deleted": names_output("pods deleted"),
            "count": integer("number of pods deleted"),
        }
    ),
    risk=Risk.MEDIUM,
    # Each pod is stamped before any is deleted: a repeat deletes what is left of the same
    # selection, never `max` more (see cleanup_resumable).
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(rule("", "pods", "list patch delete"),),
)


def _pod_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}"


def _grace(params: Mapping[str, Any]) -> dict[str, Any]:
    grace = params.get("grace_period")
    return {} if grace is None else {"gracePeriodSeconds": int(grace)}


@implement("kubernetes.delete_pod")
async def delete_pod(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod")
    uid, deleted = await stamp_then_delete(
        ctx, client_for(ctx), _pod_path(namespace, pod), options=_grace(params)
    )
    return {"pod": pod, "uid": uid, "deleted": deleted}


@implement("kubernetes.evict_pod")
async def evict_pod(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod")
    client = client_for(ctx)
    version = await client.eviction_version()
    uid, evicted = await stamp_then_delete(
        ctx, client, _pod_path(namespace, pod), evict_version=version, options=_grace(params)
    )
    return {"pod": pod, "uid": uid, "evicted": evicted}


@check("kubernetes.delete_pod")
@check("kubernetes.evict_pod")
async def pod_deleted(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    path = _pod_path(check_name(params.get("namespace"), "namespace"), check_name(params.get("pod"), "pod"))
    return await deletion_effect(ctx, client_for(ctx), path)


def _containers(pod: Mapping[str, Any]) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]


async def _logs(
    ctx: ActionContext,
    namespace: str,
    pod: str,
    container: str,
    tail: int,
    previous: bool,
    since: float | None,
) -> str:
    query: dict[str, Any] = {"container": container, "tailLines": tail, "limitBytes": LOG_READ_BYTES}
    if previous:
        query["previous"] = True
    if since:
        query["sinceSeconds"] = max(1, int(since))
    text = await client_for(ctx).read_text(f"{_pod_path(namespace, pod)}/log", query=query)
    return text[-MAX_LOG_CHARS:]


@implement("kubernetes.pod_logs")
async def pod_logs(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod", mutating=False)
    found = await read(client_for(ctx), _pod_path(namespace, pod))
    names = _containers(found)
    container = params.get("container") or (names[0] if names else "")
    if container not in names:
        raise PermanentActionError(
            f"pod {namespace}/{pod} has no container {container!r} (it has {', '.join(names)})"
        )
    since = parse_duration(params["since"]) if params.get("since") else None
    text = await _logs(
        ctx,
        namespace,
        pod,
        container,
        int(params.get("tail_lines", 200)),
        bool(params.get("previous")),
        since,
    )
    return {"pod": pod, "container": container, "logs": text, "lines": len(text.splitlines())}


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


@implement("kubernetes.collect_diagnostics")
async def collect_diagnostics(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod", mutating=False)
    client = client_for(ctx)
    found = await read(client, _pod_path(namespace, pod))
    events = await client.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={pod}"},
    )
    items = sorted((events or {}).get("items") or [], key=_event_time)
    tail = int(params.get("tail_lines", 100))
    logs: dict[str, str] = {}
    previous_logs: dict[str, str] = {}
    restarted = {
        str(s.get("name"))
        for s in (found.get("status") or {}).get("containerStatuses") or []
        if int(s.get("restartCount") or 0) > 0
    }
    for container in _containers(found):
        # A diagnostic bundle is best effort: a log that cannot be read says why instead of failing.
        try:
            logs[container] = await _logs(ctx, namespace, pod, container, tail, False, None) if tail else ""
        except ActionError as exc:
            logs[container] = f"(logs unavailable: {exc})"
        if params.get("previous", True) and container in restarted and tail:
            try:
                previous_logs[container] = await _logs(ctx, namespace, pod, container, tail, True, None)
            except ActionError as exc:
                previous_logs[container] = f"(previous logs unavailable: {exc})"
    meta = found.get("metadata") or {}
    return {
        "pod": {
            "metadata": {
                k: meta.get(k) for k in ("name", "namespace", "uid", "labels", "ownerReferences") if k in meta
            },
            "spec": found.get("spec") or {},
            "status": found.get("status") or {},
        },
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count"),
                "time": _event_time(e),
            }
            for e in items
        ],
        "logs": logs,
        "previous_logs": previous_logs,
    }


def _finished_at(pod: Mapping[str, Any]) -> datetime.datetime:
    status = pod.get("status") or {}
    stamps = [
        str(((s.get("state") or {}).get("terminated") or {}).get("finishedAt") or "")
        for s in status.get("containerStatuses") or []
    ]
    stamps = [s for s in stamps if s] or [
        str(status.get("startTime") or (pod.get("metadata") or {}).get("creationTimestamp") or "")
    ]
    try:
        return max(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
    except ValueError:
        return datetime.datetime.now(datetime.UTC)


async def _failed_pods(
    ctx: ActionContext, params: Mapping[str, Any], *, mutating: bool = True
) -> tuple[str, list[Mapping[str, Any]]]:
    namespace = check_namespace(ctx, params.get("namespace"), mutating=mutating)
    query: dict[str, Any] = {"fieldSelector": "status.phase=Failed"}
    if params.get("label_selector"):
        query["labelSelector"] = params["label_selector"]
    listed = await client_for(ctx).request("GET", f"/api/v1/namespaces/{namespace}/pods", query=query)
    return namespace, list((listed or {}).get("items") or [])


async def _select(
    ctx: ActionContext, client: KubeClient, namespace: str, candidates: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Stamp each candidate (preconditioned on what was listed); the pods stamped."""
    if ctx.dry_run:
        return candidates
    selected = []
    for pod in candidates:
        meta = pod["metadata"]
        changes = {
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "annotations": stamp(ctx, pod),
        }
        try:
            selected.append(
                await patch(ctx, client, _pod_path(namespace, meta["name"]), {"metadata": changes})
            )
        except (ObjectNotFound, ObjectConflict):
            continue  # gone, replaced or changed since it was listed: left out of this step's selection
    return selected


@implement("kubernetes.cleanup_failed_pods")
async def cleanup_failed_pods(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Select (stamp) up to ``max`` pods, then delete them; a repeat finds its selection by the stamp
    and deletes what is left of it, so that one step never deletes more than ``max`` pods."""
    namespace, failed = await _failed_pods(ctx, params)
    client = client_for(ctx)
    targets = [p for p in failed if stamped(p, ctx)]
    if not targets:
        older_than = parse_duration(params.get("older_than", "0s"))
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=older_than)
        candidates = sorted((p for p in failed if _finished_at(p) <= cutoff), key=_finished_at)
        targets = await _select(ctx, client, namespace, candidates[: int(params.get("max", 100))])
    deleted: list[str] = []
    for pod in targets:
        meta = pod["metadata"]
        try:
            await delete(ctx, client, _pod_path(namespace, meta["name"]), delete_options(ctx, meta["uid"]))
        except (ObjectNotFound, ObjectConflict):
            continue  # already gone, or replaced by a new pod of the same name: not ours to delete
        deleted.append(meta["name"])
    return {"deleted": deleted, "count": len(deleted)}


@check("kubernetes.cleanup_failed_pods")
async def cleanup_resumable(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    """NOT_DONE: while pods this step stamped are left a repeat deletes only those; with none left the
    step selected nothing yet (a refused or throttled list, the common case) or deleted its whole
    selection, and a repeat selects afresh (failed pods only, up to ``max`` again: the limit in
    docs/operations.md)."""
    return Effect.NOT_DONE
