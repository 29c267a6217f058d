"""Every lint output format carries the same problems: text, json, github and sarif."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kurative.cli import main
from tests.support.sarif_schema import sarif_schema

CORPUS = Path(__file__).parent / "corpus"
FILES = ["action-unknown-typo.yaml", "warn-label-ordering.yaml", "schema-version-string.yaml"]


def run(capsys: pytest.CaptureFixture[str], fmt: str) -> tuple[int, str]:
    code = main(["lint", "--format", fmt, *FILES])
    return code, capsys.readouterr().out


@pytest.fixture(autouse=True)
def _in_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "json")
    rows = json.loads(out)
    assert code == 1
    assert [(r["path"], r["line"], r["code"], r["severity"]) for r in rows] == [
        ("action-unknown-typo.yaml", 19, "E301", "error"),
        ("schema-version-string.yaml", 5, "E106", "error"),
        ("warn-label-ordering.yaml", 4, "E306", "error"),  # all three files use the same name
        ("warn-label-ordering.yaml", 11, "W501", "warning"),
    ]
    assert set(rows[0]) == {"path", "line", "column", "code", "severity", "message", "hint"}
    assert rows[0]["hint"] == "did you mean 'kubernetes.rollout_restart'?"


def test_github(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "github")
    lines = out.splitlines()
    assert code == 1
    assert lines[0].startswith(
        "::error file=action-unknown-typo.yaml,line=19,col=15,title=E301 unknown-action::unknown action"
    )
    assert lines[3].startswith("::warning file=warn-label-ordering.yaml,line=11,")
    assert len(lines) == 4


def test_github_escapes_newlines_and_percent() -> None:
    from kurative.diagnostics import Diagnostic
    from kurative.linting.formats import format_github

    text = format_github([Diagnostic.make("a,b:c.yaml", 1, 2, "E002", "50% bad\nsecond line")], 1)
    assert (
        text == "::error file=a%2Cb%3Ac.yaml,line=1,col=2,title=E002 yaml-syntax::50%25 bad%0Asecond line\n"
    )


def test_sarif_is_valid_sarif_2_1_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "sarif")
    log = json.loads(out)
    schema = sarif_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(log), key=str)
    assert errors == []
    results = log["runs"][0]["results"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert code == 1
    assert [r["ruleId"] for r in results] == ["E301", "E106", "E306", "W501"]
    assert [r["level"] for r in results] == ["error", "error", "error", "warning"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    region = results[0]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 19, "startColumn": 15}


def test_sarif_schema_catches_a_broken_log() -> None:
    schema = sarif_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    broken = {"version": "2.1.0", "runs": [{"tool": {"driver": {}}, "results": []}]}
    assert list(validator_class(schema).iter_errors(broken))


def test_text_summary(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "text")
    assert out.splitlines()[-1] == "3 errors, 1 warning, 0 notes in 3 files"


def test_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lint", "--format", "xml", "x.yaml"])
    assert exit_info.value.code == 2
