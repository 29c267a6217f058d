"""Positioned problems found in playbooks and other user files.

A :class:`Diagnostic` is what ``kurative lint`` prints and what a hot reload logs: where the problem is
(``path:line:column``, both 1-based), a stable code that users can search for and suppress, a message
that says what is wrong, and a hint that says how to fix it. Codes never change meaning once released.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


# code -> (severity, short title). The title names the rule in SARIF and in the docs.
CODES: dict[str, tuple[Severity, str]] = {
    "E001": (Severity.ERROR, "file-unreadable"),
    "E002": (Severity.ERROR, "yaml-syntax"),
    "E003": (Severity.ERROR, "duplicate-key"),
    "E004": (Severity.ERROR, "tab-indentation"),
    "E005": (Severity.ERROR, "file-too-large"),
    "E006": (Severity.ERROR, "alias-expansion"),
    "E007": (Severity.ERROR, "nesting-too-deep"),
    "E008": (Severity.ERROR, "empty-document"),
    "E009": (Severity.ERROR, "unsupported-tag"),
    "E010": (Severity.ERROR, "invalid-character"),
    "E101": (Severity.ERROR, "missing-field"),
    "E102": (Severity.ERROR, "unknown-field"),
    "E103": (Severity.ERROR, "wrong-type"),
    "E104": (Severity.ERROR, "invalid-value"),
    "E105": (Severity.ERROR, "invalid-duration"),
    "E106": (Severity.ERROR, "invalid-version"),
    "E107": (Severity.ERROR, "wrong-api-version-or-kind"),
    "E108": (Severity.ERROR, "invalid-name"),
    "E110": (Severity.ERROR, "unknown-secret"),
    "E201": (Severity.ERROR, "condition-syntax"),
    "E202": (Severity.ERROR, "key-expression-syntax"),
    "E203": (Severity.ERROR, "template-syntax"),
    "E204": (Severity.ERROR, "expression-too-deep"),
    "E301": (Severity.ERROR, "unknown-action"),
    "E302": (Severity.ERROR, "invalid-action-params"),
    "E303": (Severity.ERROR, "unknown-step-reference"),
    "E304": (Severity.ERROR, "forward-step-reference"),
    "E305": (Severity.ERROR, "duplicate-step-name"),
    "E306": (Severity.ERROR, "duplicate-playbook-name"),
    "E401": (Severity.ERROR, "version-not-raised"),
    "E402": (Severity.ERROR, "not-journalled"),
    "N403": (Severity.NOTE, "playbook-removed"),
    "W501": (Severity.WARNING, "impossible-comparison"),
    "W502": (Severity.WARNING, "no-playbooks-found"),
    "W503": (Severity.WARNING, "bare-literal-name"),
}


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One problem, positioned in a file. ``line`` and ``column`` are 1-based; 0 means unknown."""

    path: str
    line: int
    column: int
    code: str
    message: str
    hint: str = ""
    severity: Severity = field(default=Severity.ERROR, compare=False)

    @classmethod
    def make(cls, path: str, line: int, column: int, code: str, message: str, hint: str = "") -> Diagnostic:
        """Build a diagnostic whose severity comes from the code table."""
        severity, _title = CODES[code]
        return cls(path, line, column, code, message, hint, severity)

    @property
    def title(self) -> str:
        return CODES[self.code][1]

    def format(self) -> str:
        """``path:line:column: CODE message (hint: …)``, the text lint prints."""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}{hint}"

    def __str__(self) -> str:
        return self.format()


def has_errors(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
