"""Kubernetes object schemas from the ``kubernetes-validate`` package: validation and merge keys.

The fake API server validates every object it stores against the strict schema of its kind (unknown
fields, wrong types and missing required fields are refused with 422, as the real server refuses
them) and reads ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` from the same
schemas for strategic merge patch. Validators are built once per kind and cached.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMA_VERSION = "v1.30.0-local-strict"


@functools.cache
def _load(name: str) -> dict[str, Any]:
    ref = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", SCHEMA_VERSION, name)
    with ref.open("r", encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _defs() -> dict[str, Any]:
    defs: dict[str, Any] = _load("_definitions.json")["$defs"]
    return defs


def _file_name(kind: str, api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    prefix = group.split(".")[0] if group else ""
    return f"{kind.lower()}-{prefix + '-' if prefix else ''}{version}.json"


@functools.cache
def validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    schema = _load(_file_name(kind, api_version))
    registry: Registry[Any] = Registry().with_resources(
        [
            (
                "https://kubernetes.io/api/_definitions.json",
                Resource.from_contents(_load("_definitions.json")),
            ),
            (schema["$id"], Resource.from_contents(schema)),
        ]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validation_errors(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for every way ``obj`` breaks its kind's schema; empty when valid."""
    check = validator(obj["kind"], obj["apiVersion"])
    problems = []
    for error in sorted(check.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path)
        problems.append((path.replace(".[", "["), error.message[:300]))
    return problems


@dataclass(frozen=True)
class SchemaNode:
    """A position in a kind's schema, for walking alongside a strategic merge patch."""

    schema: dict[str, Any]

    @classmethod
    def for_kind(cls, kind: str, api_version: str) -> SchemaNode:
        return cls(_load(_file_name(kind, api_version)))

    def _resolved(self) -> dict[str, Any]:
        schema = self.schema
        while "$ref" in schema:
            schema = _defs()[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def child(self, key: str) -> SchemaNode:
        schema = self._resolved()
        props = schema.get("properties") or {}
        if key in props:
            return SchemaNode(props[key])
        extra = schema.get("additionalProperties")
        return SchemaNode(extra if isinstance(extra, dict) else {})

    def items(self) -> SchemaNode:
        items = self.schema.get("items") or self._resolved().get("items") or {}
        return SchemaNode(items)

    @property
    def merge_strategy(self) -> bool:
        strategy = str(self.schema.get("x-kubernetes-patch-strategy", ""))
        return "merge" in strategy.split(",")

    @property
    def merge_key(self) -> str | None:
        key = self.schema.get("x-kubernetes-patch-merge-key")
        return str(key) if key else None
