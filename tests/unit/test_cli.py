"""The CLI's exit codes and messages, in a real process: 0 clean, 1 findings, 2 usage, 70 a bug.

CI tells a crash from a finding by the exit code alone, so each code is pinned here the way a CI job
sees it: a subprocess, its status and its stderr (one line, never a traceback, unless asked for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "rules"
BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 10) if prev else ', '.join(['x'] * 10)}]\n"
        for prev, name in zip(
            [None, "a", "b", "c", "d", "e", "f"], ["a", "b", "c", "d", "e", "f", "g"], strict=True
        )
    )
    + "labels: {alertname: X}\n"
)


def kurative(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "KURATIVE_DEBUG"} | (env or {})
    # bytes in, so that file names and input can hold anything; text out, decoded leniently
    done = subprocess.run(
        [sys.executable, "-m", "kurative.cli", *args],
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
    )


def one_clear_line(stderr: str, *expected: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for text in expected:
        assert text in lines[0], lines[0]


HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "bomb.yaml": (BOMB.encode(), "E006 aliases expand to more than 100,000 nodes"),
    "huge-int.json": (b'[{"labels": {"a": 1' + b"0" * 5000 + b"}}]", "a number has more than 4300 digits"),
    "huge-int.yaml": (b"labels: {a: 1" + b"0" * 5000 + b"}\n", "huge-int.yaml:1:1"),
    "edge-time.json": (
        b'[{"labels": {"a": "b"}, "startsAt": "9999-12-31T23:59:59-01:00"}]',
        "[0].startsAt: timestamp '9999-12-31T23:59:59-01:00' is out of range",
    ),
    # truncated: 900 KB that looks like JSON, is not, and must not go on to the YAML parser
    "truncated.json": (b"[" + b'{"labels": {"a": "b"}}, ' * 40_000, "not valid JSON: Expecting value"),
    "truncated.txt": (b"[" + b'{"labels": {"a": "b"}}, ' * 40_000, "not valid JSON: Expecting value"),
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep-value.json": (
        b'[{"labels": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}]",
        "deep-value.json: [0].labels.a" + "[0]" * 14 + ": nested deeper than 16 levels",
    ),
    "big.yaml": (b"labels: {a: b}\n" + b"# padding\n" * 120_000, "a YAML alerts file may hold"),
    "latin1.json": ('[{"labels": {"a": "é"}}]'.encode("latin-1"), "not UTF-8 text"),
    "empty.json": (b"", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_simulate_with_a_hostile_alert_file_exits_2_with_one_clear_line(tmp_path: Path, name: str) -> None:
    content, message = HOSTILE_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    done = kurative("simulate", "--rules", str(RULES), str(path))
    assert done.returncode == 2, done.stderr
    one_clear_line(done.stderr, f"kurative simulate: {path}", message)
    assert done.stdout == ""


def test_an_oversized_alert_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as file:  # sparse: 2 GiB on paper, nothing on disk
        file.truncate(2 * 1024**3)
    done = kurative("simulate", "--rules", str(RULES), str(path))
    assert done.returncode == 2
    one_clear_line(done.stderr, "big.json: 2048.0 MiB, more than the 16 MiB an alerts file may hold")


def test_an_oversized_stdin_is_refused_after_a_bounded_read() -> None:
    done = kurative("simulate", "--rules", str(RULES), "-", stdin=b" " * (16 * 1024 * 1024 + 10))
    assert done.returncode == 2
    one_clear_line(done.stderr, "-: more than the 16 MiB an alerts file may hold")


def test_surrogates_in_an_alert_file_are_written_out_as_alertmanager_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "surrogate.json"
    path.write_text('[{"labels": {"alertname": "\\ud800", "pod": ""}, "annotations": {"s": "\\udfff"}}]')
    done = kurative("simulate", "--rules", str(RULES), "--format", "json", str(path))
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)
    assert report["alert"]["labels"] == {"alertname": "\ufffd"}
    assert report["alert"]["annotations"] == {"s": "\ufffd"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["simulate", "--rules", "/nonexistent/rules", "-"],
            "--rules: no such file or directory: /nonexistent/rules",
        ),
        (["test", "--rules", "/nonexistent/rules", str(RULES)], "--rules: no such file or directory"),
        (
            ["test", "--rules", str(RULES), "/nonexistent.test.yaml"],
            "no such file or directory: /nonexistent.test",
        ),
        (["rbac", "--rules", "/nonexistent/rules"], "--rules: no such file or directory"),
        (
            ["migrate", "--journal", "postgresql://u@db:99999/j"],
            "port '99999' is not a number from 1 to 65535",
        ),
        (["migrate", "--journal", "postgresql://u@[::1/j"], "Invalid IPv6 URL"),
        (["migrate", "--journal", "postgresql://u@my db/j"], "unexpected spaces"),
        (["migrate", "--journal", "sqlite:////tmp/a%00.db"], "NUL byte"),
        (["journal", "prune", "--journal", "postgresql://u@db:x/j", "--older-than", "1d"], "port 'x'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = kurative(*args)
    assert done.returncode == 2, done.stderr
    one_clear_line(done.stderr, message)


@pytest.mark.parametrize("wait", ["nan", "1e400", "inf", "-1", "86401", "soon"])
def test_a_wait_that_would_never_end_is_refused_at_once(wait: str) -> None:
    done = kurative("migrate", "--journal", "postgresql://u@127.0.0.1:1/j", "--wait", wait)
    assert done.returncode == 2
    assert "argument --wait" in done.stderr


CRASH = """
import sys
import kurative.commands.schema as schema

def crash(args):
    raise ZeroDivisionError("division by zero")

schema.run = crash
from kurative.cli import main
sys.exit(main(sys.argv[1:]))
"""


def crashing_kurative(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "KURATIVE_DEBUG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-c", CRASH, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_a_bug_exits_70_with_one_line_that_says_so_and_how_to_see_more() -> None:
    done = crashing_kurative("schema", "playbook")
    assert done.returncode == 70
    one_clear_line(
        done.stderr,
        "kurative schema: internal error (a bug in kurative",
        "ZeroDivisionError: division by zero",
        "--debug or KURATIVE_DEBUG=1",
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--debug", "schema", "playbook"], {}),
        (["schema", "--debug", "playbook"], {}),
        (["schema", "playbook"], {"KURATIVE_DEBUG": "1"}),
    ],
)
def test_debug_prints_the_traceback_and_still_exits_70(args: list[str], env: dict[str, str]) -> None:
    done = crashing_kurative(*args, env=env)
    assert done.returncode == 70
    assert "Traceback (most recent call last)" in done.stderr
    assert ", in crash\n" in done.stderr  # the frame that raised
    assert "ZeroDivisionError: division by zero\n" in done.stderr


def test_findings_exit_1_and_clean_runs_exit_0(tmp_path: Path) -> None:
    assert kurative("lint", str(RULES)).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: x, version: 1}\nspec: {}\n")
    done = kurative("lint", str(broken))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
