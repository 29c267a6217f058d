"""``kurative executions`` and ``kurative playbooks`` against a daemon: what a person sees when the
token is missing or wrong, the server is not there, or an id is unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kurative.cli import main
from tests.integration.api.conftest import TOKENS, Served
from tests.support.postgres import free_port

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_refusals_are_one_line_and_exit_1(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "executions", "list", "--server", served.url)
    assert code == 1
    assert "401 Unauthorized: missing or wrong credentials" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("not-a-token\n")
    code, _, err = run(capsys, "playbooks", "--server", served.url, "--token-file", str(wrong))
    assert code == 1
    assert "401" in err
    good = tmp_path / "good"
    good.write_text(TOKENS["bob"])
    code, _, err = run(
        capsys, "executions", "show", "no/such id", "--server", served.url, "--token-file", str(good)
    )
    assert code == 1
    assert "404 Not Found" in err
    code, _, err = run(capsys, "executions", "list", "--server", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach" in err
    code, _, err = run(
        capsys, "executions", "list", "--server", served.url, "--token-file", str(tmp_path / "none")
    )
    assert code == 2
    assert "--token-file" in err
    code, _, err = run(capsys, "executions", "approve", "x", "--server", served.url, "--as", "mallory")
    assert code == 2
    assert "--as works with --journal only" in err


def test_list_and_playbooks_as_json(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good"
    good.write_text(TOKENS["bob"])
    common = ("--server", served.url, "--token-file", str(good))
    code, out, err = run(capsys, "executions", "list", "--alertname", "WebDown", "-o", "json", *common)
    assert code == 0, err
    listed = json.loads(out)
    assert listed
    assert all(e["playbook_name"] == "restart-web" for e in listed)
    code, out, _ = run(capsys, "executions", "list", "--alertname", "Nothing", *common)
    assert out.strip() == "No executions found."
    code, out, err = run(capsys, "playbooks", "-o", "json", *common)
    assert code == 0, err
    answer = json.loads(out)
    assert [(p["name"], p["status"]) for p in answer["playbooks"]] == [("restart-web", "active")]
    (problem,) = [e for e in answer["errors"] if e["severity"] == "error"]
    assert problem["where"].startswith(str(served.folder / "rules" / "broken.yaml") + ":")
