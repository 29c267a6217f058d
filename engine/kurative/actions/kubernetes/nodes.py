"""Node actions: cordon, uncordon, drain (Eviction API, PDB-aware), taint, untaint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    STRATEGIC_PATCH,
    KubeClient,
    KubeGuards,
    check_name,
    client_for,
    declare_action,
    delete_preconditioned,
    grace_param,
    guards_for,
    names_output,
    node_param,
    owner_of,
    patch,
    patch_read,
    read,
    retry_conflicts,
    rule,
)
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, duration, enum, obj, string
from kurative.durations import parse_duration
from kurative.errors import GuardRefused, ObjectNotFound, PermanentActionError, TemporaryActionError

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_NODE_RULE = rule("", "nodes", "get patch", cluster=True)
_TAINTS = {"type": "array", "description": "the node's taints after the change"}

for _action, _summary, _unchanged, _risk in (
    ("cordon", "Mark a node unschedulable (`kubectl cordon`).", "cordoned", Risk.MEDIUM),
    ("uncordon", "Mark a node schedulable again (`kubectl uncordon`).", "schedulable", Risk.LOW),
):
    declare_action(
        name=f"{_action}",
        summary=_summary,
        params=obj({"node": node_param()}, ("node",)),
        output=obj(
            {"node": string("node name"), "changed": boolean(f"false when it was already {_unchanged}")}
        ),
        risk=_risk,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        rbac=(_NODE_RULE,),
    )

declare_action(
    name="drain",
    summary="Cordon a node, evict all but DaemonSet and mirror pods (PDB-aware); fail with what is left.",
    params=obj(
        {
            "node": node_param(),
            "timeout": duration("give up (and report what is left) after this long", "5m"),
            "grace_period": grace_param("each pod"),
            "delete_emptydir_data": boolean(
                "evict pods that use emptyDir volumes (their data is lost)", False
            ),
            "force": boolean("also evict pods that no controller will recreate", False),
        },
        ("node",),
    ),
    output=obj(
        {
            "node": string("node name"),
            "evicted": names_output("namespace/pod evicted"),
            "skipped": names_output("DaemonSet and mirror pods"),
        }
    ),
    risk=Risk.HIGH,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(
        _NODE_RULE,
        # get: each evicted pod is read until it is gone (or replaced, after a 429 or 409)
        rule("", "pods", "get list", cluster=True),
        rule("", "pods/eviction", "create", cluster=True),
    ),
)

declare_action(
    name="taint",
    summary="Add or update a taint on a node (`kubectl taint`).",
    params=obj(
        {
            "node": node_param(),
            "key": string("taint key"),
            "value": string("taint value", default=""),
            "effect": enum("taint effect", TAINT_EFFECTS, "NoSchedule"),
        },
        ("node", "key"),
    ),
    output=obj({"node": string("node name"), "taints": _TAINTS, "changed": boolean("whether it changed")}),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(_NODE_RULE,),
)

declare_action(
    name="untaint",
    summary="Remove a taint (by key, optionally only one effect) from a node.",
    params=obj(
        {
            "node": node_param(),
            "key": string("taint key"),
            "effect": enum("only this effect", TAINT_EFFECTS),
        },
        ("node", "key"),
    ),
    output=obj({"node": string("node name"), "taints": _TAINTS, "changed": boolean("whether it changed")}),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(_NODE_RULE,),
)


MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PROTECTED = "keep:protected namespace"
log = structlog.get_logger("kurative.actions.kubernetes")


def _node_path(params: Mapping[str, Any]) -> tuple[str, str]:
    node = check_name(params.get("node"), "node")
    return node, f"/api/v1/nodes/{node}"


async def _set_unschedulable(ctx: ActionContext, client: KubeClient, path: str, value: bool) -> bool:
    node = await read(client, path)
    if bool((node.get("spec") or {}).get("unschedulable")) == value:
        return False
    await patch(ctx, client, path, {"spec": {"unschedulable": True if value else None}}, STRATEGIC_PATCH)
    return True


@implement("kubernetes.cordon")
async def cordon(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = _node_path(params)
    return {"node": node, "changed": await _set_unschedulable(ctx, client_for(ctx), path, True)}


@implement("kubernetes.uncordon")
async def uncordon(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = _node_path(params)
    return {"node": node, "changed": await _set_unschedulable(ctx, client_for(ctx), path, False)}


# --- drain ---------------------------------------------------------------------------------------


def _pod_name(pod: Mapping[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _classify(pod: Mapping[str, Any], params: Mapping[str, Any], guards: KubeGuards) -> str | None:
    """Why a pod is not evicted ("skip:…" is fine to leave, "keep:…" blocks the drain), or None."""
    meta = pod.get("metadata") or {}
    protected = guards.refusal(str(meta.get("namespace"))) is not None
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return "skip:mirror pod"
    owner = owner_of(pod)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        # finished: nothing runs, so it never blocks a drain; one in a protected namespace stays
        return "skip:finished pod in a protected namespace" if protected else None
    if owner is not None and owner.get("kind") == "DaemonSet":
        return "skip:DaemonSet pod"
    if meta.get("deletionTimestamp"):
        return None  # going already: never evicted again, only waited for, wherever it is
    if protected:
        return PROTECTED
    if owner is None and not params.get("force"):
        return "keep:not managed by a controller (set force to evict it)"
    volumes = (pod.get("spec") or {}).get("volumes") or []
    if any("emptyDir" in v for v in volumes) and not params.get("delete_emptydir_data"):
        return "keep:uses emptyDir data (set delete_emptydir_data to evict it)"
    return None


async def _evict_until_gone(
    ctx: ActionContext,
    client: KubeClient,
    pod: Mapping[str, Any],
    version: str,
    grace: int | None,
    deadline: float,
) -> bool:
    """Evict one pod, retrying PDB refusals (429) with backoff, then wait until it is gone.

    A pod already terminating (evicted by an earlier run) is not evicted again, only waited for:
    as `kubectl drain` does, the drain is done when each pod is gone or replaced by one with
    another uid, not when its deletion was merely requested.
    """
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    options = None if grace is None else {"gracePeriodSeconds": grace}
    delay = 1.0
    while not meta.get("deletionTimestamp"):
        try:
            if not await delete_preconditioned(
                ctx, client, path, meta, evict_version=version, options=options
            ):
                return True  # gone already, or replaced by a new pod with the same name
            break
        except TemporaryActionError as exc:
            wait = min(delay if exc.retry_after is None else max(exc.retry_after, 0.5), 5.0)
            await log.ainfo(
                "drain_eviction_refused", pod=_pod_name(pod), retry_in=wait, reason=str(exc)[:200]
            )
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)
            delay = min(delay * 2, 5.0)
    if ctx.dry_run:
        return True
    while time.monotonic() < deadline:
        try:
            current = await read(client, path)
        except ObjectNotFound:
            return True
        if current["metadata"].get("uid") != meta["uid"]:
            return True
        await asyncio.sleep(0.2)
    return False


async def _evict_all(
    ctx: ActionContext,
    client: KubeClient,
    targets: list[Mapping[str, Any]],
    version: str,
    grace: int | None,
    deadline: float,
) -> list[bool]:
    """Evict the pods concurrently; when one eviction fails, stop the others before raising.

    A step recorded as failed must not go on evicting: the other evictions are cancelled and
    awaited, so that none sends another request once the error reaches the runner.
    """
    tasks = [
        asyncio.create_task(_evict_until_gone(ctx, client, pod, version, grace, deadline)) for pod in targets
    ]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(slots=True)
class _DrainPlan:
    """The pods on a node, sorted by what a drain does with them."""

    targets: list[Mapping[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # DaemonSet and mirror pods: left in place
    kept: list[str] = field(default_factory=list)  # block the drain until params or pods change
    guarded: list[str] = field(default_factory=list)  # in protected namespaces: never evicted


async def _plan_drain(
    ctx: ActionContext, client: KubeClient, node: str, params: Mapping[str, Any]
) -> _DrainPlan:
    """Classify the node's pods; refuse (permanently) a drain that protected pods make impossible."""
    listed = await client.request("GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
    guards = guards_for(ctx)
    plan = _DrainPlan()
    # Terminating pods stay targets: the drain waits until they are gone (see _evict_until_gone).
    for pod in (listed or {}).get("items") or []:
        reason = _classify(pod, params, guards)
        if reason is None:
            plan.targets.append(pod)
        elif reason.startswith("skip:"):
            plan.skipped.append(_pod_name(pod))
        elif reason == PROTECTED:
            plan.guarded.append(_pod_name(pod))
        else:
            plan.kept.append(f"{_pod_name(pod)} ({reason[5:]})")
    if plan.guarded:
        raise GuardRefused(
            f"cannot drain node {node}: pod(s) {', '.join(sorted(plan.guarded))} are in a protected "
            "namespace, and kurative does not evict pods there (configure safety.protectedNamespaces and "
            "safety.namespaces in the daemon settings, or move those pods off the node first)"
        )
    return plan


@implement("kubernetes.drain")
async def drain(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = _node_path(params)
    client = client_for(ctx)
    deadline = time.monotonic() + parse_duration(params.get("timeout", "5m"))
    # Refused before anything changes when protected pods make the drain impossible (no retry helps);
    # planned again after cordoning, so that a pod placed in between is not missed.
    await _plan_drain(ctx, client, node, params)
    await _set_unschedulable(ctx, client, path, True)
    plan = await _plan_drain(ctx, client, node, params)
    targets, skipped, kept = plan.targets, plan.skipped, plan.kept
    version = await client.eviction_version()
    grace = params.get("grace_period")
    results = await _evict_all(ctx, client, targets, version, grace, deadline)
    evicted = sorted(_pod_name(p) for p, ok in zip(targets, results, strict=True) if ok)
    left = sorted(
        _pod_name(p) + " (eviction not finished in time)"
        for p, ok in zip(targets, results, strict=True)
        if not ok
    )
    remaining = sorted(kept) + left
    if remaining:
        raise TemporaryActionError(
            f"drain of node {node} incomplete: evicted {len(evicted)} pod(s) "
            f"({', '.join(evicted) or 'none'}); still there: {', '.join(remaining)}"
        )
    return {"node": node, "evicted": evicted, "skipped": sorted(skipped)}


# --- taints --------------------------------------------------------------------------------------


@implement("kubernetes.taint")
@retry_conflicts
async def taint(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = _node_path(params)
    key = params.get("key")
    if not isinstance(key, str) or not key:
        raise PermanentActionError(f"taint key must be a non-empty string, got {key!r}")
    value = str(params.get("value") or "")
    effect = str(params.get("effect") or "NoSchedule")
    if effect not in TAINT_EFFECTS:
        raise PermanentActionError(f"taint effect must be one of {', '.join(TAINT_EFFECTS)}, got {effect!r}")
    return await _write_taints(
        ctx,
        node,
        path,
        lambda taints: (
            [t for t in taints if (t.get("key"), t.get("effect")) != (key, effect)]
            + [{"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}]
        ),
    )


@implement("kubernetes.untaint")
@retry_conflicts
async def untaint(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = _node_path(params)
    key = params.get("key")
    effect = params.get("effect")
    return await _write_taints(
        ctx,
        node,
        path,
        lambda taints: [t for t in taints if not (t.get("key") == key and effect in (None, t.get("effect")))],
    )


Taints = list[dict[str, Any]]


async def _write_taints(
    ctx: ActionContext, node: str, path: str, change: Callable[[Taints], Taints]
) -> Mapping[str, Any]:
    client = client_for(ctx)
    current = await read(client, path)
    taints = list((current.get("spec") or {}).get("taints") or [])
    wanted = change(taints)
    normal = sorted(({k: v for k, v in t.items() if k != "timeAdded"} for t in taints), key=repr)
    if normal == sorted(({k: v for k, v in t.items() if k != "timeAdded"} for t in wanted), key=repr):
        return {"node": node, "taints": taints, "changed": False}
    # The taints list is atomic (no merge key): send the whole list, preconditioned on what was read.
    updated = await patch_read(ctx, client, path, current, {"spec": {"taints": wanted or None}})
    return {"node": node, "taints": ((updated or {}).get("spec") or {}).get("taints") or [], "changed": True}
