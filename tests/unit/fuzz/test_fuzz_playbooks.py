"""Property tests over what playbook authors and alerts reach: a result or a KurativeError, nothing else.

Each entry point gets generated input, seeded (``@example``) with the classes of crashes fuzzing the CLI
found: values of the wrong type where the schema wanted a string or a list, lone surrogates, numbers
with thousands of digits, numbers JSON cannot hold, expressions nested hundreds deep, functions that
overflow. Time is bounded by the hypothesis deadline, memory by a tracemalloc peak
(:mod:`tests.support.fuzz_playbooks`). The longer run over the same properties is tests/fuzz.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kurative.durations import MAX_DURATION_SECONDS, DurationError, format_duration, parse_duration
from kurative.errors import KurativeError
from kurative.matching.compiler import compile_closure
from kurative.matching.expressions import Expression, compile_expression
from kurative.matching.playbook_tests import load_test_file
from kurative.matching.templates import Template, parse_template, render_value
from kurative.playbooks.loading import load_bytes
from tests.support.fuzz_playbooks import (
    DEADLINE_MS,
    check_lint,
    check_playbook_test,
    contexts,
    durations,
    evaluation_outcome,
    expressions,
    json_writable,
    playbook_files,
    playbook_test_files,
    put,
    result_or_kurative_error,
    templates,
    to_yaml,
    valid_playbook,
    valid_playbook_test,
)

QUICK = settings(
    max_examples=30,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The entry points that run the whole CLI (several commands an example) get fewer generated examples.
QUICK_CLI = settings(QUICK, max_examples=12)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _playbook(*changes: tuple[tuple[str | int, ...], Any]) -> bytes:
    document = valid_playbook()
    for path, value in changes:
        put(document, path, value)
    return to_yaml(document).encode("utf-8")


def _playbook_test(*changes: tuple[tuple[str | int, ...], Any]) -> bytes:
    document = valid_playbook_test()
    for path, value in changes:
        put(document, path, value)
    return to_yaml(document).encode("utf-8")


DEEP_AND = " && ".join(["labels.a"] * 600)
OVERFLOW = "ceil(to_number(labels.v)) > `1`"


@QUICK_CLI
@given(raw=playbook_files)
@example(raw=_playbook((("spec", "trigger", "alertname"), None)))
@example(raw=_playbook((("spec", "trigger", "alertname"), 5)))
@example(raw=_playbook((("spec", "trigger", "alertname"), [None, 3])))
@example(raw=_playbook((("spec", "steps", 0, "params", "message"), "\ud800")))
@example(raw=_playbook((("spec", "steps", 0, "name"), "s\udc80")))
@example(raw=_playbook((("metadata", "name"), "\ud83d")))
@example(raw=_playbook((("spec", "dedupe", "window"), "9" * 5000 + "s")))
@example(raw=_playbook((("spec", "limits", 0, "per"), "9" * 400 + "d")))
@example(raw=_playbook((("spec", "steps", 1, "params", "duration"), "99999999999999d")))
@example(raw=_playbook((("spec", "trigger", "when"), DEEP_AND)))
@example(raw=_playbook((("spec", "trigger", "when"), "!" * 3000 + "a")))
@example(
    raw=_playbook((("spec", "steps", 0, "params", "message"), "${" + "abs(" * 300 + "a" + ")" * 300 + "}"))
)
@example(raw=_playbook((("spec", "trigger", "when"), OVERFLOW)))
@example(
    raw=_playbook(
        (("spec", "steps", 0, "params", "message"), "${sum([to_number(labels.w), to_number(labels.w)])}")
    )
)
@example(raw=_playbook((("spec", "vars", "n"), math.inf)))
@example(raw=_playbook((("spec", "trigger", "when"), "labels.a == `1e400`")))
@example(raw=b"spec: {vars: {big: 1e400}}\n")
@example(raw=b'apiVersion: "\\ud800"\n')
def test_lint_simulate_never_crash(workdir: Path, raw: bytes) -> None:
    check_lint(workdir, raw)


@QUICK
@given(raw=playbook_files)
@example(raw=_playbook((("spec", "trigger", "alertname"), None)))
@example(raw=_playbook((("spec", "steps"), [None, 5, "x"])))
def test_playbook_loader(raw: bytes) -> None:
    loaded = result_or_kurative_error(lambda: load_bytes("fuzzed.yaml", raw))
    assert not isinstance(loaded, KurativeError)  # the loader reports problems as diagnostics
    for playbook in loaded.playbooks:
        assert json_writable(playbook.body)
        assert playbook.content_hash.startswith("sha256:")
        playbook.content_hash.encode("ascii")
    for diagnostic in loaded.diagnostics:
        assert diagnostic.line >= 0
        assert diagnostic.column >= 0


@QUICK_CLI
@given(raw=playbook_test_files)
@example(raw=_playbook_test((("tests", 0, "alerts", 1, "at"), "9" * 400 + "s")))
@example(raw=_playbook_test((("tests", 0, "alerts", 1, "at"), "9" * 5000 + "ms")))
@example(raw=_playbook_test((("tests", 0, "name"), "\ud800")))
@example(raw=_playbook_test((("tests", 0, "expect", 1, "steps"), {"fuzzed": {"s\udfff": {}}})))
@example(raw=_playbook_test((("tests", 0, "alerts", 0, "a"), "1.0e400")))
def test_playbook_test_loader(workdir: Path, raw: bytes) -> None:
    path = workdir / "loader.test.yaml"
    path.write_bytes(raw)
    loaded = result_or_kurative_error(lambda: load_test_file(path))
    assert not isinstance(loaded, KurativeError)
    for problem in loaded.problems:
        problem.encode("utf-8", "backslashreplace")
    check_playbook_test(workdir, raw)


@QUICK
@given(text=durations)
@example(text="9" * 5000 + "s")
@example(text="9" * 400 + "d")
@example(text="1" + "0" * 320 + "ms")
@example(text="100d" * 400)
@example(text="36500d")
def test_duration_parser(text: str) -> None:
    seconds = result_or_kurative_error(lambda: parse_duration(text))
    if isinstance(seconds, KurativeError):
        assert isinstance(seconds, DurationError)
        return
    assert 0 <= seconds <= MAX_DURATION_SECONDS
    assert parse_duration(format_duration(seconds)) <= seconds + 1


@QUICK
@given(seconds=st.floats(allow_nan=True, allow_infinity=True))
@example(seconds=math.inf)
@example(seconds=math.nan)
@example(seconds=1e300)
def test_duration_formatter(seconds: float) -> None:
    text = result_or_kurative_error(lambda: format_duration(seconds))
    if not isinstance(text, KurativeError) and seconds <= MAX_DURATION_SECONDS:
        assert parse_duration(text) >= 0


@QUICK
@given(source=expressions, context=contexts)
@example(source="ceil(to_number(labels.v))", context={"labels": {"v": "1.0e400"}, "vars": {}})
@example(source="floor(to_number(labels.v))", context={"labels": {"v": "-1e400"}, "vars": {}})
@example(
    source="sum([to_number(labels.v), to_number(labels.v)])", context={"labels": {"v": "1e308"}, "vars": {}}
)
@example(source="avg([to_number(labels.v)])", context={"labels": {"v": "9" * 3999}, "vars": {}})
@example(source="abs(vars.a)", context={"labels": {}, "vars": {"a": math.inf}})
@example(source="ceil(vars.a)", context={"labels": {}, "vars": {"a": math.nan}})
@example(source="to_number(labels.v)", context={"labels": {"v": "9" * 5000}, "vars": {}})
@example(source=DEEP_AND, context={"labels": {"a": "1"}, "vars": {}})
@example(source="!" * 3000 + "a", context={"labels": {}, "vars": {}})
@example(source="abs(" * 400 + "a" + ")" * 400, context={"labels": {}, "vars": {}})
@example(source="`" + "[" * 500 + "]" * 500 + "`", context={"labels": {}, "vars": {}})
@example(source="`1e400`", context={"labels": {}, "vars": {}})
@example(source="labels.s", context={"labels": {"s": "\ud800"}, "vars": {}})
@example(source="`1` < 'x'", context={"labels": {}, "vars": {}})  # a type error, as in the library
def test_expression_compiler_and_evaluator(source: str, context: dict[str, Any]) -> None:
    expression = result_or_kurative_error(lambda: compile_expression(source))
    if isinstance(expression, KurativeError):
        return
    assert isinstance(expression, Expression)
    closure = result_or_kurative_error(lambda: compile_closure(expression.ast))
    assert not isinstance(closure, KurativeError)
    # The compiled closure (conditions, keys) and the interpreter (templates) agree.
    assert evaluation_outcome(lambda: closure(context)) == evaluation_outcome(
        lambda: expression.search(context)
    )


@QUICK
@given(text=templates, context=contexts)
@example(text="x ${labels.s}", context={"labels": {"s": "\ud800"}, "vars": {}})
@example(text="x ${vars.a}", context={"labels": {}, "vars": {"a": math.inf}})
@example(text="x ${vars.a}", context={"labels": {}, "vars": {"a": 10**5000}})
@example(text="x ${vars.a}", context={"labels": {}, "vars": {"a": json.loads("[" * 200 + "]" * 200)}})
@example(text="${to_number(labels.v)}", context={"labels": {"v": "1.0e400"}, "vars": {}})
@example(text="${" + "abs(" * 300 + "a" + ")" * 300 + "}", context={"labels": {}, "vars": {}})
@example(text="${labels.a} $${x} ${", context={"labels": {"a": "${labels.a}"}, "vars": {}})
def test_template_renderer(text: str, context: dict[str, Any]) -> None:
    template = result_or_kurative_error(lambda: parse_template(text))
    if not isinstance(template, KurativeError):
        assert isinstance(template, Template)
    rendered = result_or_kurative_error(
        lambda: render_value({"param": text, "list": [text]}, context, "step")
    )
    if not isinstance(rendered, KurativeError):
        assert json_writable(rendered)
