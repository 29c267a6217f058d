"""Templates in step params: ``${expr}`` alone yields a typed value, inside text it interpolates.

The scanner finds the closing brace of ``${`` the way JMESPath reads the text: braces inside
multi-select hashes nest, and ``'raw strings'``, ``"quoted identifiers"`` and ```json literals```
are skipped whole, so ``${join(',', ['}'])}`` is one expression. ``$${`` writes a literal ``${``.
Label values that contain ``${`` are data: templates are scanned in playbooks, never in alerts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kurative.errors import ExpressionError, TemplateRenderError
from kurative.matching.expressions import (
    Expression,
    ExpressionSyntaxError,
    ExpressionTooDeep,
    SyntaxProblem,
    compile_expression,
)


class TemplateSyntaxError(SyntaxProblem):
    """A template is malformed (unterminated, empty, or holding an expression that does not parse)."""


class TemplateTooDeep(TemplateSyntaxError):
    """A template's expression nests too deeply (:class:`ExpressionTooDeep` inside ``${…}``)."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``${…}``: its expression and where it starts in the template (offset of ``$``)."""

    expression: Expression
    offset: int


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Placeholder, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def is_single(self) -> bool:
        """Exactly one placeholder and no text around it: renders to the typed value."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Placeholder)

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    def render(self, context: Mapping[str, Any]) -> Any:
        if self.is_single:
            placeholder = self.parts[0]
            assert isinstance(placeholder, Placeholder)
            return placeholder.expression.search(context)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(to_text(part.expression.search(context)))
        return "".join(out)


def to_text(value: Any) -> str:
    """How a value reads inside text: null is empty, strings as they are, the rest as JSON.

    Raises :class:`ExpressionError` for what JSON cannot write: a number that is not finite, an integer
    of more than 4,300 digits, a structure nested past the recursion limit.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ExpressionError(f"the value cannot be written as text: {exc}") from None


_QUOTES = {"'": "'", '"': '"', "`": "`"}


def _scan_expression_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the placeholder whose expression begins at ``start``."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _QUOTES:
            close = _QUOTES[ch]
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise TemplateSyntaxError(
                    f"unterminated {ch} quote inside ${{…}}", text, i, f"close the quote with {close}"
                )
            i = j + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise TemplateSyntaxError("unterminated ${ placeholder", text, start - 2, "close it with }")


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """Split ``text`` into literal text and compiled placeholders, or raise TemplateSyntaxError.

    Remembered (a Template is immutable; a failure raises anew): lint, the ruleset and every step
    run parse the same params."""
    parts: list[str | Placeholder] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _scan_expression_end(text, i + 2)
            source = text[i + 2 : end]
            if not source.strip():
                raise TemplateSyntaxError(
                    "empty ${} placeholder", text, i, "put a JMESPath expression inside"
                )
            try:
                expression = compile_expression(source)
            except ExpressionSyntaxError as exc:
                error = TemplateTooDeep if isinstance(exc, ExpressionTooDeep) else TemplateSyntaxError
                shown = source if len(source) <= 60 else source[:57] + "..."
                raise error(f"in ${{{shown}}}: {exc}", text, i + 2 + exc.offset, exc.hint) from None
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Placeholder(expression, i))
            i = end + 1
            continue
        buf.append(text[i])
        i += 1
    if buf:
        parts.append("".join(buf))
    return Template(tuple(parts))


def iter_strings(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON value with its path, for checking and compiling param templates."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(value, str):
        found.append((path, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.extend(iter_strings(item, (*path, key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(iter_strings(item, (*path, index)))
    return found


def render_value(value: Any, context: Mapping[str, Any], where: str = "") -> Any:
    """Render every template inside a JSON value (params, vars). Errors name ``where``."""
    if isinstance(value, str):
        if "${" not in value:
            return value.replace("$${", "${") if "$$" in value else value
        try:
            return parse_template(value).render(context)
        except (ExpressionError, ValueError, TypeError) as exc:
            raise TemplateRenderError(f"{where}: cannot render {value!r}: {exc}") from None
    if isinstance(value, Mapping):
        return {k: render_value(v, context, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
