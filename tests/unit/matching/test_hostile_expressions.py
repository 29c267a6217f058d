"""Expressions and templates found by fuzzing: deep nesting, overflowing numbers, hostile values.

Whatever a playbook or an alert holds, compiling and evaluating give a result or a KurativeError:
never RecursionError, OverflowError or a value that is not JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jmespath.exceptions
import pytest

from kurative.cli import main
from kurative.matching.compiler import compile_closure
from kurative.matching.expressions import (
    MAX_EXPRESSION_DEPTH,
    ExpressionTooDeep,
    compile_expression,
)
from kurative.matching.templates import TemplateTooDeep, parse_template

NESTINGS: dict[str, Callable[[int], str]] = {
    "and-chain": lambda n: " && ".join(["a"] * n),
    "or-chain": lambda n: " || ".join(["a"] * n),
    "pipe-chain": lambda n: " | ".join(["a"] * n),
    "not-chain": lambda n: "!" * n + "a",
    "functions": lambda n: "abs(" * n + "a" + ")" * n,
    "not-null": lambda n: "not_null(" * n + "a" + ")" * n,
    "lists": lambda n: "[" * n + "a" + "]" * n,
    "filters": lambda n: "a[?" * n + "b" + "]" * n,
    "parens": lambda n: "(" * n + "a" + ")" * n,
    "literal": lambda n: "`" + "[" * n + "1" + "]" * n + "`",
    "sort-by": lambda n: "sort_by(a, &" * n + "b" + ")" * n,
}


def _deep_stack(depth: int, call: Callable[[], object]) -> object:
    """Run ``call`` under ``depth`` extra frames, as a deep caller (a test runner, the daemon) would."""
    if depth:
        return _deep_stack(depth - 1, call)
    return call()


@pytest.mark.parametrize("kind", sorted(NESTINGS))
@pytest.mark.parametrize("levels", [MAX_EXPRESSION_DEPTH + 1, 400, 3000])
def test_nesting_past_the_bound_is_refused_at_compile_time(kind: str, levels: int) -> None:
    with pytest.raises(ExpressionTooDeep, match=f"nested more than {MAX_EXPRESSION_DEPTH} levels deep"):
        compile_expression(NESTINGS[kind](levels))


@pytest.mark.parametrize("kind", sorted(NESTINGS))
def test_what_compiles_evaluates_under_a_deep_caller(kind: str) -> None:
    """Just below the bound, the library and the closures both evaluate, 500 frames down."""
    levels = MAX_EXPRESSION_DEPTH
    while True:
        try:
            expression = compile_expression(NESTINGS[kind](levels))
            break
        except ExpressionTooDeep:
            levels -= 1
    assert levels >= MAX_EXPRESSION_DEPTH // 3
    document = {"a": [{"b": 1}]}
    closure = compile_closure(expression.ast)
    ours = _deep_stack(500, lambda: _outcome(lambda: closure(document)))
    assert ours == _deep_stack(500, lambda: _outcome(lambda: expression.search(document)))


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except jmespath.exceptions.JMESPathTypeError as exc:  # abs() of a list: a type error, as it should be
        return type(exc)


def test_the_position_points_at_the_first_bracket_too_many() -> None:
    source = "labels.x == 'y' && " + "abs(" * 200 + "a" + ")" * 200
    with pytest.raises(ExpressionTooDeep) as caught:
        compile_expression(source)
    assert caught.value.offset == len("labels.x == 'y' && ") + 4 * MAX_EXPRESSION_DEPTH + 3
    assert source[caught.value.offset] == "("


def test_brackets_inside_quotes_do_not_count() -> None:
    assert compile_expression("labels.x == '" + "(" * 500 + "'").source


def test_a_deep_template_is_its_own_error() -> None:
    with pytest.raises(TemplateTooDeep, match="nested more than"):
        parse_template("x ${" + "abs(" * 300 + "a" + ")" * 300 + "}")


PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: deep, version: 1}
spec:
  trigger: {alertname: [Anything], when: "WHEN"}
  steps: [{name: say, action: log, params: {message: "MESSAGE"}}]
"""


@pytest.mark.parametrize(
    ("when", "message", "code", "column"),
    [
        (" && ".join(["labels.a"] * 300), "hello", "E204", 43),
        ("!" * 3000 + "labels.a", "hello", "E204", 43),
        ("labels.a", "x ${" + "abs(" * 150 + "labels.a" + ")" * 150 + "}", "E204", 6),
    ],
    ids=["condition", "prefix-operators", "template"],
)
def test_lint_simulate_and_test_report_deep_expressions(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    when: str,
    message: str,
    code: str,
    column: int,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "deep.yaml").write_text(PLAYBOOK.replace("WHEN", when).replace("MESSAGE", message))
    assert main(["lint", str(rules)]) == 1
    out = capsys.readouterr().out
    assert f" {code} " in out
    assert "expression nested more than 100 levels deep" in out
    alert = tmp_path / "alert.json"
    alert.write_text('{"labels": {"alertname": "Anything", "a": "1"}}')
    assert main(["simulate", "--rules", str(rules), str(alert)]) == 1
    assert f" {code} " in capsys.readouterr().err
    test_file = tmp_path / "deep.test.yaml"
    test_file.write_text(
        "tests: [{name: t, alerts: [{alertname: Anything}], expect: [{playbooks: [deep]}]}]\n"
    )
    assert main(["test", "--rules", str(rules), str(test_file)]) == 1
    assert f" {code} " in capsys.readouterr().err
