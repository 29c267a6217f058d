"""Lint a set of paths: load, validate, check, and (optionally) compare with a git revision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kurative.diagnostics import Diagnostic, has_errors
from kurative.linting.checks import check_playbook, check_ruleset
from kurative.playbooks.loading import LoadResult, load_bytes, load_playbooks
from kurative.playbooks.models import Playbook


@dataclass(slots=True)
class LintResult:
    """The playbooks that passed every check, and all diagnostics sorted by file and position.

    ``loaded`` holds every playbook that passed the schema, checked or not: what ``--against`` compares.
    """

    playbooks: tuple[Playbook, ...] = ()
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: tuple[str, ...] = ()
    loaded: tuple[Playbook, ...] = ()


def check_loaded(playbooks: Sequence[Playbook]) -> tuple[tuple[Playbook, ...], list[Diagnostic]]:
    """Run the semantic checks; return the playbooks without errors and every diagnostic."""
    diagnostics: list[Diagnostic] = []
    good: list[Playbook] = []
    for playbook in playbooks:
        problems = check_playbook(playbook)
        diagnostics.extend(problems)
        if not has_errors(problems):
            good.append(playbook)
    diagnostics.extend(check_ruleset(playbooks))
    return tuple(good), diagnostics


def _check_rejected(rejected: Sequence[Playbook], schema_problems: list[Diagnostic]) -> list[Diagnostic]:
    """Check what can be checked in documents that failed the schema, so that one run shows every
    problem. Findings on a line the schema already flagged are left out: they would only repeat it."""
    flagged = {(d.path, d.line) for d in schema_problems}
    found: list[Diagnostic] = []
    for playbook in rejected:
        found.extend(
            d for d in check_playbook(playbook) if (d.path, d.line) not in flagged and not _placeholder(d)
        )
    return found


def _placeholder(diagnostic: Diagnostic) -> bool:
    """Findings about the stand-ins used for invalid fields (an empty action name, an unnamed step)."""
    return diagnostic.code == "E301" and "unknown action ''" in diagnostic.message


def lint_bytes(path: str, raw: bytes) -> LintResult:
    """Everything lint finds in one file's content ``raw`` (read once by the caller, who may keep a
    digest of exactly what was checked); never raises for bad content."""
    return _checked(load_bytes(path, raw))


def lint_paths(paths: Sequence[str | Path]) -> LintResult:
    """Everything lint finds under ``paths``; never raises for bad content."""
    loaded = load_playbooks(paths)
    result = _checked(loaded)
    if not loaded.files and not loaded.diagnostics:
        result.diagnostics.append(
            Diagnostic.make(
                ", ".join(str(p) for p in paths),
                0,
                0,
                "W502",
                "no playbook files found",
                "playbooks are *.yaml or *.yml files",
            )
        )
        result.diagnostics.sort()
    return result


def _checked(loaded: LoadResult) -> LintResult:
    good, problems = check_loaded(loaded.playbooks)
    diagnostics = loaded.diagnostics + problems + _check_rejected(loaded.rejected, loaded.diagnostics)
    return LintResult(good, sorted(diagnostics), loaded.files, loaded.playbooks)
