"""Workload actions: find a pod's owner, scale, restart, roll back, set resources, wait, patch HPAs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    REVISION_ANNOTATION,
    STAMP_ANNOTATION,
    STRATEGIC_PATCH,
    Effect,
    KubeClient,
    alternatives,
    check,
    check_name,
    check_namespace,
    check_target,
    client_for,
    declare_action,
    guards_for,
    kind_param,
    name_param,
    namespace_param,
    now_iso,
    owner_of,
    parse_quantity,
    patch,
    patch_read,
    read,
    retry_conflicts,
    rule,
    stamp,
    stamp_effect,
    stamped,
    target_params,
)
from kurative.actions.kubernetes._kinds import KINDS, Kind, object_path
from kurative.actions.registry import implement
from kurative.actions.schema import JSON, boolean, duration, integer, obj, string
from kurative.durations import parse_duration
from kurative.errors import GuardRefused, PermanentActionError, TemporaryActionError

SCALABLE = ("Deployment", "StatefulSet")
RESTARTABLE = ("Deployment", "StatefulSet", "DaemonSet")
# What resolve_owner follows: the controllers of pods that kurative can act on.
CONTROLLER_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
OWNER_KINDS = (*CONTROLLER_KINDS, "Pod")

_RESOURCE_LIST = {
    "type": "object",
    "description": "cpu and/or memory quantities, e.g. {cpu: 500m, memory: 512Mi}",
    "properties": {
        "cpu": {"type": ["string", "number"], "description": "CPU quantity (500m, 2)"},
        "memory": {"type": "string", "description": "memory quantity (512Mi, 2Gi)"},
    },
    "additionalProperties": False,
}

_WORKLOAD_RULE = rule("apps", ("daemonsets", "deployments", "statefulsets"), "get patch")


def _workload_params(kinds: tuple[str, ...], extra: JSON | None = None, **schema: Any) -> JSON:
    """Params naming one workload: namespace, kind (one of ``kinds``), name and ``extra``."""
    return obj(
        {
            "namespace": namespace_param(),
            "kind": kind_param(kinds),
            "name": name_param("workload"),
            **(extra or {}),
        },
        ("namespace", "kind", "name"),
        **schema,
    )


declare_action(
    name="resolve_owner",
    summary="Follow a pod's controllers up to its workload (ReplicaSet -> Deployment, Job -> CronJob).",
    params=target_params("pod", key="pod"),
    output=obj(
        {
            "kind": kind_param(OWNER_KINDS, "kind of the top owner (Pod when the pod has none)"),
            "name": string("name of the top owner"),
            "api_version": string("apiVersion of the top owner"),
            "uid": string("uid of the top owner"),
            "chain": {
                "type": "array",
                "description": "every object from the pod to the top owner: {kind, name}",
            },
        }
    ),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(
        rule("", "pods", "get"),
        rule("apps", "replicasets", "get"),
        rule("batch", "jobs", "get"),
    ),
)

declare_action(
    name="scale",
    summary="Set the replicas of a Deployment or StatefulSet, within min/max guard bounds.",
    params=_workload_params(
        SCALABLE,
        {
            "replicas": integer("desired replicas", minimum=0),
            "delta": integer("change relative to the current replicas (e.g. 2 or -1)"),
            "min": integer("never go below this (guard)", minimum=0, default=0),
            "max": integer("never go above this (guard; also capped by the daemon settings)", minimum=0),
        },
        **alternatives("oneOf", ("replicas", "delta"), "give exactly one of replicas or delta"),
    ),
    output=obj(
        {
            "previous": integer("replicas before"),
            "replicas": integer("replicas after"),
            "clamped": boolean("true when min/max changed the requested value"),
        }
    ),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(
        rule("apps", ("deployments", "statefulsets"), "get patch"),
        rule("", ("pods", "resourcequotas"), "list"),
    ),
)

declare_action(
    name="rollout_restart",
    summary="Restart a workload's pods with a rolling update, as `kubectl rollout restart` does.",
    params=_workload_params(RESTARTABLE),
    output=obj(
        {
            "restarted_at": string("timestamp written to the pod template"),
            "generation": integer("metadata.generation after the restart"),
        }
    ),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(_WORKLOAD_RULE,),
)

declare_action(
    name="rollback_deployment",
    summary="Roll a Deployment back to an earlier ReplicaSet's template (`kubectl rollout undo`).",
    params=target_params(
        "Deployment",
        {"to_revision": integer("revision to return to (default: the previous one)", minimum=1)},
    ),
    output=obj(
        {
            "from_revision": integer("revision that was current"),
            "to_revision": integer("revision whose template is now current"),
            "replicaset": string("ReplicaSet that carried that revision"),
            "already_applied": boolean(
                "this step had rolled it back already (run again after its record was lost): nothing"
                " was changed, and the revisions describe the Deployment as it is now"
            ),
        }
    ),
    risk=Risk.HIGH,
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(rule("apps", "deployments", "get patch"), rule("apps", "replicasets", "list")),
)

declare_action(
    name="set_resources",
    summary="Set a container's requests/limits on a workload, refused above the configured caps.",
    params=_workload_params(
        RESTARTABLE,
        {
            "container": string("container name (default: the only container)"),
            "requests": _RESOURCE_LIST,
            "limits": _RESOURCE_LIST,
            "max_cpu": {"type": ["string", "number"], "description": "cap for any CPU value (guard)"},
            "max_memory": string("cap for any memory value (guard)"),
        },
        **alternatives("anyOf", ("requests", "limits"), "give requests and/or limits"),
    ),
    output=obj(
        {
            "container": string("container changed"),
            "previous": {"type": "object", "description": "resources before"},
            "resources": {"type": "object", "description": "resources after"},
        }
    ),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(_WORKLOAD_RULE,),
)

declare_action(
    name="wait_rollout",
    summary="Wait until a workload's rollout completes (`kubectl rollout status`), or fail at timeout.",
    params=_workload_params(
        RESTARTABLE,
        {"timeout": duration("how long to wait", "5m"), "interval": duration("how often to look", "2s")},
    ),
    output=obj(
        {
            "complete": boolean("true when the rollout finished"),
            "replicas": integer("desired replicas"),
            "updated": integer("replicas on the current template"),
            "available": integer("available replicas"),
            "message": string("what the rollout is waiting for, as kubectl words it"),
        }
    ),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(rule("apps", ("daemonsets", "deployments", "statefulsets"), "get"),),
)

declare_action(
    name="patch_hpa",
    summary="Change a HorizontalPodAutoscaler's minReplicas/maxReplicas (bounded by the settings).",
    params=target_params(
        "HorizontalPodAutoscaler",
        {
            "min_replicas": integer("new minReplicas", minimum=1),
            "max_replicas": integer("new maxReplicas", minimum=1),
        },
        **alternatives("anyOf", ("min_replicas", "max_replicas"), "give min_replicas and/or max_replicas"),
    ),
    output=obj(
        {
            "previous": {"type": "object", "description": "{min_replicas, max_replicas} before"},
            "min_replicas": integer("minReplicas after"),
            "max_replicas": integer("maxReplicas after"),
        }
    ),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(rule("autoscaling", "horizontalpodautoscalers", "get patch"),),
)


SCALE_QUOTA_KEYS = ("pods", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")


async def _workload(
    ctx: ActionContext, params: Mapping[str, Any], kinds: tuple[str, ...]
) -> tuple[str, str, str]:
    """(kind, name, path) of the workload a step names, after the guards."""
    namespace = check_namespace(ctx, params.get("namespace"))
    kind = params.get("kind")
    if kind not in kinds:
        raise PermanentActionError(f"kind must be one of {', '.join(kinds)}, got {kind!r}")
    name = check_name(params.get("name"), f"{kind} name")
    _version, path = await object_path(client_for(ctx), KINDS[str(kind)], namespace, name)
    return str(kind), name, path


def _int_param(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentActionError(f"{key} must be an integer, got {value!r}")
    return value


# --- resolve_owner -------------------------------------------------------------------------------


def _owner_kind(ref: Mapping[str, Any]) -> Kind | None:
    """The controller an ownerReference names: one of :data:`CONTROLLER_KINDS`, same kind *and* group.

    A custom resource may be called ``Deployment`` too; taking it for apps/v1 would make the next
    steps act on whatever apps Deployment has its name. Other known kinds own pods too (the Node a
    mirror pod's kubelet names) but are no workload: the pod is then its own top owner.
    """
    kind = KINDS.get(str(ref.get("kind"))) if ref.get("kind") in CONTROLLER_KINDS else None
    api_version = str(ref.get("apiVersion") or "")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return kind if kind is not None and group == kind.group else None


@implement("kubernetes.resolve_owner")
async def resolve_owner(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod", mutating=False)
    client = client_for(ctx)
    current = await read(client, f"/api/v1/namespaces/{namespace}/pods/{pod}")
    chain = [{"kind": "Pod", "name": pod}]
    meta = current["metadata"]
    top = {
        "kind": current.get("kind") or "Pod",
        "name": meta["name"],
        "api_version": current.get("apiVersion", "v1"),
        "uid": meta.get("uid", ""),
    }
    # Only these hops lead somewhere kurative can act on; any other controller ends the walk. The
    # ownerReference already names the owner (kind, name, apiVersion, uid): only a ReplicaSet or a
    # Job is read, to follow its own owner. The top owner is never read, so the declared RBAC
    # (pods, replicasets, jobs: get) is all the walk needs.
    while (ref := owner_of(current)) is not None and (kind := _owner_kind(ref)) is not None:
        # the API server does not check an ownerReference's name: it goes into a path, and on to later steps
        name = check_name(ref.get("name"), f"{kind.kind} name in the ownerReference of {chain[-1]['name']}")
        chain.append({"kind": kind.kind, "name": name})
        top = {
            "kind": kind.kind,
            "name": name,
            "api_version": str(ref.get("apiVersion") or ""),
            "uid": str(ref.get("uid") or ""),
        }
        if kind.kind not in ("ReplicaSet", "Job"):
            break
        _v, path = await object_path(client, kind, namespace, name)
        current = await read(client, path)
    return {**top, "chain": chain}


# --- scale ---------------------------------------------------------------------------------------


def _pod_needs(template: Mapping[str, Any]) -> dict[str, float]:
    needs = {"pods": 1.0}
    for container in (template.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource, value in (resources.get(section) or {}).items():
                if resource in ("cpu", "memory"):
                    key = f"{section}.{resource}"
                    needs[key] = needs.get(key, 0.0) + parse_quantity(value, key)
    for resource in ("cpu", "memory"):
        if f"requests.{resource}" in needs:
            needs[resource] = needs[f"requests.{resource}"]
    return needs


async def _check_quota(
    client: KubeClient, namespace: str, workload: Mapping[str, Any], current: int, target: int
) -> None:
    """Refuse a scale-up that a ResourceQuota would stop, instead of leaving pods that never start.

    The API server accepts the new replica count and only the ReplicaSet controller later fails to
    create the pods; so usage is summed here from the namespace's live pods, as the quota admission
    will count it.
    """
    quotas = ((await client.request("GET", f"/api/v1/namespaces/{namespace}/resourcequotas")) or {}).get(
        "items"
    ) or []
    limited = [
        q for q in quotas if any(k in ((q.get("spec") or {}).get("hard") or {}) for k in SCALE_QUOTA_KEYS)
    ]
    if not limited:
        return
    pods = ((await client.request("GET", f"/api/v1/namespaces/{namespace}/pods")) or {}).get("items") or []
    selector = (((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items()
    used: dict[str, float] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or selector <= labels.items():
            continue  # the workload's own pods are counted from its replica count, created or not yet
        for key, value in _pod_needs(pod).items():
            used[key] = used.get(key, 0.0) + value
    per_pod = _pod_needs((workload.get("spec") or {}).get("template") or {})
    for key, value in per_pod.items():
        used[key] = used.get(key, 0.0) + current * value
    extra = target - current
    name = workload["metadata"]["name"]
    for quota in limited:
        for key, hard in ((quota.get("spec") or {}).get("hard") or {}).items():
            if key not in SCALE_QUOTA_KEYS:
                continue
            limit = parse_quantity(hard, f"quota {key}")
            wanted = used.get(key, 0.0) + extra * per_pod.get(key, 0.0)
            if per_pod.get(key) is None and key != "pods":
                raise PermanentActionError(
                    f"cannot scale {namespace}/{name} to {target}: ResourceQuota {quota['metadata']['name']} "
                    f"limits {key} but the pod template sets none (new pods would be rejected)"
                )
            if wanted > limit + 1e-9:
                raise PermanentActionError(
                    f"cannot scale {namespace}/{name} from {current} to {target}: it would exceed "
                    f"ResourceQuota {quota['metadata']['name']} ({key}: {_fmt(used.get(key, 0.0))} used + "
                    f"{_fmt(extra * per_pod.get(key, 0.0))} needed > {hard} allowed)"
                )


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


@implement("kubernetes.scale")
@retry_conflicts
async def scale(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    kind, name, path = await _workload(ctx, params, SCALABLE)
    replicas, delta = _int_param(params, "replicas"), _int_param(params, "delta")
    low, high = _int_param(params, "min") or 0, _int_param(params, "max")
    if (replicas is None) == (delta is None):
        raise PermanentActionError("give exactly one of replicas or delta")
    guards = guards_for(ctx)
    client = client_for(ctx)
    current_obj = await read(client, path)
    current = int((current_obj.get("spec") or {}).get("replicas", 1))
    if delta is not None and stamped(current_obj, ctx):
        # A relative change already applied by this very step (a retry after a lost answer).
        return {"previous": current - delta, "replicas": current, "clamped": False}
    requested = replicas if replicas is not None else current + (delta or 0)
    target = max(low, requested)
    if high is not None:
        target = min(high, target)
    if target > guards.max_replicas:
        raise GuardRefused(
            f"scaling {kind} {params['namespace']}/{name} to {target} exceeds the configured maximum of "
            f"{guards.max_replicas} replicas"
        )
    if target > current:
        await _check_quota(client, str(params["namespace"]), current_obj, current, target)
    await patch_read(ctx, client, path, current_obj, {"spec": {"replicas": target}}, stamping=True)
    return {"previous": current, "replicas": target, "clamped": target != requested}


# --- rollout_restart -----------------------------------------------------------------------------


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@implement("kubernetes.rollout_restart")
@retry_conflicts
async def rollout_restart(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    _kind, _name, path = await _workload(ctx, params, RESTARTABLE)
    client = client_for(ctx)
    current = await read(client, path)
    if stamped(current, ctx):
        # This very step restarted it already, and its journal record was lost (a journal restored
        # from a backup taken before the step finished): a second restart would roll the pods again.
        template = ((current.get("spec") or {}).get("template") or {}).get("metadata") or {}
        return {
            "restarted_at": str((template.get("annotations") or {}).get(RESTARTED_AT, "")),
            "generation": int(current["metadata"].get("generation", 0)),
        }
    restarted_at = now_iso()
    changes = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}}}
    updated = await patch_read(
        ctx, client, path, current, changes, stamping=True, content_type=STRATEGIC_PATCH
    )
    return {
        "restarted_at": restarted_at,
        "generation": int((updated or {}).get("metadata", {}).get("generation", 0)),
    }


# --- rollback_deployment -------------------------------------------------------------------------


def _revision(obj: Mapping[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _bare_template(template: Mapping[str, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(template))
    labels = (copy.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    return copy


def _previous_replicaset(
    owned: list[dict[str, Any]], wanted: int | None, where: str
) -> tuple[int, dict[str, Any]]:
    """(newest revision, the ReplicaSet to roll back to), chosen as `kubectl rollout undo` does.

    Only the ReplicaSets' own revisions count, never the Deployment's annotation: until the
    controller has synced a fresh change, that annotation still names the revision before it. The
    default target is the ReplicaSet with the highest revision below the newest one.
    """
    revisions = sorted(((_revision(rs), rs) for rs in owned), key=lambda pair: pair[0], reverse=True)
    latest = revisions[0][0] if revisions else 0
    if wanted is not None:
        found = next((rs for revision, rs in revisions if revision == wanted), None)
        if found is None:
            known = ", ".join(str(r) for r, _rs in reversed(revisions)) or "none"
            raise PermanentActionError(
                f"deployment {where} has no revision {wanted} to roll back to (revisions: {known})"
            )
        return latest, found
    if len(revisions) < 2:
        raise PermanentActionError(
            f"deployment {where} has no previous revision to roll back to "
            f"(current revision {latest}, no older ReplicaSet kept)"
        )
    return latest, revisions[1][1]


@implement("kubernetes.rollback_deployment")
@retry_conflicts
async def rollback_deployment(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, name = check_target(ctx, params, "Deployment name")
    wanted = _int_param(params, "to_revision")
    client = client_for(ctx)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    deployment = await read(client, path)
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    listed = await client.request(
        "GET",
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        query={"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))},
    )
    uid = deployment["metadata"]["uid"]
    owned = [rs for rs in (listed or {}).get("items") or [] if (owner_of(rs) or {}).get("uid") == uid]
    if stamped(deployment, ctx):
        # This very step rolled it back already, and its journal record was lost (a journal restored
        # from a backup taken before the step finished): "the previous revision" is now the one it
        # rolled back from, and a second rollback would undo the first.
        current = (deployment.get("spec") or {}).get("template")
        found: dict[str, Any] = {"already_applied": True}
        for rs in owned:
            if _bare_template((rs.get("spec") or {}).get("template") or {}) == current:
                found.update(to_revision=_revision(rs), replicaset=rs["metadata"]["name"])
                earlier = [_revision(other) for other in owned if other is not rs]
                if earlier:
                    found["from_revision"] = max(earlier)
        return found
    if (deployment.get("spec") or {}).get("paused"):
        # as kubectl: the controller would not roll out the restored template while it is paused
        raise PermanentActionError(
            f"deployment {namespace}/{name} is paused: resume it first "
            f"(kubectl rollout resume deployment/{name}), then roll it back"
        )
    current_revision, target = _previous_replicaset(owned, wanted, f"{namespace}/{name}")
    template = _bare_template((target.get("spec") or {}).get("template") or {})
    result = {
        "from_revision": current_revision,
        "to_revision": _revision(target),
        "replicaset": target["metadata"]["name"],
        "already_applied": False,
    }
    if template == (deployment.get("spec") or {}).get("template"):
        return result  # kubectl: "skipped rollback (current template already matches revision N)"
    operations: list[dict[str, Any]] = [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/template", "value": template},
    ]
    stamps = stamp(ctx, deployment)
    if deployment["metadata"].get("annotations"):
        key = STAMP_ANNOTATION.replace("~", "~0").replace("/", "~1")
        operations.append(
            {"op": "add", "path": f"/metadata/annotations/{key}", "value": stamps[STAMP_ANNOTATION]}
        )
    else:
        operations.append({"op": "add", "path": "/metadata/annotations", "value": stamps})
    await patch(ctx, client, path, operations, "application/json-patch+json")
    return result


# --- set_resources -------------------------------------------------------------------------------

_GiB = 1024**3


@implement("kubernetes.set_resources")
@retry_conflicts
async def set_resources(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    kind, name, path = await _workload(ctx, params, RESTARTABLE)
    guards = guards_for(ctx)
    cpu_cap = guards.max_cpu_millicores / 1000
    memory_cap = float(guards.max_memory_bytes)
    if params.get("max_cpu") is not None:
        cpu_cap = min(cpu_cap, parse_quantity(params["max_cpu"], "max_cpu"))
    if params.get("max_memory") is not None:
        memory_cap = min(memory_cap, parse_quantity(params["max_memory"], "max_memory"))
    wanted: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        values = params.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping) or not values or set(values) - {"cpu", "memory"}:
            raise PermanentActionError(f"{section} must be a mapping of cpu and/or memory, got {values!r}")
        for resource, value in values.items():
            amount = parse_quantity(value, f"{section}.{resource}")
            cap = cpu_cap if resource == "cpu" else memory_cap
            if amount > cap:
                raise GuardRefused(
                    f"{section}.{resource} {value} for {kind} {params['namespace']}/{name} is above the cap "
                    f"({_fmt(cap) if resource == 'cpu' else _fmt(cap / _GiB) + 'Gi'})"
                )
            wanted.setdefault(section, {})[resource] = str(value)
    if not wanted:
        raise PermanentActionError("give requests and/or limits")
    client = client_for(ctx)
    current = await read(client, path)
    containers = (((current.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    names = [str(c.get("name")) for c in containers]
    container = params.get("container")
    if container is None:
        if len(names) != 1:
            raise PermanentActionError(
                f"{kind} {name} has containers {', '.join(names)}: name the one to change"
            )
        container = names[0]
    if container not in names:
        raise PermanentActionError(
            f"{kind} {name} has no container {container!r} (it has {', '.join(names)})"
        )
    previous = dict(containers[names.index(container)].get("resources") or {})
    merged = {s: {**(previous.get(s) or {}), **wanted.get(s, {})} for s in ("requests", "limits")}
    for resource in ("cpu", "memory"):
        request, limit = merged["requests"].get(resource), merged["limits"].get(resource)
        if (
            request is not None
            and limit is not None
            and parse_quantity(request, "") > parse_quantity(limit, "")
        ):
            raise PermanentActionError(
                f"{resource} request {request} would be above its limit {limit} for container {container}"
            )
    changes = {"spec": {"template": {"spec": {"containers": [{"name": container, "resources": wanted}]}}}}
    updated = await patch_read(
        ctx, client, path, current, changes, stamping=True, content_type=STRATEGIC_PATCH
    )
    after: Mapping[str, Any] = next(
        (c for c in updated["spec"]["template"]["spec"]["containers"] if c.get("name") == container), {}
    )
    return {"container": container, "previous": previous, "resources": after.get("resources") or {}}


@check("kubernetes.scale")
@check("kubernetes.rollout_restart")
@check("kubernetes.set_resources")
async def workload_stamped(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    _kind, _name, path = await _workload(ctx, params, RESTARTABLE)
    return await stamp_effect(client_for(ctx), path, ctx)


@check("kubernetes.rollback_deployment")
async def rollback_stamped(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    namespace = check_name(params.get("namespace"), "namespace", label=True)
    name = check_name(params.get("name"), "Deployment name")
    return await stamp_effect(
        client_for(ctx), f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", ctx
    )


# --- wait_rollout --------------------------------------------------------------------------------


def rollout_state(kind: str, obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(complete, what it waits for) as ``kubectl rollout status`` words it."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name")
    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return False, f"waiting for {kind.lower()} {name} spec update to be observed"
    if kind == "Deployment":
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"
            ):
                raise PermanentActionError(f"deployment {name} exceeded its progress deadline")
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                raise PermanentActionError(
                    f"deployment {name} cannot create pods: {condition.get('message')}"
                )
        desired = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        total = int(status.get("replicas", 0))
        available = int(status.get("availableReplicas", 0))
        if updated < desired:
            return False, f"{updated} out of {desired} new replicas have been updated"
        if total > updated:
            return False, f"{total - updated} old replicas are pending termination"
        if available < updated:
            return False, f"{available} of {updated} updated replicas are available"
        return True, f'deployment "{name}" successfully rolled out'
    if kind == "StatefulSet":
        desired = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas", 0))
        if ready < desired:
            return False, f"{ready} of {desired} pods are ready"
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0))
        if partition and int(status.get("updatedReplicas", 0)) < desired - partition:
            return False, f"{status.get('updatedReplicas', 0)} of {desired - partition} pods updated"
        if status.get("updateRevision") != status.get("currentRevision"):
            return False, f"rolling update to revision {status.get('updateRevision')} in progress"
        return True, f"statefulset {name} rolling update complete, {ready} pods at the current revision"
    desired = int(status.get("desiredNumberScheduled", 0))
    updated = int(status.get("updatedNumberScheduled", 0))
    available = int(status.get("numberAvailable", 0))
    if updated < desired:
        return False, f"{updated} out of {desired} new pods have been updated"
    if available < desired:
        return False, f"{available} of {desired} updated pods are available"
    return True, f'daemon set "{name}" successfully rolled out'


@implement("kubernetes.wait_rollout")
async def wait_rollout(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace = check_namespace(ctx, params.get("namespace"), mutating=False)
    kind = str(params.get("kind"))
    if kind not in RESTARTABLE:
        raise PermanentActionError(f"kind must be one of {', '.join(RESTARTABLE)}, got {kind!r}")
    name = check_name(params.get("name"), f"{kind} name")
    _v, path = await object_path(client_for(ctx), KINDS[kind], namespace, name)
    timeout = parse_duration(params.get("timeout", "5m"))
    interval = max(0.05, parse_duration(params.get("interval", "2s")))
    deadline = time.monotonic() + timeout
    client = client_for(ctx)
    while True:
        current = await read(client, path)
        complete, message = rollout_state(kind, current)
        status = current.get("status") or {}
        if complete or ctx.dry_run:
            return {
                "complete": complete,
                "replicas": int(
                    (current.get("spec") or {}).get("replicas", status.get("desiredNumberScheduled", 0))
                ),
                "updated": int(status.get("updatedReplicas", status.get("updatedNumberScheduled", 0))),
                "available": int(status.get("availableReplicas", status.get("numberAvailable", 0))),
                "message": message,
            }
        if time.monotonic() + interval > deadline:
            raise TemporaryActionError(
                f"rollout of {kind} {namespace}/{name} did not complete within "
                f"{params.get('timeout', '5m')}: {message}"
            )
        await asyncio.sleep(interval)


# --- patch_hpa -----------------------------------------------------------------------------------


@implement("kubernetes.patch_hpa")
@retry_conflicts
async def patch_hpa(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, name = check_target(ctx, params, "HorizontalPodAutoscaler name")
    low, high = _int_param(params, "min_replicas"), _int_param(params, "max_replicas")
    if low is None and high is None:
        raise PermanentActionError("give min_replicas and/or max_replicas")
    client = client_for(ctx)
    _v, path = await object_path(client, KINDS["HorizontalPodAutoscaler"], namespace, name)
    current = await read(client, path)
    spec = current.get("spec") or {}
    previous = {"min_replicas": int(spec.get("minReplicas", 1)), "max_replicas": int(spec["maxReplicas"])}
    new_low = low if low is not None else previous["min_replicas"]
    new_high = high if high is not None else previous["max_replicas"]
    limit = guards_for(ctx).max_replicas
    if new_high > limit:
        raise GuardRefused(
            f"maxReplicas {new_high} for HPA {namespace}/{name} exceeds the configured maximum {limit}"
        )
    if new_low < 1 or new_low > new_high:
        raise PermanentActionError(f"min_replicas {new_low} must be between 1 and max_replicas {new_high}")
    await patch_read(ctx, client, path, current, {"spec": {"minReplicas": new_low, "maxReplicas": new_high}})
    return {"previous": previous, "min_replicas": new_low, "max_replicas": new_high}
