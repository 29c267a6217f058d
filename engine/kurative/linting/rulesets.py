"""The playbooks as the daemon uses them: loaded, fully checked and compiled into one Ruleset.

``kurative simulate``, ``kurative test`` and ``kurative serve`` share this loader, so an alert is never
simulated or tested against a ruleset the daemon would refuse, and the daemon never runs a playbook
that lint reports an error for. Nothing is printed: the caller decides what to do with the diagnostics
(the CLI prints them and stops, the daemon logs them and serves the playbooks that passed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kurative.diagnostics import Diagnostic, has_errors
from kurative.linting.lint import lint_paths
from kurative.matching.ruleset import Ruleset
from kurative.playbooks.models import Playbook


@dataclass(frozen=True, slots=True)
class LoadedRuleset:
    """``ruleset`` holds every playbook that passed every check (of a name used twice, the first
    one); ``diagnostics`` everything lint found, sorted. ``ok`` is false when anything was an error."""

    ruleset: Ruleset
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def version(self) -> str:
        """Names the set of playbook versions in the ruleset: what the inbox records an alert was
        matched against."""
        return ruleset_version(self.ruleset)


@dataclass(frozen=True, slots=True)
class PlaybookState:
    """One playbook as the daemon has it (in force or refused), as the API and ``kurative playbooks`` show
    it."""

    name: str
    version: int
    content_hash: str
    source: str
    """``path:line:column`` of the playbook's document."""
    status: str
    reason: str = ""


def ruleset_version(ruleset: Ruleset) -> str:
    parts = sorted(f"{c.name}@{c.playbook.version}#{c.playbook.content_hash}" for c in ruleset.playbooks)
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _first_of_each_name(playbooks: Sequence[Playbook]) -> list[Playbook]:
    seen: set[str] = set()
    kept: list[Playbook] = []
    for playbook in playbooks:
        if playbook.name not in seen:
            seen.add(playbook.name)
            kept.append(playbook)
    return kept


def load_ruleset(paths: Sequence[str | Path]) -> LoadedRuleset:
    """Load, lint and compile the playbooks under ``paths``; never raises for bad content."""
    result = lint_paths(paths)
    ruleset = Ruleset.compile(_first_of_each_name(result.playbooks))
    return LoadedRuleset(ruleset, tuple(result.diagnostics), result.files)
