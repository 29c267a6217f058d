"""The shipped examples and rules: lint-clean, and loading them round-trips through YAML unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from kurative.cli import main
from kurative.linting.lint import lint_paths
from kurative.playbooks.loading import load_bytes, load_playbooks
from kurative.playbooks.validation import load_schema

ROOT = Path(__file__).parents[3]
SETS = [ROOT / "examples" / "playbooks", ROOT / "rules"]


@pytest.mark.parametrize("where", SETS, ids=lambda p: p.name)
def test_lint_clean(where: Path) -> None:
    result = lint_paths([where])
    assert result.diagnostics == []
    assert len(result.playbooks) >= 3


@pytest.mark.parametrize("where", SETS, ids=lambda p: p.name)
def test_round_trip(where: Path) -> None:
    for playbook in load_playbooks([where]).playbooks:
        out = io.StringIO()
        YAML(typ="safe", pure=True).dump(json.loads(json.dumps(playbook.body)), out)
        again = load_bytes("again.yaml", out.getvalue().encode())
        assert again.diagnostics == []
        (copy,) = again.playbooks
        assert copy == playbook
        assert copy.content_hash == playbook.content_hash


def test_model_of_the_crashlooping_example() -> None:
    (playbook,) = load_playbooks([ROOT / "examples" / "playbooks" / "crashlooping.yaml"]).playbooks
    assert playbook.name == "restart-crashlooping-workload"
    assert playbook.version == 1
    assert playbook.trigger.alertnames == ("KubePodCrashLooping",)
    assert playbook.trigger.status == "firing"
    assert playbook.dedupe.window == 1800
    assert playbook.limits[0].per == 3600
    assert [s.name for s in playbook.steps] == ["diagnostics", "owner", "restart", "verify", "tell-the-team"]
    restart = playbook.step("restart")
    assert restart is not None
    assert (restart.timeout, restart.retry.attempts, restart.retry.backoff) == (30, 3, 2)
    notify = playbook.step("tell-the-team")
    assert notify is not None
    assert notify.always
    assert notify.params["url"] == {"secretRef": "slack-webhook"}
    assert playbook.source.position(("spec", "steps", 2, "action")) == (30, 15)


def test_comments_and_formatting_do_not_change_the_content_hash() -> None:
    source = (ROOT / "rules" / "kube-job-failed.yaml").read_bytes()
    (original,) = load_bytes("a.yaml", source).playbooks
    reformatted_source = b"# a comment\n" + source.replace(b"spec:\n", b"spec:   # the spec\n\n")
    (reformatted,) = load_bytes("b.yaml", reformatted_source.replace(b"max: 5", b'"max": 5')).playbooks
    assert original.content_hash == reformatted.content_hash
    (changed,) = load_bytes("c.yaml", source.replace(b"max: 5", b"max: 6")).playbooks
    assert changed.content_hash != original.content_hash


def test_config_example_matches_the_config_schema() -> None:
    config = YAML(typ="safe", pure=True).load((ROOT / "examples" / "config.yaml").read_text())
    jsonschema.Draft202012Validator(load_schema("config")).validate(config)


def test_lint_of_the_whole_examples_folder_knows_its_daemon_config() -> None:
    result = lint_paths([ROOT / "examples"])
    assert result.diagnostics == []
    assert str(ROOT / "examples" / "config.yaml") in result.files
    assert {Path(p.source.path).parent.name for p in result.loaded} == {"playbooks"}


def test_a_broken_daemon_config_gets_config_diagnostics_not_playbook_ones(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "config.yaml").read_text()
    broken = text.replace("  watch: true", "  wtach: true").replace("failMax: 5", "failMax: five")
    (tmp_path / "config.yaml").write_text(broken)
    result = lint_paths([tmp_path])
    lines = [str(d) for d in result.diagnostics]
    path = tmp_path / "config.yaml"
    assert lines == [
        f"{path}:15:3: E102 unknown field 'wtach' in playbooks (hint: did you mean 'watch'?)",
        f"{path}:23:21: E103 breakers.failMax must be an integer, not a string "
        "(hint: see kurative schema config)",
    ]
    assert result.loaded == ()


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples" / "alerts").glob("*.json")))
def test_sample_alerts_match_the_alerts_schema(name: str) -> None:
    payload = json.loads((ROOT / "examples" / "alerts" / name).read_text())
    jsonschema.Draft202012Validator(load_schema("alerts")).validate(payload)


def test_alerts_schema_rejects_non_string_label_values() -> None:
    bad = [{"labels": {"alertname": "X", "replicas": 3}}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load_schema("alerts")).validate(bad)


@pytest.mark.parametrize("which", ["playbook", "config", "alerts"])
def test_schema_command_prints_a_valid_schema(which: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", which]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == load_schema(which)


def test_schemas_folder_is_the_packaged_one() -> None:
    for path in (ROOT / "schemas").glob("*.json"):
        assert path.read_text() == (ROOT / "engine" / "kurative" / "schemas" / path.name).read_text()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("kurative 0.")
