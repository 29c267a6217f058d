"""Journal URLs: which backend, which file, and passwords kept out of messages."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from kurative.errors import UsageError
from kurative.journal import JournalTarget, _sqlite_path, open_journal, parse_journal_url, redact_url


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


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////tmp/journal%00.db", "NUL byte"),
        ("sqlite:///journal\x00.db", "NUL byte"),
        ("postgresql://kurative@db\x00/journal", "NUL byte"),
        ("postgresql://kurative@db/jour%00nal", "forbidden value %00"),
        ("postgresql://kurative@db:99999/journal", "port '99999' is not a number from 1 to 65535"),
        ("postgresql://kurative@db:0/journal", "port '0' is not a number from 1 to 65535"),
        ("postgresql://kurative@db:http/journal", "port 'http' is not a number from 1 to 65535"),
        ("postgresql://kurative@db:５４３２/journal", "is not a number from 1 to 65535"),  # full-width digits
        ("postgresql://kurative@db/journal?port=70000", "port '70000' is not a number"),
        ("postgresql://kurative@a:5432,b:65536/journal", "port '65536' is not a number"),
        ("postgresql://kurative:secret@[::1/journal", "Invalid IPv6 URL"),
        ("postgresql://kurative@my db/journal", "unexpected spaces"),
        ("postgresql://kurative@db/\udcff", "not valid UTF-8 text"),
        ("postgresql://kurative@db/%ed%a0%80", "a percent-encoded part is not UTF-8 text"),
        ("sqlite:///\ud800.db", "not valid UTF-8 text"),
    ],
)
def test_malformed_journal_urls_are_usage_errors_before_connecting(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        parse_journal_url(url)
    assert "secret" not in str(caught.value)


async def test_open_journal_refuses_them_too_without_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="NUL byte"):
        await open_journal(f"sqlite:///{tmp_path}/a%00b.db")


def test_a_good_url_says_where_it_points() -> None:
    target = parse_journal_url("postgresql://kurative:s3cret@db:5432/journal")
    assert target == JournalTarget(
        "postgresql",
        "postgresql://kurative:s3cret@db:5432/journal",
        "postgresql://kurative:***@db:5432/journal",
    )
    assert parse_journal_url("sqlite:////var/lib/k.db") == JournalTarget(
        "sqlite", "/var/lib/k.db", "sqlite:////var/lib/k.db"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://kurative:s3cret@db:99999/journal", "postgresql://kurative:***@db:99999/journal"),
        ("postgresql://kurative:s3cret@[::1/journal", "postgresql://kurative:***@[::1/journal"),
    ],
)
def test_redaction_works_on_malformed_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("wait", [math.nan, math.inf, -1.0])
async def test_a_wait_that_cannot_end_is_a_usage_error(wait: float) -> None:
    with pytest.raises(UsageError, match=r"wait: .* is not a number of seconds"):
        await open_journal("sqlite:///:memory:", wait=wait)


def test_a_password_in_the_query_string_is_redacted_and_known_as_a_secret() -> None:
    from kurative.journal import url_secrets

    url = "postgresql://kurative@db/k?password=s3cr3t%40PW&sslmode=disable&sslpassword=k3y"
    shown = redact_url(url)
    assert "s3cr3t" not in shown
    assert "k3y" not in shown
    assert shown == "postgresql://kurative@db/k?password=***&sslmode=disable&sslpassword=***"
    assert sorted(url_secrets(url)) == ["k3y", "s3cr3t@PW"]
    assert url_secrets("postgresql://u:p%2Fw@db/k") == ["p/w"]
    assert url_secrets("sqlite:///./kurative.db") == []
