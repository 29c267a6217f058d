"""Every diagnostic code is documented in docs/lint-codes.md, with the same name."""

from __future__ import annotations

from pathlib import Path

from kurative.diagnostics import CODES

DOC = (Path(__file__).parents[3] / "docs" / "lint-codes.md").read_text()


def test_every_code_is_documented() -> None:
    for code, (_severity, title) in CODES.items():
        assert f"| {code} | {title} |" in DOC, code
