"""Malformed files of every kind give a positioned error, and lint goes on to the next file."""

from __future__ import annotations

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


def lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["lint", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        pytest.param(b"\x7fELF\x02\x01\x01\x00\x00\x00garbage", "E001", 1, id="binary-garbage"),
        pytest.param(b"apiVersion: kurative/v1\nkind: \xff\xfePlaybook\n", "E001", 2, id="not-utf8"),
        pytest.param(b"a: 1\nb: 2\nc: \x00\n", "E001", 3, id="nul-byte"),
        pytest.param(b"- just\n- a\n- list\n", "E103", 1, id="list-not-mapping"),
        pytest.param(b"42\n", "E103", 1, id="scalar-document"),
        pytest.param(b"\xef\xbb\xbf" + GOOD.encode(), None, 0, id="utf8-bom-is-fine"),
    ],
)
def test_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, code: str | None, line: int
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    status, out, err = lint(capsys, str(path))
    assert err == ""
    if code is None:
        assert status == 0, out
        return
    assert status == 1
    assert out.startswith(f"{path}:{line}:"), out
    assert f": {code} " in out


def test_fifty_megabyte_file_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.write(b"apiVersion: kurative/v1\nitems:\n")
        chunk = b"  - " + b"x" * 1020 + b"\n"
        for _ in range(50 * 1024):
            handle.write(chunk)
    status, out, _ = lint(capsys, str(path))
    assert status == 1
    assert f"{path}:1:1: E005 file is 50.0 MiB" in out


def test_lint_goes_on_after_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-bad.yaml").write_bytes(b"key: [unclosed\n")
    (tmp_path / "b-good.yaml").write_text(GOOD)
    (tmp_path / "c-bad.yaml").write_text(GOOD.replace("name: good", "name: other").replace("log", "lgo"))
    status, out, _ = lint(capsys, str(tmp_path))
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a-bad.yaml'}:")
    assert " E002 " in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'c-bad.yaml'}:6:")
    assert " E301 unknown action 'lgo' (hint: did you mean 'log'?)" in lines[1]
    assert lines[-1] == "2 errors, 0 warnings, 0 notes in 3 files"


def test_hidden_configmap_folders_and_test_files_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "..2026_11_26_06_00_00.1"
    data.mkdir()
    (data / "good.yaml").write_text(GOOD)
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "good.yaml").symlink_to(data.name + "/good.yaml")
    (tmp_path / "good.test.yaml").write_text("not: [a playbook\n")
    status, out, _ = lint(capsys, str(tmp_path))
    assert status == 0, out
    assert out.splitlines()[-1] == "0 errors, 0 warnings, 0 notes in 1 file"


def test_missing_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = lint(capsys, str(tmp_path / "nope"))
    assert status == 2
    assert "no such file or directory" in err


def test_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.yaml").write_text(GOOD.replace("{alertname: [Anything]}", '{when: "labels.x > `1`"}'))
    status, out, _ = lint(capsys, str(tmp_path))
    assert status == 0
    assert " W501 " in out


def test_empty_directory_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = lint(capsys, str(tmp_path))
    assert status == 0
    assert " W502 no playbook files found" in out


def test_schema_errors_do_not_hide_other_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "many.yaml").write_text(
        "apiVersion: kurative/v1\n"
        "kind: Playbook\n"
        'metadata: {name: many, version: "2"}\n'
        'spec:\n  trigger: {when: "labels.a =="}\n'
        "  priority: high\n"
        "  steps:\n"
        "    - {name: a, action: lgo, params: {message: hi}}\n"
        "    - {name: b, action: log, params: {message: '${steps.zz.output}'}}\n"
    )
    status, out, _ = lint(capsys, str(tmp_path / "many.yaml"))
    assert status == 1
    codes = [line.split(": ")[1].split()[0] for line in out.splitlines()[:-1]]
    assert codes == ["E106", "E201", "E103", "E301", "E303"]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        pytest.param("|", "8:19", id="literal"),
        pytest.param(">-", "8:19", id="folded"),
        pytest.param("'", "6:43", id="quoted"),
    ],
)
def test_errors_inside_multi_line_expressions_are_positioned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], style: str, expected: str
) -> None:
    when = "labels.a == `1` &&\n      labels.b == ]"
    value = "'labels.a == `1` && labels.b == ]'" if style == "'" else f"{style}\n      {when}"
    text = (
        "apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: x, version: 1}\n"
        f"spec:\n  trigger:\n    when: {value}\n"
        "  steps: [{name: a, action: log, params: {message: hi}}]\n"
    )
    (tmp_path / "m.yaml").write_text(text)
    _, out, _ = lint(capsys, str(tmp_path / "m.yaml"))
    assert out.startswith(
        f"{tmp_path / 'm.yaml'}:{expected}: E201 trigger condition: unexpected token ']'"
    ), out
