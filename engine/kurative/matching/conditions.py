"""Conditions: a JMESPath expression asked only "does it hold?" (``trigger.when``, a step's ``when``).

The runner evaluates a step's ``when`` once the steps before it have run; it needs the same truthiness
and the same compiled speed as matching, but unlike matching it must not quietly treat an evaluation
error as "false": a step whose condition cannot be evaluated is an error the journal records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kurative.errors import ExpressionError
from kurative.matching.compiler import Closure, compile_closure, is_true
from kurative.matching.expressions import Expression, compile_expression
from kurative.matching.ruleset import EVALUATION_ERRORS


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition; :meth:`holds` answers with JMESPath truthiness."""

    expression: Expression
    closure: Closure = field(repr=False, compare=False)

    @property
    def source(self) -> str:
        return self.expression.source

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value; raises :class:`ExpressionError` when it cannot be evaluated."""
        try:
            return self.closure(context)
        except EVALUATION_ERRORS as exc:
            raise ExpressionError(f"condition `{self.source}` failed: {exc}") from None

    def holds(self, context: Mapping[str, Any]) -> bool:
        """Whether the value is truthy (not ``null``, ``false``, ``''``, ``[]`` or ``{}``)."""
        return is_true(self.evaluate(context))


def compile_condition(source: str) -> Condition:
    """Compile ``source``; raises :class:`~kurative.matching.expressions.ExpressionSyntaxError`."""
    expression = compile_expression(source)
    return Condition(expression, compile_closure(expression.ast))
