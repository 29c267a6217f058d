"""Journal URLs: which backend, which file, and passwords kept out of messages."""

from __future__ import annotations

import pytest

from kurative.errors import UsageError
from kurative.journal import _sqlite_path, open_journal, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://kurative:s3cret@db:5432/journal", "postgresql://kurative:***@db:5432/journal"),
        ("postgres://u:p@db/j?sslmode=require", "postgres://u:***@db/j?sslmode=require"),
        ("postgresql://kurative@db/journal", "postgresql://kurative@db/journal"),
        ("sqlite:////var/lib/kurative/journal.db", "sqlite:////var/lib/kurative/journal.db"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///journal.db", "journal.db"),
        ("sqlite:////var/lib/kurative/journal.db", "/var/lib/kurative/journal.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_paths_follow_the_three_and_four_slash_convention(url: str, path: str) -> None:
    assert _sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://journal.db", "sqlite:///", "mysql://db/journal", "journal.db"])
async def test_unusable_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError, match="journal URL"):
        await open_journal(url)


async def test_an_in_memory_journal_works() -> None:
    journal = await open_journal("sqlite:///:memory:", migrate=True)
    try:
        assert (await journal.schema_status()).current >= 1
    finally:
        await journal.close()
