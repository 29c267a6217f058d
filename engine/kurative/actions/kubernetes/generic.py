"""Generic reads: get one object or list objects, so that later steps can branch on their state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    check_namespace,
    client_for,
    declare_action,
    kind_param,
    names_output,
    namespace_param,
    object_output,
    read,
)
from kurative.actions.kubernetes._kinds import KIND_NAMES, kind_of, object_path, rules_for
from kurative.actions.kubernetes.metadata import object_params, target
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, integer, obj, string
from kurative.errors import ObjectNotFound

declare_action(
    name="get",
    summary="Read one object (any supported kind) for later conditions: ${steps.x.output.object.status}.",
    params=object_params(
        {"missing_ok": boolean("return found=false instead of failing when it does not exist", False)}
    ),
    output=obj({"object": object_output(), "found": boolean("whether the object exists")}),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=rules_for("get"),
)

declare_action(
    name="list",
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
            "names": names_output("their names"),
            "count": integer("number of objects"),
        }
    ),
    risk=Risk.LOW,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=rules_for("list"),
)


@implement("kubernetes.get")
async def get(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    _what, path = await target(ctx, params, mutating=False)
    try:
        found = await read(client_for(ctx), path)
    except ObjectNotFound:
        if params.get("missing_ok"):
            return {"object": {}, "found": False}
        raise
    return {"object": found, "found": True}


@implement("kubernetes.list")
async def list_objects(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = kind_of(params.get("kind"))
    namespace = None
    if kind.namespaced and params.get("namespace") is not None:
        namespace = check_namespace(ctx, params.get("namespace"), mutating=False)
    client = client_for(ctx)
    api_version, base = await client.resource_path(kind.group, kind.versions, kind.resource)
    if namespace is None:
        path = f"{base}/{kind.resource}"
    else:
        _v, path = await object_path(client, kind, namespace)
    query: dict[str, Any] = {"limit": int(params.get("limit", 500))}
    for param, key in (("label_selector", "labelSelector"), ("field_selector", "fieldSelector")):
        if params.get(param):
            query[key] = params[param]
    listed = await client.request("GET", path, query=query)
    items = [
        {"apiVersion": api_version, "kind": kind.kind, **item} for item in (listed or {}).get("items") or []
    ]
    names = [str(item["metadata"]["name"]) for item in items]
    return {"items": items, "names": names, "count": len(items)}
