"""A quick yes/no JSON Schema check, compiled once per schema, in front of jsonschema's full report.

Almost every document a daemon loads is valid, and jsonschema spends most of its time building the
machinery for errors it never finds (a validator per subschema, a reference lookup per ``$ref``). This
module turns a schema into nested closures that only answer "valid?". It is deliberately
conservative: it answers ``True`` only when jsonschema (draft 2020-12, with the same format checker)
would find no error, and ``False`` whenever it is unsure, in which case the caller runs jsonschema
and reports exactly what it always did. A schema using a keyword not handled here compiles to
``None``: no quick check at all.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

# Keywords that never make a document invalid.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples", "deprecated"}
)


class Unsupported(Exception):
    """The schema uses something the quick check does not handle."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _not_number(value: Any) -> bool:
    """Not a number to jsonschema, so ``minimum`` and ``maximum`` do not apply."""
    return isinstance(value, bool) or not isinstance(value, numbers.Number)


# Narrower than (or equal to) jsonschema's draft 2020-12 types: "True" must imply jsonschema agrees.
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _same(expected: Any, value: Any) -> bool:
    """Equal and of the same scalar type (1, 1.0 and True are told apart, as jsonschema does)."""
    if isinstance(expected, str):
        return isinstance(value, str) and expected == value
    return (
        type(expected) is type(value) and isinstance(value, int | float | bool) and expected == value
    ) or (expected is None and value is None)


def compile_check(
    schema: Mapping[str, Any],
    formats: Mapping[str, Callable[[Any], bool]] | None = None,
    ignored: Callable[[Any], bool] | None = None,
) -> Check | None:
    """A check for ``schema`` (local ``#/$defs/...`` references only), or None if it cannot be had.

    ``formats`` are the format checks jsonschema applies (``FormatChecker.conforms``); any other
    format is an annotation, as it is to a jsonschema format checker that does not know it.
    ``ignored`` says which values the caller drops every error *about* (an error whose instance is
    that value): such a value passes, except inside ``anyOf``, ``oneOf`` and ``not``, whose own
    error is about the enclosing value.
    """
    defs: dict[tuple[str, bool], Check] = {}
    raw_defs = schema.get("$defs", {})

    def reference(ref: str, strict: bool) -> Check:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in raw_defs:
            raise Unsupported(ref)
        key = (ref[len(prefix) :], strict)
        if key not in defs:
            defs[key] = lambda value: True  # a placeholder while a recursive definition compiles
            defs[key] = build(raw_defs[key[0]], strict)
        return lambda value: defs[key](value)  # noqa: PLW0108 - bound late, for recursion

    def build(sub: Any, strict: bool) -> Check:
        check = _build(sub, strict)
        if strict or ignored is None:
            return check
        skip = ignored
        return lambda value: skip(value) or check(value)

    def _build(sub: Any, strict: bool) -> Check:
        if sub is True:
            return lambda value: True
        if sub is False:
            return lambda value: False
        if not isinstance(sub, Mapping):
            raise Unsupported(repr(sub))
        checks: list[Check] = []
        for keyword, argument in sub.items():
            if keyword in _ANNOTATIONS:
                continue
            if keyword in ("properties", "additionalProperties", "patternProperties"):
                continue  # compiled together below
            checks.append(_keyword(keyword, argument, sub, strict))
        if any(k in sub for k in ("properties", "additionalProperties", "patternProperties")):
            checks.append(_object_members(sub, strict))
        if not checks:
            return lambda value: True
        if len(checks) == 1:
            return checks[0]
        return lambda value: all(check(value) for check in checks)

    def _object_members(sub: Mapping[str, Any], strict: bool) -> Check:
        properties = {name: build(s, strict) for name, s in sub.get("properties", {}).items()}
        patterns = [(re.compile(p), build(s, strict)) for p, s in sub.get("patternProperties", {}).items()]
        extra_schema = sub.get("additionalProperties", True)
        # "additionalProperties": false is reported about the mapping, not about the extra value
        extra = None if extra_schema is True else build(extra_schema, strict or extra_schema is False)

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for key, item in value.items():
                known = properties.get(key)
                matched = False
                if known is not None:
                    matched = True
                    if not known(item):
                        return False
                for pattern, pattern_check in patterns:
                    if isinstance(key, str) and pattern.search(key):
                        matched = True
                        if not pattern_check(item):
                            return False
                if not matched and extra is not None and not extra(item):
                    return False
            return True

        return check

    def _keyword(keyword: str, argument: Any, sub: Mapping[str, Any], strict: bool) -> Check:
        if keyword == "type":
            names = [argument] if isinstance(argument, str) else list(argument)
            if any(name not in _TYPES for name in names):
                raise Unsupported(f"type {argument!r}")
            tests = [_TYPES[name] for name in names]
            return lambda value: any(test(value) for test in tests)
        if keyword == "$ref":
            return reference(argument, strict)
        if keyword == "const":
            return lambda value: _same(argument, value)
        if keyword == "enum":
            options = list(argument)
            return lambda value: any(_same(option, value) for option in options)
        if keyword == "required":
            names = list(argument)
            return lambda value: not isinstance(value, dict) or all(name in value for name in names)
        if keyword == "items":
            if "prefixItems" in sub:
                raise Unsupported("prefixItems")
            item = build(argument, strict)
            return lambda value: not isinstance(value, list) or all(item(v) for v in value)
        if keyword == "minItems":
            return lambda value: not isinstance(value, list) or len(value) >= argument
        if keyword == "maxItems":
            return lambda value: not isinstance(value, list) or len(value) <= argument
        if keyword == "uniqueItems":
            if not argument:
                return lambda value: True
            # Only lists of strings are decided here; anything else goes to jsonschema.
            return lambda value: (
                not isinstance(value, list)
                or (all(isinstance(v, str) for v in value) and len(set(value)) == len(value))
            )
        if keyword == "minLength":
            return lambda value: not isinstance(value, str) or len(value) >= argument
        if keyword == "maxLength":
            return lambda value: not isinstance(value, str) or len(value) <= argument
        if keyword == "pattern":
            pattern = re.compile(argument)
            return lambda value: not isinstance(value, str) or pattern.search(value) is not None
        if keyword == "minimum":
            return lambda value: _not_number(value) or (_is_number(value) and value >= argument)
        if keyword == "maximum":
            return lambda value: _not_number(value) or (_is_number(value) and value <= argument)
        if keyword == "format":
            test = (formats or {}).get(argument)
            if test is None:
                return lambda value: True
            return test
        if keyword == "propertyNames":
            name_check = build(argument, strict)
            return lambda value: not isinstance(value, dict) or all(name_check(k) for k in value)
        if keyword == "anyOf":
            # jsonschema reports a failed anyOf about the value itself, not about what is inside
            options = [build(s, True) for s in argument]
            return lambda value: any(option(value) for option in options)
        if keyword == "allOf":
            branches = [build(s, strict) for s in argument]
            return lambda value: all(branch(value) for branch in branches)
        if keyword == "oneOf":
            # Needs to know that the other branches fail: only exact branches can say so.
            exact_options = [_exact(s) for s in argument]
            if any(option is None for option in exact_options):
                return lambda value: False
            decided = [option for option in exact_options if option is not None]
            return lambda value: sum(1 for option in decided if option(value)) == 1
        if keyword == "not":
            negated = _exact(argument)
            if negated is None:
                return lambda value: False
            return lambda value: not negated(value)
        raise Unsupported(keyword)

    def _exact(sub: Any) -> Check | None:
        """A check whose False is as sure as its True (jsonschema finds an error), or None. Only for
        keywords decided exactly here: no numbers (jsonschema's "integer" takes 1.0, its numbers
        include Decimal), no references, constants and enums of strings only."""
        if isinstance(sub, bool):
            return lambda value: sub
        if not isinstance(sub, Mapping):
            return None
        checks: list[Check] = []
        for keyword, argument in sub.items():
            if keyword in _ANNOTATIONS:
                continue
            if keyword == "type":
                names = [argument] if isinstance(argument, str) else list(argument)
                if not set(names) <= {"object", "array", "string", "boolean", "null"}:
                    return None
            elif keyword in ("const", "enum"):
                values = [argument] if keyword == "const" else list(argument)
                if not all(isinstance(v, str) for v in values):
                    return None
            elif keyword in ("properties", "additionalProperties"):
                children = sub["properties"].values() if keyword == "properties" else [argument]
                if any(c is not True and _exact(c) is None for c in children):
                    return None
                if keyword == "properties" or "properties" not in sub:
                    checks.append(_object_members(sub, True))
                continue
            elif keyword == "items":
                if _exact(argument) is None:
                    return None
            elif keyword not in ("required", "minItems", "maxItems", "minLength", "maxLength", "pattern"):
                return None
            checks.append(_keyword(keyword, argument, sub, True))
        return lambda value: all(check(value) for check in checks)

    try:
        return build(schema, False)
    except (Unsupported, re.error, TypeError):
        return None
