"""JMESPath ASTs compiled to Python closures, so that the hot path does not walk a tree per alert.

The jmespath library interprets its AST node by node through a visitor: fine once, slow a hundred
thousand times a second. :func:`compile_closure` turns the same AST into nested closures that do exactly
what :class:`jmespath.visitor.TreeInterpreter` does for each node type, with fused fast paths for what
playbook conditions are made of (``labels.severity == 'critical'``, ``&&``, ``||``, ``!``,
``contains``, ``starts_with``, ``not_null``). Anything without a closure of its own (expression
references for ``sort_by`` and friends) is handed to the library's interpreter for that subtree, and
functions outside the fast paths go through the library's own type-checked function table, as
:mod:`kurative.matching.functions` adapts it (numbers stay finite). The result must always equal
``jmespath.search`` (and :meth:`Expression.search`) except where that module says: the unit tests prove
it with a differential property test and the official compliance suite.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from numbers import Number
from typing import Any

from kurative.matching.functions import FUNCTIONS, INTERPRETER

Closure = Callable[[Any], Any]

_INTERPRETER = INTERPRETER
# JMESPath's falsy values besides null and false (compared with ==, as the library does).
EMPTY_VALUES: tuple[Any, ...] = ("", [], {})
_FUNCTIONS = FUNCTIONS


def _is_actual_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, Number)


def _equals(x: Any, y: Any) -> bool:
    # JMESPath: 0/1 never equal false/true, although Python says they do.
    if _is_actual_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_actual_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return bool(x == y)


def _is_comparable(x: Any) -> bool:
    return _is_actual_number(x) or isinstance(x, str)


def is_false(value: Any) -> bool:
    """JMESPath falsiness: ``''``, ``[]``, ``{}``, ``null`` and ``false`` (never ``0``)."""
    return value is None or value is False or value in EMPTY_VALUES


def is_true(value: Any) -> bool:
    return not is_false(value)


_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "gt": operator.gt,
    "lte": operator.le,
    "gte": operator.ge,
}


def compile_closure(node: Mapping[str, Any]) -> Closure:
    """A function of the current value that evaluates ``node`` exactly as jmespath would."""
    kind = node["type"]
    builder = _BUILDERS.get(kind)
    if builder is None:
        return _interpreted(node)
    return builder(node)


def _interpreted(node: Mapping[str, Any]) -> Closure:
    visit = _INTERPRETER.visit

    def interpret(value: Any) -> Any:
        return visit(node, value)  # type: ignore[arg-type]

    return interpret


def _field_names(node: Mapping[str, Any]) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression":
        names: tuple[str, ...] = ()
        for child in node["children"]:
            part = _field_names(child)
            if part is None:
                return None
            names += part
        return names
    return None


def compile_path(names: tuple[str, ...]) -> Closure:
    """``a.b.c`` as one closure: a non-object anywhere along the way yields null."""
    if len(names) == 1:
        (a,) = names

        def get1(value: Any) -> Any:
            try:
                return value.get(a)
            except AttributeError:
                return None

        return get1
    if len(names) == 2:
        a, b = names

        def get2(value: Any) -> Any:
            try:
                return value.get(a).get(b)
            except AttributeError:
                return None

        return get2

    def get_n(value: Any) -> Any:
        try:
            for name in names:
                value = value.get(name)
        except AttributeError:
            return None
        return value

    return get_n


def _field(node: Mapping[str, Any]) -> Closure:
    return compile_path((node["value"],))


def _subexpression(node: Mapping[str, Any]) -> Closure:
    names = _field_names(node)
    if names is not None:
        return compile_path(names)
    return _sequence(node)


def _literal(node: Mapping[str, Any]) -> Closure:
    constant = node["value"]

    def literal(_value: Any) -> Any:
        return constant

    return literal


def _current(_node: Mapping[str, Any]) -> Closure:
    def current(value: Any) -> Any:
        return value

    return current


def _comparator(node: Mapping[str, Any]) -> Closure:
    op = node["value"]
    left_node, right_node = node["children"]
    left = compile_closure(left_node)
    right = compile_closure(right_node)
    if op in ("eq", "ne"):
        # A string literal on either side can never hit the 0/1 versus false/true special case.
        literal_side = None
        if right_node["type"] == "literal" and isinstance(right_node["value"], str):
            literal_side, other = right_node["value"], left
        elif left_node["type"] == "literal" and isinstance(left_node["value"], str):
            literal_side, other = left_node["value"], right
        if literal_side is not None:
            constant = literal_side
            if op == "eq":

                def eq_literal(value: Any) -> bool:
                    return bool(other(value) == constant)

                return eq_literal

            def ne_literal(value: Any) -> bool:
                return bool(other(value) != constant)

            return ne_literal
        if op == "eq":

            def eq(value: Any) -> bool:
                return _equals(left(value), right(value))

            return eq

        def ne(value: Any) -> bool:
            return not _equals(left(value), right(value))

        return ne
    compare = _ORDERING[op]

    def ordering(value: Any) -> Any:
        a = left(value)
        b = right(value)
        if not (_is_comparable(a) and _is_comparable(b)):
            return None
        return compare(a, b)

    return ordering


def _and(node: Mapping[str, Any]) -> Closure:
    left = compile_closure(node["children"][0])
    right = compile_closure(node["children"][1])

    def and_(value: Any) -> Any:
        matched = left(value)
        if matched is None or matched is False or matched in EMPTY_VALUES:
            return matched
        return right(value)

    return and_


def _or(node: Mapping[str, Any]) -> Closure:
    left = compile_closure(node["children"][0])
    right = compile_closure(node["children"][1])

    def or_(value: Any) -> Any:
        matched = left(value)
        if matched is None or matched is False or matched in EMPTY_VALUES:
            return right(value)
        return matched

    return or_


def _not(node: Mapping[str, Any]) -> Closure:
    child = compile_closure(node["children"][0])

    def not_(value: Any) -> bool:
        result = child(value)
        if _is_actual_number(result) and result == 0:
            return False
        return not result

    return not_


def _sequence(node: Mapping[str, Any]) -> Closure:
    """``index_expression`` and ``pipe``: each child reads what the previous one produced."""
    parts = [compile_closure(child) for child in node["children"]]

    def sequence(value: Any) -> Any:
        for part in parts:
            value = part(value)
        return value

    return sequence


def _index(node: Mapping[str, Any]) -> Closure:
    position = node["value"]

    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _slice(node: Mapping[str, Any]) -> Closure:
    bounds = slice(*node["children"])

    def slice_(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        return value[bounds]

    return slice_


def _multi_select_list(node: Mapping[str, Any]) -> Closure:
    parts = [compile_closure(child) for child in node["children"]]

    def multi_list(value: Any) -> Any:
        if value is None:
            return None
        return [part(value) for part in parts]

    return multi_list


def _multi_select_dict(node: Mapping[str, Any]) -> Closure:
    parts = [(child["value"], compile_closure(child["children"][0])) for child in node["children"]]

    def multi_dict(value: Any) -> Any:
        if value is None:
            return None
        return {key: part(value) for key, part in parts}

    return multi_dict


def _project(items: Iterable[Any], each: Closure) -> list[Any]:
    """Apply ``each`` to every item, dropping nulls, as JMESPath projections do."""
    return [current for current in map(each, items) if current is not None]


def _projection(node: Mapping[str, Any]) -> Closure:
    base = compile_closure(node["children"][0])
    each = compile_closure(node["children"][1])

    def projection(value: Any) -> Any:
        items = base(value)
        return _project(items, each) if isinstance(items, list) else None

    return projection


def _value_projection(node: Mapping[str, Any]) -> Closure:
    base = compile_closure(node["children"][0])
    each = compile_closure(node["children"][1])

    def value_projection(value: Any) -> Any:
        try:
            items = base(value).values()
        except AttributeError:
            return None
        return _project(items, each)

    return value_projection


def _filter_projection(node: Mapping[str, Any]) -> Closure:
    base = compile_closure(node["children"][0])
    each = compile_closure(node["children"][1])
    condition = compile_closure(node["children"][2])

    def filter_projection(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            if is_true(condition(item)):
                current = each(item)
                if current is not None:
                    out.append(current)
        return out

    return filter_projection


def _flatten(node: Mapping[str, Any]) -> Closure:
    base = compile_closure(node["children"][0])

    def flatten(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        out: list[Any] = []
        for item in items:
            if isinstance(item, list):
                out.extend(item)
            else:
                out.append(item)
        return out

    return flatten


def _function(node: Mapping[str, Any]) -> Closure:
    name = node["value"]
    children = node["children"]
    if any(child["type"] == "expref" for child in children):
        return _interpreted(node)  # sort_by, max_by, map…: the library drives the callbacks
    args = [compile_closure(child) for child in children]
    call = _FUNCTIONS.call_function

    def generic(value: Any) -> Any:
        return call(name, [arg(value) for arg in args])

    if name in ("starts_with", "ends_with") and len(args) == 2:
        subject_of, fix_of = args
        method = str.startswith if name == "starts_with" else str.endswith

        def affix(value: Any) -> Any:
            subject = subject_of(value)
            fix = fix_of(value)
            if type(subject) is str and type(fix) is str:
                return method(subject, fix)
            return call(name, [subject, fix])  # the library raises its own type error

        return affix
    if name == "contains" and len(args) == 2:
        subject_of, search_of = args

        def contains(value: Any) -> Any:
            subject = subject_of(value)
            search = search_of(value)
            if type(subject) is list or (type(subject) is str and type(search) is str):
                return search in subject
            return call(name, [subject, search])

        return contains
    if name == "not_null" and args:

        def not_null(value: Any) -> Any:
            # Every argument is evaluated first, as the library does: an error in any one raises.
            results = [arg(value) for arg in args]
            for result in results:
                if result is not None:
                    return result
            return None

        return not_null
    return generic


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Closure]] = {
    "field": _field,
    "subexpression": _subexpression,
    "literal": _literal,
    "current": _current,
    "identity": _current,
    "comparator": _comparator,
    "and_expression": _and,
    "or_expression": _or,
    "not_expression": _not,
    "index_expression": _sequence,
    "pipe": _sequence,
    "index": _index,
    "slice": _slice,
    "multi_select_list": _multi_select_list,
    "multi_select_dict": _multi_select_dict,
    "projection": _projection,
    "value_projection": _value_projection,
    "filter_projection": _filter_projection,
    "flatten": _flatten,
    "function_expression": _function,
}


_RELATIVE_AFTER_FIRST = frozenset(
    {
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "pipe",
    }
)


def root_fields(node: Mapping[str, Any]) -> frozenset[str]:
    """Names of the context's top-level keys an expression reads; ``@`` means the whole context.

    Only the first child of a path or projection reads the root; the rest read what it produced.
    """
    kind = node["type"]
    if kind == "field":
        return frozenset({node["value"]})
    if kind in ("current", "identity"):
        return frozenset({"@"})
    if kind in ("literal", "expref", "index", "slice"):
        return frozenset()
    children = [child for child in node.get("children", []) if isinstance(child, Mapping)]
    if kind in _RELATIVE_AFTER_FIRST:
        return root_fields(children[0]) if children else frozenset()
    found: frozenset[str] = frozenset()
    for child in children:
        found |= root_fields(child)
    return found


def conjuncts(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The operands of a top-level ``a && b && c`` chain, left to right (the node itself otherwise)."""
    if node["type"] == "and_expression":
        return conjuncts(node["children"][0]) + conjuncts(node["children"][1])
    return [node]


def field_path(node: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``('labels', 'severity')`` for ``labels.severity``; ``None`` when the node is not a pure path."""
    return _field_names(node)


def equality_constraint(node: Mapping[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """``(path, value)`` when ``node`` is ``path == 'value'`` (either side) with a string literal."""
    if node["type"] != "comparator" or node["value"] != "eq":
        return None
    left, right = node["children"]
    for path_node, literal in ((left, right), (right, left)):
        if literal["type"] == "literal" and isinstance(literal["value"], str):
            path = _field_names(path_node)
            if path is not None:
                return path, literal["value"]
    return None


def compile_all(nodes: list[Mapping[str, Any]]) -> Closure | None:
    """One closure that is truthy exactly when every node is JMESPath-true (in order, short-circuit)."""
    closures = [compile_closure(node) for node in nodes]
    if not closures:
        return None
    if len(closures) == 1:
        return closures[0]

    def every(value: Any) -> bool:
        for closure in closures:
            result = closure(value)
            if result is None or result is False or result in EMPTY_VALUES:
                return False
        return True

    return every
