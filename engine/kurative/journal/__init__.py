"""The journal: everything kurative must not forget, behind one interface and a URL.

``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` is the embedded default (one process);
``postgresql://user:password@host:port/db`` serves several replicas. :func:`open_journal` picks the
backend, waits for the database with backoff, and checks (or applies) the schema. Callers depend on
:class:`Journal` only.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from kurative.errors import UsageError
from kurative.journal.backoff import Backoff, retry_until
from kurative.journal.base import Journal
from kurative.journal.encoding import DEFAULT_LIMITS, JournalLimits
from kurative.journal.models import (
    FINISHED_STATES,
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
    IncomingAlert,
    Lease,
    LimitRequest,
    MatchResult,
    Page,
    PlaybookVersion,
    PlaybookVersionConflict,
    PruneReport,
    SchemaStatus,
    StepFinish,
    StepRecord,
    StepStart,
    StepStatus,
    StoredAlert,
)
from kurative.journal.retention import prune_periodically

if TYPE_CHECKING:
    from kurative.journal.postgres import PostgresJournal
    from kurative.journal.sqlite import SQLiteJournal

__all__ = [
    "DEFAULT_LIMITS",
    "FINISHED_STATES",
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
    "IncomingAlert",
    "Journal",
    "JournalLimits",
    "Lease",
    "LimitRequest",
    "MatchResult",
    "Page",
    "PlaybookVersion",
    "PlaybookVersionConflict",
    "PruneReport",
    "SchemaStatus",
    "StepFinish",
    "StepRecord",
    "StepStart",
    "StepStatus",
    "StoredAlert",
    "open_journal",
    "prune_periodically",
    "redact_url",
]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise UsageError(
            f"invalid journal URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    return ":memory:" if path == ":memory:" else urllib.parse.unquote(path.split("?", 1)[0])


async def open_journal(
    url: str,
    *,
    migrate: bool = False,
    wait: float = 0.0,
    limits: JournalLimits = DEFAULT_LIMITS,
    group_commit: bool = True,
    check_schema: bool = True,
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
    """
    # Only the backend in use is imported: psycopg alone takes about 0.1 s to import.
    scheme = url.split(":", 1)[0].lower()
    shown = redact_url(url)
    journal: SQLiteJournal | PostgresJournal
    if scheme == "sqlite":
        from kurative.journal.sqlite import SQLiteJournal

        journal = SQLiteJournal(
            _sqlite_path(url), url=shown, limits=limits, group_commit=group_commit, **options
        )
    elif scheme in ("postgresql", "postgres"):
        from kurative.journal.postgres import PostgresJournal

        journal = PostgresJournal(url, url_shown=shown, limits=limits, group_commit=group_commit, **options)
    else:
        raise UsageError(
            f"unsupported journal URL {shown!r}: use sqlite:///path.db or postgresql://user@host/db"
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
