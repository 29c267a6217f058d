"""Storage actions: expand a PersistentVolumeClaim when its StorageClass allows expansion."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    Effect,
    check,
    check_target,
    client_for,
    declare_action,
    guards_for,
    parse_quantity,
    patch_read,
    read,
    retry_conflicts,
    rule,
    stamp_effect,
    stamped,
    target_params,
)
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, obj, string
from kurative.errors import GuardRefused, ObjectNotFound, PermanentActionError

_GROWTH = re.compile(r"^\+([0-9]+(?:\.[0-9]+)?)%$")
_GiB = 1024**3

declare_action(
    name="expand_pvc",
    summary="Request a larger size for a PVC (never smaller), if its StorageClass allows expansion.",
    params=target_params(
        "PersistentVolumeClaim",
        {
            "size": string("new size, e.g. 20Gi; or a growth like +50%"),
            "max_size": string("never request more than this (guard), e.g. 100Gi"),
        },
        ("size",),
    ),
    output=obj(
        {
            "previous": string("requested size before"),
            "size": string("requested size after"),
            "changed": boolean("false when the claim already asked for at least that much"),
        }
    ),
    risk=Risk.HIGH,
    # A growth (+50%) applied twice grows twice: the new size and the step's stamp are one write.
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(
        rule("", "persistentvolumeclaims", "get patch"),
        rule("storage.k8s.io", "storageclasses", "get", cluster=True),
    ),
)


def _target_size(size: Any, current_bytes: float) -> tuple[str, float]:
    text = str(size).strip() if isinstance(size, (str, int)) and not isinstance(size, bool) else ""
    growth = _GROWTH.fullmatch(text)
    if growth:
        wanted = current_bytes * (1 + float(growth.group(1)) / 100)
        whole = max(1, math.ceil(wanted / _GiB))
        return f"{whole}Gi", float(whole * _GiB)
    return text, parse_quantity(size, "size")


def _claim_path(
    ctx: ActionContext, params: Mapping[str, Any], *, mutating: bool = True
) -> tuple[str, str, str]:
    namespace, name = check_target(ctx, params, "PersistentVolumeClaim name", mutating=mutating)
    return namespace, name, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"


@implement("kubernetes.expand_pvc")
@retry_conflicts
async def expand_pvc(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, name, path = _claim_path(ctx, params)
    client = client_for(ctx)
    claim = await read(client, path)
    previous = str(
        (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
    )
    if stamped(claim, ctx):
        return {"previous": previous, "size": previous, "changed": False}  # this step expanded it
    current_bytes = parse_quantity(previous, "current size")
    target, target_bytes = _target_size(params.get("size"), current_bytes)
    cap = float(guards_for(ctx).max_pvc_bytes)
    if params.get("max_size") is not None:
        cap = min(cap, parse_quantity(params["max_size"], "max_size"))
    if target_bytes > cap:
        raise GuardRefused(f"expanding PVC {namespace}/{name} to {target} exceeds the allowed maximum size")
    if target_bytes <= current_bytes:
        return {"previous": previous, "size": previous, "changed": False}
    class_name = (claim.get("spec") or {}).get("storageClassName")
    if not class_name:
        raise PermanentActionError(f"PVC {namespace}/{name} has no StorageClass, so it cannot be expanded")
    try:
        storage_class = await read(client, f"/apis/storage.k8s.io/v1/storageclasses/{class_name}")
    except ObjectNotFound:
        raise PermanentActionError(
            f"StorageClass {class_name} of PVC {namespace}/{name} does not exist"
        ) from None
    if not storage_class.get("allowVolumeExpansion"):
        raise PermanentActionError(
            f"StorageClass {class_name} does not allow volume expansion (allowVolumeExpansion is not true); "
            f"PVC {namespace}/{name} stays at {previous}"
        )
    if (claim.get("status") or {}).get("phase") != "Bound":
        raise PermanentActionError(
            f"PVC {namespace}/{name} is not bound yet; only bound claims can be expanded"
        )
    changes = {"spec": {"resources": {"requests": {"storage": target}}}}
    await patch_read(ctx, client, path, claim, changes, stamping=True)
    return {"previous": previous, "size": target, "changed": True}


@check("kubernetes.expand_pvc")
async def pvc_expanded(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    """DONE when the claim bears this step's stamp; NOT_DONE when it does not: the step never wrote
    the new size, or found nothing to change (and running it again changes nothing either)."""
    _namespace, _name, path = _claim_path(ctx, params, mutating=False)
    return await stamp_effect(client_for(ctx), path, ctx)
