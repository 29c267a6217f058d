"""Hostile playbooks and test files found by fuzzing the CLI: each gives a clear diagnostic, no traceback.

Documents that fail the schema are still modelled and checked for everything else, so that model
building must tolerate a value of any type where the schema wanted a string or a list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kurative.cli import main

GOOD = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: good, version: 1}
spec:
  trigger: {alertname: [Anything]}
  steps: [{name: say, action: log, params: {message: hello}}]
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD
    path = tmp_path / "rules" / "bad.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(GOOD.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("null", "null"),
        ("5", "an integer"),
        ("1.5", "a number"),
        ("true", "a boolean"),
        ("{a: b}", "a mapping"),
    ],
)
def test_alertname_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, shown: str
) -> None:
    path = write(tmp_path, "alertname: [Anything]", f"alertname: {value}")
    code, out, err = run(capsys, "lint", str(path))
    assert (code, err) == (1, "")
    assert out.splitlines()[0] == (
        f"{path}:5:24: E103 spec.trigger.alertname must be a string or a list, not {shown} "
        "(hint: write a list: [a, b] or one '- item' per line)"
    )


@pytest.mark.parametrize(
    ("field", "old", "new", "where"),
    [
        ("window", "steps: [", "dedupe: {window: " + "9" * 400 + "s}\n  steps: [", "spec.dedupe.window"),
        ("digits", "steps: [", "dedupe: {window: " + "9" * 5000 + "d}\n  steps: [", "spec.dedupe.window"),
        (
            "timeout",
            "params: {message: hello}",
            "params: {message: hello}, timeout: 36501d",
            "spec.steps[0].timeout",
        ),
        (
            "per",
            "steps: [",
            "limits: [{key: x, max: 1, per: 100000000000000000000ms}]\n  steps: [",
            "spec.limits[0].per",
        ),
    ],
)
def test_durations_past_the_maximum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, old: str, new: str, where: str
) -> None:
    path = write(tmp_path, old, new)
    code, out, err = run(capsys, "lint", str(path))
    assert (code, err) == (1, ""), out
    (problem,) = out.splitlines()[:-1]
    assert " E105 duration '" in problem
    assert f"is longer than the maximum of 36500d (about 100 years) at {where}" in problem


def test_action_param_duration_past_the_maximum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path, "action: log, params: {message: hello}", "action: sleep, params: {duration: 99999999d}"
    )
    code, out, _ = run(capsys, "lint", str(path))
    assert code == 1
    assert " E302 sleep params.duration: duration '99999999d' is longer than the maximum" in out


def test_test_file_arrival_past_the_maximum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "good", "good").parent
    case = {"name": "t", "alerts": [{"labels": {"alertname": "Anything"}, "at": "9" * 400 + "s"}]}
    case["expect"] = [{"playbooks": ["good"]}]
    test_file = tmp_path / "a.test.yaml"
    test_file.write_text(json.dumps({"tests": [case]}))
    code, out, err = run(capsys, "test", "--rules", str(rules), str(test_file))
    assert (code, err) == (1, "")
    assert "tests[0].alerts[0].at: duration '999" in out
    assert "is longer than the maximum of 36500d" in out


@pytest.mark.parametrize(
    ("old", "new", "position"),
    [
        ("message: hello", 'message: "hi \\ud800"', "6:54"),
        ("name: say", 'name: "\\udfff"', "6:18"),
        ("name: good", 'name: "good\\ud83d"', "3:18"),
        ("message: hello", '"\\udc80": hello', "6:45"),
    ],
    ids=["param-value", "step-name", "playbook-name", "key"],
)
def test_lone_surrogate_in_a_playbook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, position: str
) -> None:
    path = write(tmp_path, old, new)
    code, out, err = run(capsys, "lint", str(path))
    assert (code, err) == (1, "")
    (problem,) = out.splitlines()[:-1]
    assert problem.startswith(f"{path}:{position}: E010 string holds \\u"), problem
    assert "a lone surrogate, which is not a character" in problem


def test_lone_surrogate_in_a_test_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "good", "good").parent
    test_file = tmp_path / "a.test.yaml"
    test_file.write_text(
        'tests: [{name: "t\\ud800", alerts: [{alertname: Anything}], expect: [{playbooks: [good]}]}]\n'
    )
    code, out, err = run(capsys, "test", "--rules", str(rules), str(test_file))
    assert (code, err) == (1, "")
    assert f"    {test_file}:1:16: E010 string holds \\ud800, a lone surrogate" in out


NOT_UTF8 = os.fsdecode(b"bad-\xff.yaml")


def test_file_name_that_is_not_utf8_is_escaped_in_lint_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # capsys's stdout encodes UTF-8 strictly, like a terminal with PYTHONIOENCODING=utf-8
    (tmp_path / NOT_UTF8).write_text(GOOD.replace("action: log", "action: lgo"))
    code, out, _ = run(capsys, "lint", str(tmp_path))
    assert code == 1
    assert out.startswith(f"{tmp_path}/bad-\\udcff.yaml:6:31: E301 unknown action 'lgo'")
    code, out, _ = run(capsys, "lint", "--format", "json", str(tmp_path))
    assert json.loads(out)[0]["path"] == str(tmp_path / NOT_UTF8)


def test_file_names_that_are_not_utf8_in_test_and_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(tmp_path, "good", "good").parent
    test_file = tmp_path / os.fsdecode(b"t-\xfe.test.yaml")
    test_file.write_text(
        "tests: [{name: t, alerts: [{alertname: Anything}], expect: [{playbooks: [good]}]}]\n"
    )
    code, out, _ = run(capsys, "test", "--rules", str(rules), str(test_file))
    assert code == 0
    assert out.startswith(f"Unit Testing:  {tmp_path}/t-\\udcfe.test.yaml\n  SUCCESS (1 case)")
    alert_file = tmp_path / os.fsdecode(b"a-\xfe.json")
    alert_file.write_text('{"labels": {"alertname": "Anything"}}')
    code, out, _ = run(capsys, "simulate", "--rules", str(rules), str(alert_file))
    assert code == 0
    assert f"[{tmp_path}/a-\\udcfe.json #1]" in out.splitlines()[0]
    code, out, _ = run(capsys, "simulate", "--format", "json", "--rules", str(rules), str(alert_file))
    assert json.loads(out)[0]["source"]["file"] == str(alert_file)


@pytest.mark.parametrize(
    ("old", "new", "position"),
    [
        ("message: hello", "message: hello, count: .inf", "6:68"),
        ("message: hello", "message: [1, -.Inf]", "6:58"),
        ("message: hello", "message: .nan", "6:54"),
        ("version: 1}", "version: 1, labels: {}}\n# x", None),
        ("steps: [", "vars: {big: 1e400}\n  steps: [", "6:15"),
    ],
    ids=["inf", "negative-inf-in-list", "nan", "control", "overflowing-number"],
)
def test_numbers_json_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, position: str | None
) -> None:
    path = write(tmp_path, old, new)
    code, out, _ = run(capsys, "lint", str(path))
    if position is None:
        assert code == 0, out
        return
    assert code == 1
    (problem,) = out.splitlines()[:-1]
    assert problem.startswith(f"{path}:{position}: E104 number out of range: this value reads as ")
    assert problem.endswith(
        "which JSON cannot hold (hint: write a finite number, or quote the value to make it a string)"
    )


@pytest.mark.parametrize(
    ("new", "where", "message"),
    [
        ("dedupe: {window: 0s}\n  steps: [", "6:20", "dedupe window must be longer than 0s"),
        (
            "limits: [{key: x, max: 1, per: 0ms}]\n  steps: [",
            "6:34",
            "a limit's period must be longer than 0s",
        ),
        (  # the expression names the limit in the journal, which would refuse every alert's batch
            f"limits: [{{key: \"labels.namespace || '{'x' * 4100}'\", max: 1, per: 1h}}]\n  steps: [",
            "6:19",
            "a limit's key expression is 4122 characters, over the journal's 4096",
        ),
        (
            "limits: [{key: \"join('', [labels.pod, '\\0'])\", max: 1, per: 1h}]\n  steps: [",
            "6:19",
            "a limit's key expression holds a NUL character",
        ),
    ],
)
def test_a_zero_dedupe_window_or_limit_period_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], new: str, where: str, message: str
) -> None:
    # the journal refuses them: in force, such a playbook failed matching for every alert behind it
    path = write(tmp_path, "steps: [", new)
    code, out, err = run(capsys, "lint", str(path))
    assert (code, err) == (1, ""), out
    (problem,) = out.splitlines()[:-1]
    assert f"bad.yaml:{where}: E104 {message}" in problem


@pytest.mark.parametrize(
    ("new", "where"),
    [
        ('dedupe: {window: "30m\\n"}\n  steps: [', "spec.dedupe.window"),
        ('limits: [{key: x, max: 1, per: "1h\\n"}]\n  steps: [', "spec.limits[0].per"),
        ('steps: [{name: nap, action: sleep, params: {duration: "1s\\n"}},', "params.duration"),
    ],
)
def test_a_duration_ending_in_a_newline_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], new: str, where: str
) -> None:
    path = write(tmp_path, "steps: [", new)
    code, out, err = run(capsys, "lint", str(path))
    assert (code, err) == (1, ""), out
    assert " E105 " in out or " E302 " in out, out
    assert where in out, out
