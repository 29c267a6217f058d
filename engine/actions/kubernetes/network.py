"""Network actions: quarantine a pod (label it and isolate it with a deny-all NetworkPolicy)."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import name_param, namespace_param, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, obj, string

QUARANTINE_LABEL = "kurative.io/quarantine"

declare(
    ActionSpec(
        name="kubernetes.quarantine_pod",
        summary="Isolate a pod for forensics: label it and apply a deny-all ingress+egress NetworkPolicy.",
        params=obj(
            {
                "namespace": namespace_param(),
                "pod": name_param("pod"),
                "detach": boolean(
                    "also remove the pod from its ReplicaSet (relabel) so that a replacement starts", False
                ),
            },
            ("namespace", "pod"),
        ),
        output=obj(
            {
                "pod": string("name of the pod"),
                "policy": string("name of the NetworkPolicy"),
                "label": string(f"the {QUARANTINE_LABEL} label value"),
            }
        ),
        risk=Risk.HIGH,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(
            rule("", "pods", "get patch"),
            rule("networking.k8s.io", "networkpolicies", "get create"),
        ),
    )
)
