"""Paths that are not files: never read whole, never a hang, a usage error on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from kurative.cli import main
from kurative.matching.playbook_tests import load_test_file
from kurative.playbooks.loading import load_playbooks
from kurative.playbooks.yamlload import load_yaml_file

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", "/dev/zero"],
        ["simulate", "--rules", "/dev/zero", str(ROOT / "examples" / "alerts" / "crashlooping.json")],
        ["test", "--rules", str(ROOT / "examples" / "playbooks"), "/dev/zero"],
    ],
    ids=["lint", "simulate-rules", "test-file"],
)
def test_a_device_on_the_command_line_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "not a regular file or directory: /dev/zero" in capsys.readouterr().err


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    (problem,) = load_yaml_file(fifo).diagnostics
    assert (problem.code, problem.message) == ("E001", "not a regular file")
    assert load_test_file(fifo).problems  # the test-file loader goes the same way


def test_a_huge_playbook_file_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as out:
        out.truncate(600 * 1024 * 1024)
    tracemalloc.start()
    try:
        loaded = load_playbooks([tmp_path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [d.code for d in loaded.diagnostics] == ["E005"]
    assert "600.0 MiB" in loaded.diagnostics[0].message
    assert peak < 8 * 1024 * 1024


def test_entries_of_a_rules_folder_that_are_no_regular_files_are_refused_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(
        "apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: good, version: 1}\n"
        "spec: {trigger: {alertname: [A]}, steps: [{name: s, action: log, params: {message: m}}]}\n"
    )
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")  # a deleted file: no diagnostic
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / "notes.txt").symlink_to("/dev/zero")  # not named like a playbook: not looked at
    loaded = load_playbooks([tmp_path])
    assert [p.name for p in loaded.playbooks] == ["good"]
    found = {Path(d.path).name: (d.code, d.message) for d in loaded.diagnostics}
    assert found == {
        "fifo.yaml": ("E001", "not a regular file"),
        "zero.yaml": ("E001", "not a regular file"),
        "loop.yaml": ("E001", "cannot read file: Too many levels of symbolic links"),
    }


TAKES_A_TERMINAL = """
import os, sys
from kurative.playbooks.loading import load_playbooks
try:
    os.close(os.open("/dev/tty", os.O_RDONLY))
    print("had a terminal already")
    sys.exit(2)
except OSError:
    pass
diagnostics = [(d.code, d.message) for d in load_playbooks([sys.argv[1]]).diagnostics]
try:
    os.close(os.open("/dev/tty", os.O_RDONLY))
    print("took the terminal", diagnostics)
    sys.exit(1)
except OSError:
    print(diagnostics)
"""


def test_a_link_to_a_terminal_never_becomes_the_controlling_terminal(tmp_path: Path) -> None:
    """A daemon without a controlling terminal (a session leader: systemd, a container's PID 1) that
    opened a terminal named like a playbook would take it: ^C typed there would stop the daemon."""
    master, slave = os.openpty()
    try:
        (tmp_path / "tty.yaml").symlink_to(os.ttyname(slave))
        done = subprocess.run(
            [sys.executable, "-c", TAKES_A_TERMINAL, str(tmp_path)],
            start_new_session=True,  # setsid: no controlling terminal, like the daemon
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not a regular file" in done.stdout
