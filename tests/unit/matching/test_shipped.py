"""simulate and test over the playbooks and sample alerts the repository ships (rules/, examples/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kurative.cli import main

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_ALERTS = sorted((ROOT / "examples" / "alerts").glob("*.json"))
PLAYBOOK_DIRS = [ROOT / "rules", ROOT / "examples" / "playbooks"]
TEST_FILES = sorted(
    p
    for directory in (ROOT / "rules", ROOT / "examples")
    for pattern in ("*.test.yaml", "*_test.yaml", "*.test.yml", "*_test.yml")
    for p in directory.rglob(pattern)
)


@pytest.mark.parametrize("rules", PLAYBOOK_DIRS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_simulate_every_sample_alert(rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert SAMPLE_ALERTS, "examples/alerts holds the sample payloads"
    args = ["simulate", "--rules", str(rules), "--format", "json", "--explain", *map(str, SAMPLE_ALERTS)]
    assert main(args) == 0, capsys.readouterr().err
    reports = json.loads(capsys.readouterr().out)
    assert len(reports) >= len(SAMPLE_ALERTS)
    for report in reports:
        assert {"alert", "matches", "explain"} <= set(report)
        for match in report["matches"]:
            assert "error" not in match, match["error"]


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_playbook_tests_pass(test_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = ROOT / "rules" if (ROOT / "rules") in test_file.parents else ROOT / "examples" / "playbooks"
    assert main(["test", "--rules", str(rules), str(test_file)]) == 0, capsys.readouterr().out
