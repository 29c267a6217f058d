"""What the README and CONTRIBUTING promise holds for this checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_tier_named_exists(doc: Path) -> None:
    named = set(re.findall(r"\btests/(\w+)", doc.read_text(encoding="utf-8")))
    assert named, "the document names no test folder"
    missing = sorted(tier for tier in named if not (ROOT / "tests" / tier).exists())
    assert missing == []


def test_installation_is_from_the_repository_while_kurative_is_not_published() -> None:
    texts = [ROOT / "README.md", *(ROOT / "examples").rglob("*.yaml")]
    bare = [str(p) for p in texts if re.search(r"pip install kurative\s*$", p.read_text(), re.MULTILINE)]
    assert bare == []


def test_a_pinned_pre_commit_rev_names_a_tag_that_exists() -> None:
    revs = re.findall(r"^\s*rev:\s*(\S+)", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    tags = subprocess.run(["git", "tag"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    assert [rev for rev in revs if not rev.startswith("<") and rev not in tags.split()] == []


OPERATIONS = ROOT / "docs" / "operations.md"


def _operations_commands(program: str) -> list[str]:
    """Each ``program …`` command of docs/operations.md: lines of its shell blocks, and inline code."""
    text = OPERATIONS.read_text(encoding="utf-8")
    found: list[str] = []
    for block in re.findall(r"```(?:sh|console)\n(.*?)```", text, re.DOTALL):
        found += [line.removeprefix("$ ").strip() for line in block.splitlines()]
    found += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return [command for command in found if command.startswith(f"{program} ")]


def test_every_kurative_command_in_the_operations_runbook_parses() -> None:
    import shlex

    from kurative.cli import build_parser

    commands = _operations_commands("kurative")
    assert len(commands) >= 8
    for command in commands:
        args = shlex.split(command)[1:]
        try:
            build_parser((args[0],)).parse_args(args)
        except SystemExit:
            pytest.fail(f"docs/operations.md: `{command}` is not a valid kurative command line")


def test_the_runbook_names_only_metrics_the_daemon_exports() -> None:
    exported = set(re.findall(r'"(kurative_[a-z_]+)"', (ROOT / "engine/kurative/metrics.py").read_text()))
    named = set(re.findall(r"\b(kurative_[a-z_]+)", OPERATIONS.read_text(encoding="utf-8")))
    assert named, "the runbook names no metric"
    assert sorted(n for n in named if n.removesuffix("_total") not in exported) == []


def test_the_runbook_names_only_tests_that_exist() -> None:
    named = set(re.findall(r"\b(tests/[\w/]+\.py)", OPERATIONS.read_text(encoding="utf-8")))
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


@pytest.mark.parametrize("program", ["pg_dump", "pg_restore", "pg_basebackup", "createdb"])
def test_the_runbook_uses_only_options_postgresql_has(program: str) -> None:
    from tests.support.postgres import require_binaries

    commands = _operations_commands(program)
    assert commands, f"the runbook has no {program} command"
    binary = require_binaries() / program
    usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=True).stdout
    for command in commands:
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command):
            assert re.search(rf"{option}\b", usage), f"`{command}`: {program} has no {option}"
