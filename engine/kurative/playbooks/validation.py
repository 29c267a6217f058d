"""JSON Schema validation of playbook documents, with every error mapped back to its YAML position.

jsonschema reports errors by JSON path; we look the path up in the positions the loader kept and turn
each error into a :class:`Diagnostic` with a stable code and a hint: an unknown field points at the key
and suggests the nearest known one, a wrong type names what was expected, a bad duration shows the
accepted units. Every error is reported, not only the first.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from kurative.diagnostics import Diagnostic
from kurative.durations import (
    DURATION_PATTERN,
    FORMATS,
    MAX_DURATION_DAYS,
    DurationError,
    format_checker,
    parse_duration,
)
from kurative.playbooks.models import Dedupe, Limit, Playbook, Retry, Source, Step, Trigger
from kurative.playbooks.quickcheck import Check, compile_check
from kurative.playbooks.yamlload import Document

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

API_VERSION = "kurative/v1"
KIND = "Playbook"
CONFIG_KIND = "Config"
# The pattern of a namespace name in the config schema (its $defs/namespace).
NAMESPACE_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(?!\\n)$"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in kurative/schemas (``playbook``, ``config``, ``alerts``, ``playbook-test``)."""
    text = resources.files("kurative").joinpath("schemas", f"{name}.v1.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    import jsonschema  # only for a document that fails the quick check

    return jsonschema.Draft202012Validator(load_schema(name), format_checker=format_checker())


@functools.cache
def _quick_check(name: str) -> Check | None:
    return compile_check(load_schema(name), FORMATS)


TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null" if value is None else type(value).__name__


def dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _leaf(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf failures, the most relevant sub-error (unless the branches disagree on type)."""
    from jsonschema.exceptions import best_match

    while error.context:
        deeper = best_match(error.context)
        if deeper is None or (deeper.validator == "type" and len({e.validator for e in error.context}) > 1):
            break
        if list(deeper.absolute_path) == list(error.absolute_path) and deeper.validator in {
            "type",
            "required",
        }:
            break
        error = deeper
    return error


def schema_diagnostics(doc: Document, schema_name: str = "playbook") -> list[Diagnostic]:
    """Every schema error of ``doc``, positioned, with codes E101–E108."""
    quick = _quick_check(schema_name)
    if quick is not None and quick(doc.data):
        return []  # valid: jsonschema would find nothing, and it takes far longer to say so
    found: dict[tuple[int, int, str, str], Diagnostic] = {}
    for top in _validator(schema_name).iter_errors(doc.data):
        for diagnostic in _explain(doc, _leaf(top), top, schema_name):
            found.setdefault(
                (diagnostic.line, diagnostic.column, diagnostic.code, diagnostic.message), diagnostic
            )
    return sorted(found.values())


def _explain(
    doc: Document, error: ValidationError, top: ValidationError, schema_name: str
) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    where = dotted(path)
    line, column = doc.position(path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, Mapping) else {}

    def make(code: str, message: str, hint: str = "", at: tuple[int, int] | None = None) -> Diagnostic:
        at_line, at_column = at or (line, column)
        return Diagnostic.make(doc.path, at_line, at_column, code, message, hint)

    if path[:1] in {("apiVersion",), ("kind",)} and validator in {"const", "type"}:
        expected = load_schema(schema_name)["properties"][path[0]]["const"]
        return [
            make(
                "E107",
                f"{path[0]} must be {expected!r}, not {error.instance!r}",
                f"write {path[0]}: {expected}",
            )
        ]
    if path == ("metadata", "version"):
        return [
            make(
                "E106",
                f"metadata.version must be a positive integer, not {error.instance!r}",
                "use 1 for a new playbook and raise it whenever the content changes",
            )
        ]
    if validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        instance: Any = error.instance
        extras = [k for k in instance if k not in schema.get("properties", {})]
        out = []
        for key in extras:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known fields here: {', '.join(known)}"
            out.append(
                make("E102", f"unknown field {key!r} in {where}", hint, doc.position((*path, key), key=True))
            )
        return out
    if validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        where_text = "the document" if not path else where
        return [make("E101", f"missing required field {missing!r} in {where_text}", _required_hint(missing))]
    if validator == "anyOf" and path[-1:] == ("trigger",):
        return [
            make(
                "E101",
                "trigger needs an alertname or a when condition",
                "a playbook without either would run for every alert; write when: '`true`' if you mean that",
            )
        ]
    if validator == "format" and schema.get("format") == "duration":
        return [
            make("E105", f"{error.cause} at {where}", f"use a shorter duration: at most {MAX_DURATION_DAYS}d")
        ]
    if validator in {"pattern", "type"} and schema.get("pattern") == DURATION_PATTERN:
        return [
            make(
                "E105",
                f"invalid duration {error.instance!r} at {where}",
                "write a number with a unit: 500ms, 30s, 5m, 1h, 1h30m, 2d",
            )
        ]
    if validator in {"pattern", "maxLength"} and schema.get("pattern") == NAMESPACE_PATTERN:
        return [
            make(
                "E108",
                f"invalid namespace {error.instance!r} at {where}",
                "a namespace name is a DNS-1123 label: lower-case letters, digits and '-', at most 63 "
                "characters; this entry would never match one",
            )
        ]
    if validator == "pattern" and path[-1:] == ("name",):
        return [
            make(
                "E108",
                f"invalid name {error.instance!r} at {where}",
                str(schema.get("description", "use lower-case letters, digits and '-'")),
            )
        ]
    if validator == "type":
        declared = schema.get("type")
        names = [declared] if isinstance(declared, str) else list(declared or [])
        wanted = " or ".join(TYPE_NAMES.get(n, n) for n in names)
        return [
            make(
                "E103",
                f"{where} must be {wanted}, not {describe(error.instance)}",
                _type_hint(names, error.instance, schema_name),
            )
        ]
    if validator in {"enum", "const"}:
        allowed = schema.get("enum") or [schema.get("const")]
        return [
            make(
                "E104",
                f"invalid value {error.instance!r} for {where}",
                f"expected one of: {', '.join(str(a) for a in allowed)}",
            )
        ]
    if validator == "minItems":
        hint = (
            "a playbook needs at least one step"
            if path[-1:] == ("steps",)
            else "add an item or remove the field"
        )
        return [make("E104", f"{where} must not be empty", hint)]
    if validator in {"minimum", "maximum"}:
        bound = schema.get(validator)
        word = "at least" if validator == "minimum" else "at most"
        return [
            make(
                "E104",
                f"{where} must be {word} {bound}, not {error.instance!r}",
                f"use a value {word} {bound}",
            )
        ]
    if validator == "oneOf" and top is error:
        return [
            make(
                "E103", f"{where} has the wrong shape: {error.message}", f"see kurative schema {schema_name}"
            )
        ]
    return [make("E104", f"invalid value at {where}: {error.message}", f"see kurative schema {schema_name}")]


def _required_hint(field: str) -> str:
    return {
        "apiVersion": "start the document with apiVersion: kurative/v1",
        "kind": "add kind: Playbook",
        "metadata": "add metadata: {name: ..., version: 1}",
        "spec": "add a spec with a trigger and steps",
        "steps": "a playbook needs at least one step",
        "trigger": "add a trigger with alertname and/or when",
        "name": "give it a name",
        "version": "add version: 1 and raise it on every change",
        "action": "name an action; kurative actions lists them",
    }.get(field, f"add {field}")


def _type_hint(expected: list[str], value: Any, schema_name: str) -> str:
    if "integer" in expected and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return "remove the quotes to make it a number"
    if "boolean" in expected and isinstance(value, str):
        return "write true or false without quotes"
    if "object" in expected and isinstance(value, str):
        return "write a mapping (key: value lines, indented), not a string"
    if "array" in expected:
        return "write a list: [a, b] or one '- item' per line"
    return f"see kurative schema {schema_name}"


def content_hash(data: Any) -> str:
    """Hash of a document's content: comments, key order and formatting do not change it."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _get(mapping: Any, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``mapping[key]`` when it has the expected type, else ``default`` (for partly invalid documents)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        return default
    return value if isinstance(value, kind) else default


def _seconds(value: str | None) -> float | None:
    return duration_seconds(value) if value is not None else None


@functools.lru_cache(maxsize=1024)
def duration_seconds(text: str) -> float | None:
    """A duration's seconds, or None if it does not parse; playbooks write the same few (``30s``)."""
    try:
        return parse_duration(text)
    except DurationError:
        return None


def build_playbook(doc: Document) -> Playbook:
    """The model of a document. Fields of the wrong type fall back to defaults, so that a document
    with schema errors can still be checked for everything else; only a valid one is ever run."""
    data: Any = doc.data
    metadata = _get(data, "metadata", dict, {})
    spec = _get(data, "spec", dict, {})
    trigger = _get(spec, "trigger", dict, {})
    names = _get(trigger, "alertname", (str, list), ())
    dedupe = _get(spec, "dedupe", dict, {})
    raw_steps = _get(spec, "steps", list, [])
    steps = []
    for index, raw in enumerate(raw_steps):
        retry = _get(raw, "retry", dict, {})
        steps.append(
            Step(
                name=_get(raw, "name", str, f"#{index + 1}"),
                action=_get(raw, "action", str, ""),
                params=_get(raw, "params", dict, {}),
                when=_get(raw, "when", str, None),
                timeout=_seconds(_get(raw, "timeout", str, None)),
                retry=Retry(
                    attempts=_get(retry, "attempts", int, 1),
                    backoff=_seconds(_get(retry, "backoff", str, "1s")) or 1.0,
                ),
                always=_get(raw, "always", bool, False),
                cluster=_get(raw, "cluster", str, None),
            )
        )
    limits = [
        Limit(
            key=limit["key"], max=_get(limit, "max", int, 1), per=_seconds(_get(limit, "per", str, None)) or 0
        )
        for limit in _get(spec, "limits", list, [])
        if isinstance(_get(limit, "key", str, None), str)
    ]
    line, column = doc.position(())
    return Playbook(
        name=_get(metadata, "name", str, ""),
        version=_get(metadata, "version", int, 0),
        description=_get(metadata, "description", str, ""),
        labels=_get(metadata, "labels", dict, {}),
        trigger=Trigger(
            alertnames=(names,) if isinstance(names, str) else tuple(n for n in names if isinstance(n, str)),
            status=_get(trigger, "status", str, "firing"),
            when=_get(trigger, "when", str, None),
        ),
        priority=_get(spec, "priority", int, 0),
        stop=_get(spec, "stop", bool, False),
        dedupe=Dedupe(key=_get(dedupe, "key", str, None), window=_seconds(_get(dedupe, "window", str, None))),
        limits=tuple(limits),
        approval=_get(spec, "approval", str, None),
        dry_run=_get(spec, "dryRun", bool, False),
        vars=_get(spec, "vars", dict, {}),
        steps=tuple(steps),
        content_hash=content_hash(data),
        body=data if isinstance(data, dict) else {},
        source=Source(doc.path, doc.index, line, column, dict(doc.positions), dict(doc.blocks)),
    )
