"""Workload actions: find a pod's owner, scale, restart, roll back, set resources, wait, patch HPAs."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import kind_param, name_param, namespace_param, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, duration, integer, obj, string

SCALABLE = ("Deployment", "StatefulSet")
RESTARTABLE = ("Deployment", "StatefulSet", "DaemonSet")
OWNER_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")

_RESOURCE_LIST = {
    "type": "object",
    "description": "cpu and/or memory quantities, e.g. {cpu: 500m, memory: 512Mi}",
    "properties": {
        "cpu": {"type": ["string", "number"], "description": "CPU quantity (500m, 2)"},
        "memory": {"type": "string", "description": "memory quantity (512Mi, 2Gi)"},
    },
    "additionalProperties": False,
}

declare(
    ActionSpec(
        name="kubernetes.resolve_owner",
        summary="Follow a pod's controllers up to its workload (ReplicaSet -> Deployment, Job -> CronJob).",
        params=obj({"namespace": namespace_param(), "pod": name_param("pod")}, ("namespace", "pod")),
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
        dry_run=True,
        rbac=(
            rule("", "pods", "get"),
            rule("apps", "replicasets", "get"),
            rule("batch", "jobs", "get"),
        ),
    )
)

declare(
    ActionSpec(
        name="kubernetes.scale",
        summary="Set the replicas of a Deployment or StatefulSet, within min/max guard bounds.",
        params=obj(
            {
                "namespace": namespace_param(),
                "kind": kind_param(SCALABLE),
                "name": name_param("workload"),
                "replicas": integer("desired replicas", minimum=0),
                "delta": integer("change relative to the current replicas (e.g. 2 or -1)"),
                "min": integer("never go below this (guard)", minimum=0, default=0),
                "max": integer("never go above this (guard; also capped by the daemon settings)", minimum=0),
            },
            ("namespace", "kind", "name"),
            oneOf=[{"required": ["replicas"]}, {"required": ["delta"]}],
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
        dry_run=True,
        rbac=(rule("apps", ("deployments", "statefulsets"), "get patch"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.rollout_restart",
        summary="Restart a workload's pods with a rolling update, as `kubectl rollout restart` does.",
        params=obj(
            {"namespace": namespace_param(), "kind": kind_param(RESTARTABLE), "name": name_param("workload")},
            ("namespace", "kind", "name"),
        ),
        output=obj(
            {
                "restarted_at": string("timestamp written to the pod template"),
                "generation": integer("metadata.generation after the restart"),
            }
        ),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.STAMPED,
        dry_run=True,
        rbac=(rule("apps", ("daemonsets", "deployments", "statefulsets"), "get patch"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.rollback_deployment",
        summary="Roll a Deployment back to an earlier ReplicaSet's template (`kubectl rollout undo`).",
        params=obj(
            {
                "namespace": namespace_param(),
                "name": name_param("Deployment"),
                "to_revision": integer("revision to return to (default: the previous one)", minimum=1),
            },
            ("namespace", "name"),
        ),
        output=obj(
            {
                "from_revision": integer("revision that was current"),
                "to_revision": integer("revision whose template is now current"),
                "replicaset": string("ReplicaSet that carried that revision"),
            }
        ),
        risk=Risk.HIGH,
        repeat_safety=RepeatSafety.STAMPED,
        dry_run=True,
        rbac=(rule("apps", "deployments", "get patch"), rule("apps", "replicasets", "list")),
    )
)

declare(
    ActionSpec(
        name="kubernetes.set_resources",
        summary="Set a container's requests/limits on a workload, refused above the configured caps.",
        params=obj(
            {
                "namespace": namespace_param(),
                "kind": kind_param(RESTARTABLE),
                "name": name_param("workload"),
                "container": string("container name (default: the only container)"),
                "requests": _RESOURCE_LIST,
                "limits": _RESOURCE_LIST,
                "max_cpu": {"type": ["string", "number"], "description": "cap for any CPU value (guard)"},
                "max_memory": string("cap for any memory value (guard)"),
            },
            ("namespace", "kind", "name"),
            anyOf=[{"required": ["requests"]}, {"required": ["limits"]}],
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
        dry_run=True,
        rbac=(rule("apps", ("daemonsets", "deployments", "statefulsets"), "get patch"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.wait_rollout",
        summary="Wait until a workload's rollout completes (`kubectl rollout status`), or fail at timeout.",
        params=obj(
            {
                "namespace": namespace_param(),
                "kind": kind_param(RESTARTABLE),
                "name": name_param("workload"),
                "timeout": duration("how long to wait", "5m"),
                "interval": duration("how often to look", "2s"),
            },
            ("namespace", "kind", "name"),
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
        dry_run=True,
        rbac=(rule("apps", ("daemonsets", "deployments", "statefulsets"), "get"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.patch_hpa",
        summary="Change a HorizontalPodAutoscaler's minReplicas/maxReplicas (bounded by the settings).",
        params=obj(
            {
                "namespace": namespace_param(),
                "name": name_param("HorizontalPodAutoscaler"),
                "min_replicas": integer("new minReplicas", minimum=1),
                "max_replicas": integer("new maxReplicas", minimum=1),
            },
            ("namespace", "name"),
            anyOf=[{"required": ["min_replicas"]}, {"required": ["max_replicas"]}],
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
        dry_run=True,
        rbac=(rule("autoscaling", "horizontalpodautoscalers", "get patch"),),
    )
)
