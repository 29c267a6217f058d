"""Node actions: cordon, uncordon, drain (Eviction API, PDB-aware), taint, untaint."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import node_param, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, duration, enum, integer, obj, string

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_NODE_RULE = rule("", "nodes", "get patch", cluster=True)
_TAINTS = {"type": "array", "description": "the node's taints after the change"}

declare(
    ActionSpec(
        name="kubernetes.cordon",
        summary="Mark a node unschedulable (`kubectl cordon`).",
        params=obj({"node": node_param()}, ("node",)),
        output=obj({"node": string("node name"), "changed": boolean("false when it was already cordoned")}),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(_NODE_RULE,),
    )
)

declare(
    ActionSpec(
        name="kubernetes.uncordon",
        summary="Mark a node schedulable again (`kubectl uncordon`).",
        params=obj({"node": node_param()}, ("node",)),
        output=obj(
            {"node": string("node name"), "changed": boolean("false when it was already schedulable")}
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(_NODE_RULE,),
    )
)

declare(
    ActionSpec(
        name="kubernetes.drain",
        summary="Cordon a node and evict its pods except DaemonSet and mirror pods, honouring PDBs.",
        params=obj(
            {
                "node": node_param(),
                "timeout": duration("give up (and report what is left) after this long", "5m"),
                "grace_period": integer(
                    "seconds each pod gets to shut down (default: the pod's own)", minimum=0
                ),
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
                "evicted": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "namespace/pod evicted",
                },
                "skipped": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "DaemonSet and mirror pods",
                },
                "remaining": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "pods still there",
                },
                "complete": boolean("true when nothing evictable remains"),
            }
        ),
        risk=Risk.HIGH,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(
            _NODE_RULE,
            rule("", "pods", "list", cluster=True),
            rule("", "pods/eviction", "create", cluster=True),
        ),
    )
)

declare(
    ActionSpec(
        name="kubernetes.taint",
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
        output=obj(
            {"node": string("node name"), "taints": _TAINTS, "changed": boolean("whether it changed")}
        ),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(_NODE_RULE,),
    )
)

declare(
    ActionSpec(
        name="kubernetes.untaint",
        summary="Remove a taint (by key, optionally only one effect) from a node.",
        params=obj(
            {
                "node": node_param(),
                "key": string("taint key"),
                "effect": enum("only this effect", TAINT_EFFECTS),
            },
            ("node", "key"),
        ),
        output=obj(
            {"node": string("node name"), "taints": _TAINTS, "changed": boolean("whether it changed")}
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(_NODE_RULE,),
    )
)
