"""The journal: everything kurative must not forget, behind one interface and a URL.

``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` is the embedded default (one process);
``postgresql://user:password@host:port/db`` serves several replicas. :func:`open_journal` picks the
backend, waits for the database with backoff, and checks (or applies) the schema. Callers depend on
:class:`Journal` only.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from kurative.errors import UsageError
from kurative.journal.backoff import Backoff, retry_until
from kurative.journal.base import Journal
from kurative.journal.encoding import DEFAULT_LIMITS, JournalLimits
from kurative.journal.models import (
    FINISHED_STATES,
    AlertPage,
    AlertStatus,
    Approval,
    Claim,
    CreationOutcome,
    CreationStatus,
    Decision,
    Execution,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionRequest,
    ExecutionState,
    InboxEntry,
    IncomingAlert,
    Lease,
    LimitRequest,
    MatchResult,
    Page,
    PlaybookVersion,
    PlaybookVersionConflict,
    PruneReport,
    Release,
    SchemaStatus,
    StepFinish,
    StepRecord,
    StepStart,
    StepStatus,
    StepsWritten,
    StoredAlert,
)
from kurative.journal.retention import prune_periodically

if TYPE_CHECKING:
    from kurative.journal.postgres import PostgresJournal
    from kurative.journal.sqlite import SQLiteJournal

__all__ = [
    "DEFAULT_LIMITS",
    "FINISHED_STATES",
    "AlertPage",
    "AlertStatus",
    "Approval",
    "Backoff",
    "Claim",
    "CreationOutcome",
    "CreationStatus",
    "Decision",
    "Execution",
    "ExecutionDetail",
    "ExecutionFilter",
    "ExecutionRequest",
    "ExecutionState",
    "InboxEntry",
    "IncomingAlert",
    "Journal",
    "JournalLimits",
    "JournalTarget",
    "Lease",
    "LimitRequest",
    "MatchResult",
    "Page",
    "PlaybookVersion",
    "PlaybookVersionConflict",
    "PruneReport",
    "Release",
    "SchemaStatus",
    "StepFinish",
    "StepRecord",
    "StepStart",
    "StepStatus",
    "StepsWritten",
    "StoredAlert",
    "open_journal",
    "parse_journal_url",
    "prune_periodically",
    "redact_url",
    "url_secrets",
]


SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
"""libpq parameters that carry a secret in a URL's query string."""
_SECRET_QUERY = re.compile(r"(?i)([?&](?:" + "|".join(sorted(SECRET_QUERY_KEYS)) + r")=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query parameter) replaced by
    ``***``, fit for logs and error messages (total)."""
    url = _SECRET_QUERY.sub(r"\1***", url)
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a malformed URL (bad port, unclosed bracket): hide whatever looks like a password
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def url_secrets(url: str) -> list[str]:
    """The secret values a journal URL carries (its password, in either place), for log redaction."""
    found = [m.group(0).split("=", 1)[1] for m in _SECRET_QUERY.finditer(url)]
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found.append(urllib.parse.unquote(password))
    return [urllib.parse.unquote(value) for value in found if value]


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise UsageError(
            f"invalid journal URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    path = ":memory:" if path == ":memory:" else urllib.parse.unquote(path.split("?", 1)[0])
    if "\x00" in path:
        raise UsageError(f"invalid journal URL {url!r}: the path contains a NUL byte (%00)")
    return path


def _check_url_text(url: object) -> str:
    if not isinstance(url, str):
        raise UsageError(f"invalid journal URL: expected text, got {type(url).__name__}")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"invalid journal URL {redact_url(url)!r}: not valid UTF-8 text") from None
    if "\x00" in url:
        raise UsageError(f"invalid journal URL {redact_url(url)!r}: it contains a NUL byte")
    return url


class JournalTarget(NamedTuple):
    """Where a journal URL points: the backend, its target (a file path or a libpq URL), the URL shown."""

    backend: Literal["sqlite", "postgresql"]
    target: str
    shown: str


def parse_journal_url(url: str) -> JournalTarget:
    """Check a journal URL without connecting; every problem is a :class:`UsageError` (exit 2)."""
    url = _check_url_text(url)
    scheme = url.split(":", 1)[0].lower()
    shown = redact_url(url)
    if scheme == "sqlite":
        return JournalTarget("sqlite", _sqlite_path(url), shown)
    if scheme in ("postgresql", "postgres"):
        from kurative.journal.postgres import check_postgres_url

        check_postgres_url(url, shown)
        return JournalTarget("postgresql", url, shown)
    raise UsageError(f"unsupported journal URL {shown!r}: use sqlite:///path.db or postgresql://user@host/db")


def _check_wait(wait: float) -> float:
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
        raise UsageError(f"wait: {wait!r} is not a number of seconds (a finite number, 0 or more)")
    return float(wait)


async def open_journal(
    url: str,
    *,
    migrate: bool = False,
    wait: float = 0.0,
    limits: JournalLimits = DEFAULT_LIMITS,
    group_commit: bool = True,
    check_schema: bool = True,
    timeout: float | None = None,
    **options: Any,
) -> Journal:
    """Open the journal at ``url`` and check its schema.

    ``migrate``: apply missing migrations first (otherwise an old schema is refused with a hint to run
    ``kurative migrate``; a newer one is always refused; ``check_schema=False`` skips the check, for
    tools that only inspect or migrate the schema). ``wait``: keep retrying an unreachable
    database for up to this many seconds (1 s, doubling, ±10 % jitter) before raising
    :class:`kurative.errors.JournalUnavailable`. ``group_commit``: let concurrent :meth:`commit_alerts`
    calls share a transaction. Backend ``options``: ``busy_timeout`` (SQLite); ``min_size``,
    ``max_size``, ``connect_timeout``, ``pool_timeout`` (how long an operation waits for a connection
    before :class:`kurative.errors.JournalUnavailable`), ``reconnect_timeout``, ``flushers`` (PostgreSQL).
    ``timeout``: how long one operation may wait for the database's answer before it fails with
    :class:`kurative.errors.JournalUnavailable` (PostgreSQL, whose connections can go silent; None or 0:
    no bound; migrations are never bounded). SQLite is a local file and ignores it.
    """
    # Only the backend in use is imported: psycopg alone takes about 0.1 s to import.
    target = parse_journal_url(url)
    wait = _check_wait(wait)
    shown = target.shown
    journal: SQLiteJournal | PostgresJournal
    if target.backend == "sqlite":
        from kurative.journal.sqlite import SQLiteJournal

        journal = SQLiteJournal(target.target, url=shown, limits=limits, group_commit=group_commit, **options)
    else:
        from kurative.journal.postgres import PostgresJournal

        journal = PostgresJournal(
            target.target,
            url_shown=shown,
            limits=limits,
            group_commit=group_commit,
            operation_timeout=timeout,
            **options,
        )

    async def connect() -> None:
        await journal.connect()

    try:
        await retry_until(connect, deadline=wait, what=f"the journal at {shown}")
        if migrate:
            await journal.migrate()
        elif check_schema:
            await journal.check_schema()
    except BaseException:
        await journal.close()
        raise
    opened: Journal = journal  # mypy proves here that both backends implement the interface
    return opened
