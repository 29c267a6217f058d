"""Generic reads: get one object or list objects, so that later steps can branch on their state."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import kind_param, name_param, namespace_param, object_output
from engine.actions.kubernetes._kinds import KIND_NAMES, rules_for
from engine.actions.registry import declare
from engine.actions.schema import boolean, integer, obj, string

declare(
    ActionSpec(
        name="kubernetes.get",
        summary="Read one object (any supported kind) for later conditions: ${steps.x.output.object.status}.",
        params=obj(
            {
                "namespace": namespace_param(),
                "kind": kind_param(KIND_NAMES, "kind of the object"),
                "name": name_param("object"),
                "missing_ok": boolean("return found=false instead of failing when it does not exist", False),
            },
            ("kind", "name"),
        ),
        output=obj({"object": object_output(), "found": boolean("whether the object exists")}),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=rules_for("get"),
    )
)

declare(
    ActionSpec(
        name="kubernetes.list",
        summary="List objects of a kind by label and field selector (names and the objects).",
        params=obj(
            {
                "namespace": namespace_param(),
                "kind": kind_param(KIND_NAMES, "kind of the objects"),
                "label_selector": string("label selector, e.g. app=web,tier!=cache"),
                "field_selector": string("field selector, e.g. status.phase=Failed"),
                "limit": integer("at most this many objects", minimum=1, maximum=5000, default=500),
            },
            ("kind",),
        ),
        output=obj(
            {
                "items": {"type": "array", "description": "the objects"},
                "names": {"type": "array", "items": {"type": "string"}, "description": "their names"},
                "count": integer("number of objects"),
            }
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=rules_for("list"),
    )
)
