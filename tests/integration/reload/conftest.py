"""A real SQLite journal for each reload test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kurative.journal import Journal, open_journal


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    opened = await open_journal(f"sqlite:///{tmp_path / 'journal.db'}", migrate=True)
    yield opened
    await opened.close()
