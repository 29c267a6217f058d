"""Small builders for the JSON Schemas of action params, so every family writes them the same way."""

from __future__ import annotations

from typing import Any

from kurative.durations import DURATION_PATTERN

JSON = dict[str, Any]


def obj(properties: JSON, required: tuple[str, ...] = (), **extra: Any) -> JSON:
    """A closed object schema: unknown params are errors, so typos are caught by lint."""
    schema: JSON = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def string(description: str, **extra: Any) -> JSON:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> JSON:
    return {"type": "integer", "description": description, **extra}


def boolean(description: str, default: bool | None = None) -> JSON:
    schema: JSON = {"type": "boolean", "description": description}
    if default is not None:
        schema["default"] = default
    return schema


def duration(description: str, default: str | None = None) -> JSON:
    schema: JSON = {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "format": "duration",
        "description": description,
    }
    if default is not None:
        schema["default"] = default
    return schema


def secret_or_string(description: str) -> JSON:
    """A value given inline or, for secrets, by reference: ``{secretRef: name}`` (never inline)."""
    return {
        "description": description,
        "oneOf": [
            {"type": "string"},
            obj({"secretRef": string("name of a secret in the daemon config")}, ("secretRef",)),
        ],
    }


def enum(description: str, values: tuple[str, ...], default: str | None = None) -> JSON:
    schema: JSON = {"type": "string", "enum": list(values), "description": description}
    if default is not None:
        schema["default"] = default
    return schema
