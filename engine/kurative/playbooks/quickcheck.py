"""A quick yes/no JSON Schema check, compiled once per schema by fastjsonschema, before jsonschema.

Almost every document a daemon loads is valid, and jsonschema spends most of its time building the
machinery for errors it never finds (a validator per subschema, a reference lookup per ``$ref``).
fastjsonschema compiles a schema once into plain Python code that only answers "valid?" (it raises at
the first error). The check is deliberately conservative: it answers ``True`` only when jsonschema
(draft 2020-12, with the same format checker) would find no error, and ``False`` whenever it is unsure,
in which case the caller runs jsonschema and reports exactly what it always did.

Before it is compiled the schema is checked and rewritten so that fastjsonschema decides it as jsonschema
does: only keywords whose meaning both share are accepted (anything else, a reference that is not
``#/$defs/<name>``, a nested ``$id``: no quick check at all, ``None``); ``$ref`` next to other keywords
becomes an ``allOf`` (fastjsonschema, as in draft 7, would ignore the siblings); every ``format`` is
either the very check jsonschema applies (``formats``) or an annotation, as it is to jsonschema's
format checker; annotations are dropped, defaults never filled in. fastjsonschema turns an unescaped
``$`` of a ``pattern`` into an end-of-string anchor, which is stricter than Python's (it also matches
before a final newline): harmless where a failure can only fail the document, so a ``pattern`` with a
``$`` under ``not`` or ``oneOf`` (where a stricter branch could make the whole pass) means no quick
check. Documents are JSON-shaped, as the YAML loader makes them (fastjsonschema would also take a
tuple for an array).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

# Keywords that never make a document invalid (to jsonschema, nor here once dropped).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
# Keywords fastjsonschema checks as jsonschema (draft 2020-12) does, for JSON-shaped documents.
_ASSERTIONS = frozenset(
    {
        "type", "enum", "required", "minItems", "maxItems", "uniqueItems", "minLength",
        "maxLength", "minProperties", "maxProperties", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "pattern", "format",
    }
)  # fmt: skip
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_DEFS = "#/$defs/"
_TEMPLATE_FORMAT = "kurative-quickcheck-template"
_LENIENT = ".templates"  # the suffix of a definition's copy that lets templates pass
_DEF_NAME = re.compile(r"[A-Za-z0-9_-]+")  # as it is written in a reference, with no escaping


class Unsupported(Exception):
    """The schema uses something the quick check does not handle."""


def _annotation(value: Any) -> bool:
    return True


def _is_template(value: Any) -> bool:
    return "${" in value  # called by fastjsonschema for strings only


def compile_check(
    schema: Mapping[str, Any],
    formats: Mapping[str, Callable[[Any], bool]] | None = None,
    *,
    templates: bool = False,
) -> Check | None:
    """A check for ``schema`` (local ``#/$defs/...`` references only), or None if it cannot be had.

    ``formats`` are the format checks jsonschema applies (``FormatChecker.conforms``, true for a value
    that is not a string); any other format is an annotation, as it is to a jsonschema format checker
    that does not know it. With ``templates``, a template (a string with ``${``) passes wherever the
    caller drops every error *about* it (an error whose instance is that value, as ``kurative lint``
    does for params): everywhere except inside ``anyOf``, ``oneOf`` and ``not``, whose own error is
    about the enclosing value, and except an unknown key under ``"additionalProperties": false``, an
    error about the mapping.
    """
    import fastjsonschema

    try:
        prepared, names = _prepare(schema, templates)
        custom = {name: (formats or {}).get(name, _annotation) for name in names}
        if templates:
            custom[_TEMPLATE_FORMAT] = _is_template
        # without detailed exceptions the code is a quarter of the size, and compiles that much faster
        validate = fastjsonschema.compile(
            prepared, formats=custom, use_default=False, detailed_exceptions=False
        )
    except (Unsupported, re.error, TypeError, ValueError, KeyError, RecursionError):
        return None  # JsonSchemaDefinitionException is a ValueError

    def check(value: Any) -> bool:
        try:
            validate(value)
        except Exception:  # JsonSchemaValueException: an error; anything else (a pattern tried on
            return False  # a key that is not a string...): unsure. jsonschema decides both.
        return True

    return check


def _prepare(schema: Mapping[str, Any], templates: bool) -> tuple[dict[str, Any], set[str]]:
    """The schema as fastjsonschema is to compile it, and the names of the formats it uses."""
    raw_defs = schema.get("$defs", {})
    if not isinstance(raw_defs, Mapping):
        raise Unsupported("$defs")
    defs: dict[str, Any] = {}
    done: set[tuple[str, bool, bool]] = set()
    formats: set[str] = set()
    template = {"type": "string", "format": _TEMPLATE_FORMAT}

    def reference(ref: Any, lenient: bool, negative: bool) -> str:
        if not isinstance(ref, str) or not ref.startswith(_DEFS):
            raise Unsupported(f"$ref {ref!r}")
        name = ref[len(_DEFS) :]
        if name not in raw_defs or not _DEF_NAME.fullmatch(name):
            raise Unsupported(f"$ref {ref!r}")
        target = name + (_LENIENT if lenient else "")
        if (name, lenient, negative) not in done:
            done.add((name, lenient, negative))  # before descending: definitions may be recursive
            defs[target] = rewrite(raw_defs[name], lenient, negative)
        return _DEFS + target

    def rewrite(node: Any, lenient: bool, negative: bool) -> Any:
        """``lenient``: a template here passes (its errors are dropped); ``negative``: under ``not``
        or ``oneOf``, where being stricter than jsonschema could make a document pass."""
        if isinstance(node, bool):
            return node
        if not isinstance(node, Mapping):
            raise Unsupported(repr(node))
        out: dict[str, Any] = {}
        for keyword, argument in node.items():
            if keyword in _ANNOTATIONS or keyword.startswith("x-"):
                continue
            if keyword == "$defs":
                continue  # referred to at the top level only (#/$defs/<name>), rewritten as used
            if keyword == "$id":
                if node is not schema:
                    raise Unsupported("$id below the top level")
                continue
            if keyword in ("properties", "patternProperties"):
                if not isinstance(argument, Mapping):
                    raise Unsupported(keyword)
                if keyword == "patternProperties":
                    for pattern in argument:
                        re.compile(pattern)
                out[keyword] = {key: rewrite(sub, lenient, negative) for key, sub in argument.items()}
            elif keyword in ("additionalProperties", "propertyNames", "items"):
                # an error of an extra member, a key or an item is about that value; "false" is kept
                # as it is (reported about the mapping), as is every boolean schema
                out[keyword] = rewrite(argument, lenient, negative)
            elif keyword == "allOf":
                out[keyword] = [rewrite(sub, lenient, negative) for sub in _schemas(argument)]
            elif keyword == "anyOf":
                out[keyword] = [rewrite(sub, False, negative) for sub in _schemas(argument)]
            elif keyword == "oneOf":
                out[keyword] = [rewrite(sub, False, True) for sub in _schemas(argument)]
            elif keyword == "not":
                out[keyword] = rewrite(argument, False, True)
            elif keyword == "$ref":
                out[keyword] = reference(argument, lenient, negative)
            elif keyword == "const":
                # the same test as a one-value enum (fastjsonschema 2.22 cannot compile a "const"
                # without detailed exceptions)
                out["enum"] = [argument] if "enum" not in node else _unsupported("const with enum")
            elif keyword in _ASSERTIONS:
                out[keyword] = _assertion(keyword, argument, negative, formats)
            else:
                raise Unsupported(keyword)
        if "$ref" in out and len(out) > 1:
            out = {"allOf": [{"$ref": out.pop("$ref")}, out]}  # 2020-12 applies a $ref's siblings
        if lenient and out:
            return {"anyOf": [template, out]}
        return out

    root = rewrite(schema, templates, False)
    if not isinstance(root, dict):
        raise Unsupported("a boolean schema")
    if defs:
        root = {**root, "$defs": defs} if "$ref" not in root else {"allOf": [root], "$defs": defs}
    return root, formats


def _unsupported(what: str) -> Any:
    raise Unsupported(what)


def _schemas(argument: Any) -> list[Any]:
    if not isinstance(argument, list) or not argument:
        raise Unsupported("a list of schemas")
    return argument


def _assertion(keyword: str, argument: Any, negative: bool, formats: set[str]) -> Any:
    if keyword == "type":
        names = [argument] if isinstance(argument, str) else argument
        if not isinstance(names, list) or not names or any(name not in _TYPES for name in names):
            raise Unsupported(f"type {argument!r}")
    elif keyword == "format":
        if not isinstance(argument, str) or argument == _TEMPLATE_FORMAT:
            raise Unsupported(f"format {argument!r}")
        formats.add(argument)
    elif keyword == "pattern":
        if not isinstance(argument, str):
            raise Unsupported("pattern")
        re.compile(argument)
        if negative and "$" in argument:
            raise Unsupported("a pattern with '$' under not or oneOf")
    elif keyword == "enum" and not isinstance(argument, list):
        raise Unsupported("enum")
    return argument
