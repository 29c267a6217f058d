"""Metadata actions: set or remove labels and annotations on any supported object."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import kind_param, name_param, namespace_param
from engine.actions.kubernetes._kinds import KIND_NAMES, rules_for
from engine.actions.registry import declare
from engine.actions.schema import JSON, boolean, obj

_VALUES = {
    "type": "object",
    "description": "key -> value to set; null removes the key",
    "additionalProperties": {"type": ["string", "null"]},
    "minProperties": 1,
}


def _params(what: str) -> JSON:
    return obj(
        {
            "namespace": namespace_param(),
            "kind": kind_param(KIND_NAMES, "kind of the object"),
            "name": name_param("object"),
            what: _VALUES,
        },
        ("kind", "name", what),
    )


for _action, _what in (("label", "labels"), ("annotate", "annotations")):
    declare(
        ActionSpec(
            name=f"kubernetes.{_action}",
            summary=f"Set or remove {_what} on any supported object (`kubectl {_action}`).",
            params=_params(_what),
            output=obj(
                {
                    _what: {"type": "object", "description": f"all {_what} after the change"},
                    "changed": boolean("false when nothing needed changing"),
                }
            ),
            risk=Risk.LOW,
            repeat_safety=RepeatSafety.IDEMPOTENT,
            dry_run=True,
            rbac=rules_for("get patch"),
        )
    )
