"""Pod actions: delete, evict (PDB-aware), read logs, collect diagnostics, clean up failed pods."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import name_param, namespace_param, object_output, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, duration, integer, obj, string

_POD_OUT = {"pod": string("name of the pod"), "uid": string("uid of the pod acted on")}

declare(
    ActionSpec(
        name="kubernetes.delete_pod",
        summary="Delete a pod so that its controller recreates it; preconditioned on the pod's uid.",
        params=obj(
            {
                "namespace": namespace_param(),
                "pod": name_param("pod"),
                "grace_period": integer(
                    "seconds the pod gets to shut down (default: the pod's own)", minimum=0
                ),
            },
            ("namespace", "pod"),
        ),
        output=obj({**_POD_OUT, "deleted": boolean("false when the pod was already gone")}),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.PRECONDITIONED,
        dry_run=True,
        rbac=(rule("", "pods", "get delete"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.evict_pod",
        summary="Evict a pod through the Eviction API, so PodDisruptionBudgets are honoured (429 = retry).",
        params=obj(
            {
                "namespace": namespace_param(),
                "pod": name_param("pod"),
                "grace_period": integer(
                    "seconds the pod gets to shut down (default: the pod's own)", minimum=0
                ),
            },
            ("namespace", "pod"),
        ),
        output=obj({**_POD_OUT, "evicted": boolean("false when the pod was already gone")}),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.PRECONDITIONED,
        dry_run=True,
        rbac=(rule("", "pods", "get"), rule("", "pods/eviction", "create")),
    )
)

declare(
    ActionSpec(
        name="kubernetes.pod_logs",
        summary="Read the tail of a container's log (also of its previous instance after a crash).",
        params=obj(
            {
                "namespace": namespace_param(),
                "pod": name_param("pod"),
                "container": string("container name (default: the only or first container)"),
                "tail_lines": integer("lines from the end", minimum=1, maximum=10000, default=200),
                "previous": boolean("read the previous, crashed instance", False),
                "since": duration("only lines newer than this"),
            },
            ("namespace", "pod"),
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
        dry_run=True,
        rbac=(rule("", "pods", "get"), rule("", "pods/log", "get")),
    )
)

declare(
    ActionSpec(
        name="kubernetes.collect_diagnostics",
        summary="Gather a pod's spec, status, events and container logs into the step output (journal).",
        params=obj(
            {
                "namespace": namespace_param(),
                "pod": name_param("pod"),
                "tail_lines": integer("log lines per container", minimum=0, maximum=5000, default=100),
                "previous": boolean("also read logs of crashed previous instances", True),
            },
            ("namespace", "pod"),
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
        dry_run=True,
        rbac=(rule("", "pods", "get"), rule("", "pods/log", "get"), rule("", "events", "list")),
    )
)

declare(
    ActionSpec(
        name="kubernetes.cleanup_failed_pods",
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
                "deleted": {"type": "array", "items": {"type": "string"}, "description": "pods deleted"},
                "count": integer("number of pods deleted"),
            }
        ),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(rule("", "pods", "list delete"),),
    )
)
