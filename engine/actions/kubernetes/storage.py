"""Storage actions: expand a PersistentVolumeClaim when its StorageClass allows expansion."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import name_param, namespace_param, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, obj, string

declare(
    ActionSpec(
        name="kubernetes.expand_pvc",
        summary="Request a larger size for a PVC (never smaller), if its StorageClass allows expansion.",
        params=obj(
            {
                "namespace": namespace_param(),
                "name": name_param("PersistentVolumeClaim"),
                "size": string("new size, e.g. 20Gi; or a growth like +50%"),
                "max_size": string("never request more than this (guard), e.g. 100Gi"),
            },
            ("namespace", "name", "size"),
        ),
        output=obj(
            {
                "previous": string("requested size before"),
                "size": string("requested size after"),
                "changed": boolean("false when the claim already asked for at least that much"),
            }
        ),
        risk=Risk.HIGH,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(
            rule("", "persistentvolumeclaims", "get patch"),
            rule("storage.k8s.io", "storageclasses", "get", cluster=True),
        ),
    )
)
