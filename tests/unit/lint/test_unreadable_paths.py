"""Paths that are not files: never read whole, never a hang, a usage error on the command line."""

from __future__ import annotations

import os
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
