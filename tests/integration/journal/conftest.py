"""One ``journal`` fixture over both backends, so every contract test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# `tests.support` must import whether or not the rootdir is on sys.path (plain `pytest` does not put
# it there; `python -m pytest` does).
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kurative.journal import Journal, open_journal  # noqa: E402
from tests.support.postgres import PostgresServer, postgres_server  # noqa: E402, F401

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty, not yet migrated journal database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"journal_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture
async def journal(journal_url: str) -> AsyncIterator[Journal]:
    """A migrated journal; closed after the test."""
    opened = await open_journal(journal_url, migrate=True)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def backend(journal_url: str) -> str:
    return journal_url.split(":", 1)[0]
