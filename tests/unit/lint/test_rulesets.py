"""The one loader of "the playbooks as the daemon uses them", shared by simulate, test and serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from kurative.linting.rulesets import load_ruleset

ROOT = Path(__file__).resolve().parents[3]

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {{name: {name}, version: 1}}
spec:
  trigger: {{alertname: [{alertname}]}}
  steps: [{{name: say, action: log, params: {{message: {message}}}}}]
"""


def test_the_shipped_rules_load_clean_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_ruleset([ROOT / "rules"])
    assert loaded.ok
    assert loaded.diagnostics == ()
    assert len(loaded.ruleset.playbooks) >= 6
    assert capsys.readouterr() == ("", "")


def test_a_broken_file_leaves_the_good_playbooks_and_reports_the_rest(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(PLAYBOOK.format(name="good", alertname="A", message="hi"))
    (tmp_path / "bad.yaml").write_text(PLAYBOOK.format(name="bad", alertname="B", message="'${labels.[}'"))
    loaded = load_ruleset([tmp_path])
    assert not loaded.ok
    assert [p.playbook.name for p in loaded.ruleset.playbooks] == ["good"]
    assert [(Path(d.path).name, d.code) for d in loaded.diagnostics] == [("bad.yaml", "E203")]


def test_a_name_used_twice_keeps_the_first_and_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(PLAYBOOK.format(name="same", alertname="A", message="first"))
    (tmp_path / "b.yaml").write_text(PLAYBOOK.format(name="same", alertname="B", message="second"))
    loaded = load_ruleset([tmp_path])
    assert not loaded.ok
    (only,) = loaded.ruleset.playbooks
    assert only.playbook.source.path.endswith("a.yaml")
    assert [d.code for d in loaded.diagnostics] == ["E306"]
