"""Expressions and templates found by fuzzing: deep nesting, overflowing numbers, hostile values.

Whatever a playbook or an alert holds, compiling and evaluating give a result or a KurativeError:
never RecursionError, OverflowError or a value that is not JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jmespath.exceptions
import pytest

from kurative.cli import main
from kurative.errors import ExpressionError, TemplateRenderError
from kurative.matching.compiler import compile_closure
from kurative.matching.expressions import (
    MAX_EXPRESSION_DEPTH,
    ExpressionSyntaxError,
    ExpressionTooDeep,
    compile_expression,
)
from kurative.matching.templates import TemplateTooDeep, parse_template, render_value

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


# --- numbers out of range -----------------------------------------------------------------------

HUGE = {
    "v": "1.0e400",
    "neg": "-1e400",
    "inf": "inf",
    "nan": "nan",
    "infinity": "-Infinity",
    "digits": "9" * 5000,
    "max": "1e308",
    "wide": "9" * 3999,
}


def _both(source: str, document: dict[str, Any]) -> tuple[object, object]:
    """What the interpreter (templates) and the compiled closure (conditions) give: a value or an error."""
    expression = compile_expression(source)
    closure = compile_closure(expression.ast)
    return _result(lambda: expression.search(document)), _result(lambda: closure(document))


def _result(call: Callable[[], object]) -> object:
    try:
        return ("value", call())
    except ExpressionError as exc:  # a KurativeError: the condition fails, the render errs
        return ("error", str(exc).split(":")[0])
    except jmespath.exceptions.JMESPathTypeError:
        return ("type-error",)


@pytest.mark.parametrize("label", ["v", "neg", "inf", "nan", "infinity", "digits"])
def test_to_number_of_no_finite_number_is_null(label: str) -> None:
    document = {"labels": HUGE}
    assert _both(f"to_number(labels.{label})", document) == (("value", None), ("value", None))
    # Functions of it then see null, as they would for any other non-number: a type error, never
    # OverflowError or ValueError.
    for function in ("ceil", "floor", "abs"):
        assert _both(f"{function}(to_number(labels.{label}))", document) == (("type-error",),) * 2
    assert _both(f"to_number(labels.{label}) > `1`", document) == (("value", None),) * 2


@pytest.mark.parametrize(
    ("source", "function"),
    [
        ("sum([to_number(labels.max), to_number(labels.max)])", "sum()"),
        ("avg([to_number(labels.max), to_number(labels.max)])", "avg()"),
        ("avg([to_number(labels.wide)]) ", "avg()"),
        ("ceil(vars.inf)", "ceil()"),
        ("floor(vars.inf)", "floor()"),
        ("ceil(vars.nan)", "ceil()"),
        ("abs(vars.inf)", "abs()"),
        ("max_by([{n: sum([to_number(labels.max), to_number(labels.max)])}], &n)", "sum()"),
        ("sum([" + ", ".join(["to_number(labels.wide)"] * 11) + "])", "sum()"),  # past 4,000 digits
    ],
)
def test_a_function_that_overflows_raises_expression_error(source: str, function: str) -> None:
    document = {"labels": HUGE, "vars": {"inf": math.inf, "nan": math.nan}}
    assert _both(source, document) == (("error", function),) * 2


def test_exact_integers_within_range_stay_exact() -> None:
    document = {"labels": HUGE}
    expected = int("9" * 3999) * 2
    assert (
        _both("sum([to_number(labels.wide), to_number(labels.wide)])", document) == (("value", expected),) * 2
    )
    assert _both("ceil(to_number(labels.max))", document) == (("value", int(1e308)),) * 2


@pytest.mark.parametrize("literal", ["`1e400`", "`[1, -1e999]`", '`{"a": 1e400}`'])
def test_a_literal_out_of_range_does_not_compile(literal: str) -> None:
    source = f"labels.a == {literal}"
    with pytest.raises(ExpressionSyntaxError, match="number out of range in a JSON literal") as caught:
        compile_expression(source)
    assert caught.value.offset == source.index("`")


def test_a_condition_that_overflows_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    when = "sum([to_number(labels.w), to_number(labels.w)]) > `1` || ceil(to_number(labels.v)) > `1`"
    (rules / "deep.yaml").write_text(
        PLAYBOOK.replace("WHEN", when).replace("MESSAGE", "${ceil(to_number(labels.w))}")
    )
    alert = tmp_path / "alert.json"
    alert.write_text('{"labels": {"alertname": "Anything", "v": "1.0e400", "w": "1e308"}}')
    assert main(["simulate", "--explain", "--rules", str(rules), str(alert)]) == 0
    out = capsys.readouterr().out
    assert "no playbook matches" in out
    assert "deep (error): when `" in out
    assert "sum(): the result is inf: out of the range of JSON numbers" in out


# --- templates with hostile values ----------------------------------------------------------------


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.inf, "Out of range float values are not JSON compliant"),
        (math.nan, "Out of range float values are not JSON compliant"),
        (10**5000, "Exceeds the limit"),
        (_nested(5000), "maximum recursion depth exceeded"),
    ],
    ids=["inf", "nan", "huge-int", "deep"],
)
def test_a_value_that_cannot_be_text_is_a_render_error(value: object, reason: str) -> None:
    with pytest.raises(TemplateRenderError, match=reason):
        render_value({"message": "x ${vars.a}"}, {"vars": {"a": value}})


def test_hostile_strings_render_as_they_are() -> None:
    context = {"labels": {"s": "\ud800", "t": "${labels.s}", "brace": "}"}, "vars": {"n": _nested(50)}}
    rendered = render_value(
        {"a": "${labels.s}", "b": "x ${labels.t} ${labels.brace}", "c": "${vars.n}", "d": "[${vars.n}]"},
        context,
    )
    assert rendered == {
        "a": "\ud800",
        "b": "x ${labels.s} }",  # a label value that looks like a template is data
        "c": _nested(50),
        "d": "[" * 52 + "]" * 52,  # the template's brackets around the 51 levels of the value
    }
