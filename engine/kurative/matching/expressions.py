"""JMESPath expressions: the only language a playbook can evaluate (no code ever runs from YAML).

Compiling turns a jmespath error into :class:`ExpressionSyntaxError` with the offset of the bad token
and a hint for the mistakes people actually make (unquoted label names with ``-`` or ``/``, Python
operators, double-quoted strings meant as literals). Evaluation follows JMESPath semantics: a missing key
is ``null``, so ``labels.team != 'x'`` is true when the alert has no ``team`` label.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from kurative.errors import ExpressionError
from kurative.matching.functions import INTERPRETER


class SyntaxProblem(ExpressionError):
    """Text that does not parse, with the 0-based ``offset`` of the problem and a hint for the fix."""

    def __init__(self, message: str, text: str, offset: int, hint: str = "") -> None:
        super().__init__(message)
        self.text = text
        self.offset = offset
        self.hint = hint


class ExpressionSyntaxError(SyntaxProblem):
    """A JMESPath expression does not parse."""

    @property
    def expression(self) -> str:
        return self.text


class ExpressionTooDeep(ExpressionSyntaxError):
    """An expression (or a JSON literal in it) nests deeper than :data:`MAX_EXPRESSION_DEPTH`."""


# Parsing, compiling to closures and evaluating all recurse once per level of the syntax tree: a bound
# well below Python's recursion limit keeps each of them from dying with RecursionError, whoever calls.
MAX_EXPRESSION_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled JMESPath expression with its source text."""

    source: str
    parsed: ParsedResult = field(repr=False, compare=False)

    def search(self, data: Mapping[str, Any]) -> Any:
        return INTERPRETER.visit(self.parsed.parsed, data)  # the engine's functions (kept finite)

    @property
    def ast(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.parsed.parsed)


_HYPHENATED = re.compile(r"(?<![\"'`\w])([A-Za-z_][\w]*\.)+[A-Za-z_]\w*[-/][\w-]+")


def _hint_for(source: str, token: str, offset: int) -> str:
    if token in {"-", "/"} or _HYPHENATED.search(source):
        return "quote label names that contain '-' or '/': labels.\"app-name\""
    if token in {"and", "or", "not"}:
        return "use JMESPath operators: ==, !=, &&, ||, !"
    if token == "=":
        return "compare with == (a single = is not an operator in JMESPath)"
    if '"' in source and "'" not in source:
        return "string literals use single quotes ('critical'); double quotes name fields"
    if "`" in token:
        return 'JSON literals go between backticks and must be valid JSON: `1`, `"x"`, `[1, 2]`'
    return "see https://jmespath.org/specification.html for the grammar"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _too_deep(source: str, offset: int | None = None) -> ExpressionTooDeep:
    return ExpressionTooDeep(
        f"expression nested more than {MAX_EXPRESSION_DEPTH} levels deep",
        source,
        offset or 0,
        "split it into simpler parts, such as a step condition or a var, or flatten the JSON literal",
    )


def _bracket_overflow(source: str) -> int | None:
    """Where brackets first open past the maximum depth (quoted text skipped), if they do."""
    depth = 0
    quote = ""
    escaped = False
    for offset, char in enumerate(source):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
            if depth > MAX_EXPRESSION_DEPTH:
                return offset
        elif char in ")]}":
            depth -= 1
    return None


def _depth(ast: Mapping[str, Any]) -> int:
    """Levels of the syntax tree, JSON literals included (iterative: it must not recurse itself)."""
    deepest = 0
    stack: list[tuple[Any, int, bool]] = [(ast, 1, True)]  # (value, depth, is a syntax tree node)
    while stack and deepest <= MAX_EXPRESSION_DEPTH:
        node, depth, is_node = stack.pop()
        deepest = max(deepest, depth)
        if is_node and node.get("type") == "literal":
            stack.append((node.get("value"), depth + 1, False))
        elif is_node:
            children = node.get("children", ())
            stack.extend((child, depth + 1, True) for child in children if isinstance(child, Mapping))
        elif isinstance(node, Mapping | list):
            items = node.values() if isinstance(node, Mapping) else node
            stack.extend((item, depth + 1, False) for item in items if isinstance(item, Mapping | list))
    return deepest


def compile_expression(source: str) -> Expression:
    """Compile ``source`` or raise :class:`ExpressionSyntaxError` with a position and a hint."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionSyntaxError("empty expression", str(source), 0, "write a JMESPath expression")
    return _compile(source)


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> Expression:
    """Lint and the ruleset compile the same expressions, and playbooks repeat many (an Expression
    is immutable; a failure is not remembered, it raises anew)."""
    overflow = _bracket_overflow(source)
    if overflow is not None:
        raise _too_deep(source, overflow)
    try:
        parsed = jmespath.compile(source)
    except RecursionError:  # a long chain of prefix operators (!!!…): the parser recurses on each
        raise _too_deep(source) from None
    except jmespath.exceptions.LexerError as exc:
        offset = int(getattr(exc, "lexer_position", 0) or 0)
        value = str(getattr(exc, "lexer_value", ""))
        raise ExpressionSyntaxError(
            _lower_first(str(exc.message)), source, offset, _hint_for(source, value, offset)
        ) from None
    except jmespath.exceptions.ParseError as exc:
        offset = int(exc.lex_position or 0)
        if exc.token_type in {None, "eof"}:
            raise ExpressionSyntaxError(
                "unexpected end of expression",
                source,
                min(offset, len(source.rstrip())),
                "the expression stops too early: close every (, [ and { and complete the last operator",
            ) from None
        token = str(exc.token_value)
        raise ExpressionSyntaxError(
            f"unexpected token {token!r}", source, offset, _hint_for(source, token, offset)
        ) from None
    except Exception as exc:  # jmespath raises a few bare errors on odd input
        raise ExpressionSyntaxError(f"invalid expression: {exc}", source, 0, "") from None
    if _depth(parsed.parsed) > MAX_EXPRESSION_DEPTH:
        raise _too_deep(source)
    if any(
        node.get("type") == "literal" and _out_of_range(node.get("value")) for node in walk(parsed.parsed)
    ):
        raise ExpressionSyntaxError(
            "number out of range in a JSON literal",
            source,
            max(source.find("`"), 0),
            "JSON numbers in literals must be finite: `1e308` is the largest",
        )
    return Expression(source, parsed)


def _out_of_range(value: Any) -> bool:
    """A non-finite number anywhere in a literal (``1e400`` reads as infinity); depth already bounded."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_out_of_range(item) for item in value)
    if isinstance(value, dict):
        return any(_out_of_range(item) for item in value.values())
    return False


def field_chain(node: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The dotted field path of a pure ``a.b.c`` node (``None`` for anything else)."""
    kind = node.get("type")
    if kind == "field":
        return (str(node["value"]),)
    if kind == "subexpression":
        chain: tuple[str, ...] = ()
        for child in node.get("children", []):
            part = field_chain(child)
            if part is None:
                return None
            chain += part
        return chain
    return None


def leading_fields(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields at the start of a path, even if it continues with an index or a projection."""
    kind = node.get("type")
    if kind == "field":
        return (str(node["value"]),)
    if kind in {"subexpression", "index_expression", "projection", "flatten", "filter_projection"}:
        children = node.get("children", [])
        if not children:
            return ()
        if kind == "subexpression":
            out: tuple[str, ...] = ()
            for child in children:
                part = field_chain(child)
                if part is None:
                    return out or leading_fields(child)
                out += part
            return out
        return leading_fields(children[0])
    return ()


def walk(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every node of a JMESPath AST, parents first."""
    yield node
    for child in node.get("children", []):
        if isinstance(child, Mapping):
            yield from walk(child)


def step_references(expression: Expression) -> list[str]:
    """Names of the steps an expression reads through ``steps.<name>``, in order of appearance."""
    names: list[str] = []
    for node in walk(expression.ast):
        if node.get("type") not in {"subexpression", "index_expression", "projection"}:
            continue
        chain = leading_fields(node)
        if len(chain) >= 2 and chain[0] == "steps" and chain[1] not in names:
            names.append(chain[1])
    return names
