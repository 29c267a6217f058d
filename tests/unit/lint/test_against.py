"""``lint --against REV`` in a temporary git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kurative.cli import main

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata:
  name: {name}
  version: {version}
spec:
  trigger: {{alertname: [Foo]}}
  steps: [{{name: say, action: log, params: {{message: {message}}}}}]
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="one"))
    (rules / "b.yaml").write_text(PLAYBOOK.format(name="b", version=4, message="one"))
    (rules / "c.yaml").write_text(PLAYBOOK.format(name="c", version=2, message="one"))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["lint", *args])
    return code, capsys.readouterr().out.splitlines()


def test_changed_content_needs_a_higher_version(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    rules = repo / "rules"
    # a: content changed, version kept -> error; b: only a comment added -> fine;
    # c: content changed and version raised -> fine; d: new -> fine.
    (rules / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="two"))
    (rules / "b.yaml").write_text("# owned by team-x\n" + PLAYBOOK.format(name="b", version=4, message="one"))
    (rules / "c.yaml").write_text(PLAYBOOK.format(name="c", version=3, message="two"))
    (rules / "d.yaml").write_text(PLAYBOOK.format(name="d", version=1, message="one"))
    code, lines = lint(capsys, "rules", "--against", "HEAD")
    assert code == 1
    assert lines[:-1] == [
        "rules/a.yaml:5:12: E401 playbook 'a' changed since HEAD but metadata.version is 1 (was 1) "
        "(hint: raise metadata.version to 2)"
    ]


def test_version_going_down_and_removed_playbook(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    rules = repo / "rules"
    (rules / "b.yaml").write_text(PLAYBOOK.format(name="b", version=3, message="one"))
    (rules / "c.yaml").unlink()
    code, lines = lint(capsys, "rules", "--against", "HEAD")
    assert code == 1
    assert lines[0].startswith("HEAD:rules/c.yaml:4:9: N403 playbook 'c' was removed since HEAD")
    assert lines[1].startswith("rules/b.yaml:5:12: E401 metadata.version of 'b' went down from 4 to 3")


def test_unchanged_repo_is_clean(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo / "rules")
    code, lines = lint(capsys, ".", "--against", "HEAD")
    assert code == 0
    assert lines == ["0 errors, 0 warnings, 0 notes in 3 files"]


def test_unknown_revision_is_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    code = main(["lint", "rules", "--against", "no-such-branch"])
    assert code == 2
    assert "unknown git revision 'no-such-branch'" in capsys.readouterr().err


def test_outside_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="x"))
    code = main(["lint", str(tmp_path), "--against", "HEAD"])
    assert code == 2
    assert "is not inside a git repository" in capsys.readouterr().err


def test_folders_sharing_playbook_names_compare_each_file_with_its_own_history(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    other = repo / "team-b"
    other.mkdir()
    (other / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="team-b's own"))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second team")
    code, lines = lint(capsys, "rules", "team-b", "--against", "HEAD")
    # The shared name is E306 and nothing else: neither file changed since HEAD.
    assert code == 1
    assert [line.split(" ")[1] for line in lines[:-1]] == ["E306"]
    (other / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="changed"))
    code, lines = lint(capsys, "rules", "team-b", "--against", "HEAD")
    assert [line.split(":")[0] + " " + line.split(" ")[1] for line in lines[:-1]] == [
        "team-b/a.yaml E306",
        "team-b/a.yaml E401",
    ]


def test_a_moved_file_keeps_its_history_and_a_path_given_twice_is_read_once(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    (repo / "rules" / "moved").mkdir()
    (repo / "rules" / "a.yaml").rename(repo / "rules" / "moved" / "a.yaml")
    (repo / "rules" / "moved" / "a.yaml").write_text(PLAYBOOK.format(name="a", version=1, message="two"))
    code, lines = lint(capsys, "rules", "rules/b.yaml", "--against", "HEAD")
    assert code == 1
    assert lines[:-1] == [
        "rules/moved/a.yaml:5:12: E401 playbook 'a' changed since HEAD but metadata.version is 1 (was 1) "
        "(hint: raise metadata.version to 2)"
    ]
