"""Lint report formats: text for people, json for scripts, github for Actions, sarif for code scanning."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import kurative
from kurative.diagnostics import CODES, Diagnostic, Severity

FORMATS = ("text", "json", "github", "sarif")


def format_text(diagnostics: Sequence[Diagnostic], files: int) -> str:
    lines = [d.format() for d in diagnostics]
    counts = {s: sum(1 for d in diagnostics if d.severity is s) for s in Severity}
    summary = (
        f"{_plural(counts[Severity.ERROR], 'error')}, {_plural(counts[Severity.WARNING], 'warning')}, "
        f"{_plural(counts[Severity.NOTE], 'note')} in {_plural(files, 'file')}"
    )
    return "\n".join([*lines, summary]) + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_json(diagnostics: Sequence[Diagnostic], files: int) -> str:
    rows = [
        {
            "path": d.path,
            "line": d.line,
            "column": d.column,
            "code": d.code,
            "severity": d.severity.value,
            "message": d.message,
            "hint": d.hint,
        }
        for d in diagnostics
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(diagnostics: Sequence[Diagnostic], files: int) -> str:
    """GitHub Actions workflow commands: each problem becomes an annotation on the pull request."""
    lines = []
    for d in diagnostics:
        props = [f"file={_escape_property(d.path)}"]
        if d.line:
            props.append(f"line={d.line}")
        if d.column:
            props.append(f"col={d.column}")
        props.append(f"title={_escape_property(f'{d.code} {d.title}')}")
        hint = f" (hint: {d.hint})" if d.hint else ""
        lines.append(f"::{_GITHUB_LEVEL[d.severity]} {','.join(props)}::{_escape_data(d.message + hint)}")
    return "".join(f"{line}\n" for line in lines)


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def sarif_log(diagnostics: Sequence[Diagnostic]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; every code is a rule, whether or not it fired."""
    codes = sorted(CODES)
    rules = [
        {
            "id": code,
            "name": CODES[code][1],
            "shortDescription": {"text": CODES[code][1].replace("-", " ")},
            "defaultConfiguration": {"level": _SARIF_LEVEL[CODES[code][0]]},
        }
        for code in codes
    ]
    results = []
    for d in diagnostics:
        location: dict[str, Any] = {"artifactLocation": {"uri": d.path}}
        if d.line >= 1:
            region: dict[str, int] = {"startLine": d.line}
            if d.column >= 1:
                region["startColumn"] = d.column
            location["region"] = region
        text = d.message + (f" (hint: {d.hint})" if d.hint else "")
        results.append(
            {
                "ruleId": d.code,
                "ruleIndex": codes.index(d.code),
                "level": _SARIF_LEVEL[d.severity],
                "message": {"text": text},
                "locations": [{"physicalLocation": location}],
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kurative",
                        "version": kurative.__version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def format_sarif(diagnostics: Sequence[Diagnostic], files: int) -> str:
    return json.dumps(sarif_log(diagnostics), indent=2, ensure_ascii=False) + "\n"


FORMATTERS: dict[str, Callable[[Sequence[Diagnostic], int], str]] = {
    "text": format_text,
    "json": format_json,
    "github": format_github,
    "sarif": format_sarif,
}
