"""Metadata actions: set or remove labels and annotations on any supported object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    check_name,
    check_namespace,
    client_for,
    declare_action,
    guards_for,
    kind_param,
    name_param,
    namespace_param,
    patch,
    read,
)
from kurative.actions.kubernetes._kinds import KIND_NAMES, kind_of, object_path, rules_for
from kurative.actions.registry import implement
from kurative.actions.schema import JSON, boolean, obj
from kurative.errors import GuardRefused, PermanentActionError

_VALUES = {
    "type": "object",
    "description": "key -> value to set; null removes the key",
    "additionalProperties": {"type": ["string", "null"]},
    "minProperties": 1,
}


def object_params(extra: JSON, required: tuple[str, ...] = ()) -> JSON:
    """Params naming one object of any supported kind (as :func:`target` reads them) and ``extra``."""
    return obj(
        {
            "namespace": namespace_param(),
            "kind": kind_param(KIND_NAMES, "kind of the object"),
            "name": name_param("object"),
            **extra,
        },
        ("kind", "name", *required),
    )


for _action, _what in (("label", "labels"), ("annotate", "annotations")):
    declare_action(
        name=f"{_action}",
        summary=f"Set or remove {_what} on any supported object (`kubectl {_action}`).",
        params=object_params({_what: _VALUES}, (_what,)),
        output=obj(
            {
                _what: {"type": "object", "description": f"all {_what} after the change"},
                "changed": boolean("false when nothing needed changing"),
            }
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        rbac=rules_for("get patch"),
    )


_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def check_key(key: str, what: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _PREFIX.fullmatch(prefix))) or not _NAME_PART.fullmatch(name):
        raise PermanentActionError(
            f"{what} key {key!r} is invalid: an optional DNS prefix and '/', then up to 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )


async def target(ctx: ActionContext, params: Mapping[str, Any], *, mutating: bool) -> tuple[str, str]:
    """(description, path) of the object a generic step names, after the guards."""
    kind = kind_of(params.get("kind"))
    name = check_name(params.get("name"), f"{kind.kind} name", label=kind.kind == "Namespace")
    namespace = None
    if kind.namespaced:
        namespace = check_namespace(ctx, params.get("namespace"), mutating=mutating)
    elif kind.kind == "Namespace" and mutating and (refusal := guards_for(ctx).refusal(name)):
        raise GuardRefused(f"namespace {name} {refusal}: kurative does not change it")
    _v, path = await object_path(client_for(ctx), kind, namespace, name)
    return f"{kind.kind} {namespace + '/' if namespace else ''}{name}", path


async def _set_metadata(ctx: ActionContext, params: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    values = params.get(field)
    if not isinstance(values, Mapping) or not values:
        raise PermanentActionError(f"{field} must be a non-empty mapping of key to value (null removes)")
    for key, value in values.items():
        check_key(str(key), field[:-1])
        if value is not None and not isinstance(value, str):
            raise PermanentActionError(
                f"{field[:-1]} {key}: values are strings (or null to remove), got {value!r}"
            )
        if field == "labels" and value is not None and not _LABEL_VALUE.fullmatch(value):
            raise PermanentActionError(
                f"label value {value!r} for {key} is invalid: at most 63 letters, digits, '-_.'"
            )
    _what, path = await target(ctx, params, mutating=True)
    client = client_for(ctx)
    current = await read(client, path)
    existing = dict((current.get("metadata") or {}).get(field) or {})
    if all(existing.get(k) == v for k, v in values.items()):
        return {field: existing, "changed": False}
    updated = await patch(ctx, client, path, {"metadata": {field: dict(values)}})
    return {field: dict(((updated or {}).get("metadata") or {}).get(field) or {}), "changed": True}


@implement("kubernetes.label")
async def label(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await _set_metadata(ctx, params, "labels")


@implement("kubernetes.annotate")
async def annotate(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await _set_metadata(ctx, params, "annotations")
