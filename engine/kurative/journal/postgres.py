"""The production journal: PostgreSQL through psycopg 3 and an async connection pool.

Several replicas share one database without a leader: dedupe keys are unique rows claimed with an
upsert, rate limits serialize on a per-key row lock, executions are claimed with ``FOR UPDATE SKIP
LOCKED`` and every lease is measured by the database clock (``now()``), so clock skew between replicas
does not matter. Step records are fenced: they are written only while the writer's lease (owner and
attempt) is still the current one. Connections run in autocommit; multi-statement operations open an
explicit transaction, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from kurative.errors import ExecutionNotFound, JournalError, JournalUnavailable, UsageError
from kurative.journal import rows
from kurative.journal.backend import (
    DEDUPE_KEY_HELD,
    LAST_WORD,
    RESOLVED_REASON,
    JournalBackend,
    StepsToRecord,
    alert_not_found,
    already_finished,
    awaiting_approval,
    cancelled_by,
    execution_not_found,
    lease_lost,
    not_awaiting_approval,
    playbook_not_found,
    rejected_by,
    step_twice,
    written_before,
)
from kurative.journal.batching import GroupWriter
from kurative.journal.encoding import DEFAULT_LIMITS, JournalLimits, PreparedAlert, new_id
from kurative.journal.episodes import join_episodes, joining, last_episode
from kurative.journal.models import (
    FINISHED_STATES,
    AlertPage,
    Approval,
    Claim,
    CreationOutcome,
    CreationStatus,
    Decision,
    Execution,
    ExecutionDetail,
    ExecutionRequest,
    ExecutionState,
    Lease,
    LimitRequest,
    MatchResult,
    Page,
    PlaybookVersion,
    PlaybookVersionConflict,
    PruneReport,
    StepFinish,
    StepStart,
    StepsWritten,
    StoredAlert,
)
from kurative.journal.schema import SCHEMA_VERSION_TABLE, Migration, check_version

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]

_MIGRATION_LOCK = 0x6B757261  # "kura": serializes concurrent `kurative migrate` runs
_FINISHED = sorted(state.value for state in FINISHED_STATES)
_TRANSIENT_RETRIES = 3


def _to_time(value: Any) -> datetime:
    moment: datetime = value
    return moment.astimezone(UTC)


CODEC = rows.Codec(time=_to_time, json=lambda value: value)

_INSERT_ALERTS = """
INSERT INTO alerts (id, fingerprint, status, alertname, labels, payload, source, sanitized, starts_at,
                    received_at)
SELECT id, fingerprint, status, alertname, labels, payload, source, sanitized, starts_at,
       coalesce(%s::timestamptz, now())
FROM ROWS FROM (json_to_recordset(%s::json) AS (i text, f text, s text, n text, l jsonb, p json, o text,
                                                z bool, t timestamptz))
     WITH ORDINALITY AS batch(id, fingerprint, status, alertname, labels, payload, source, sanitized,
                              starts_at, position)
ORDER BY position
ON CONFLICT (id) DO NOTHING
"""
# One JSON parameter for the whole group, built as text around the labels and payload already encoded:
# psycopg dumps a str as it is, where ten arrays cost it about as much as the insert itself.
_ALERT_ROW = '{"i":%s,"f":%s,"s":%s,"n":%s,"l":%s,"p":%s,"o":%s,"z":%s,"t":%s}'
_quoted = json.encoder.encode_basestring_ascii


def _alerts_document(prepared: Sequence[PreparedAlert], starts: Sequence[datetime | None]) -> str:
    """The rows of :data:`_INSERT_ALERTS` as one JSON array. Every text is quoted here (whatever it
    holds, it stays one JSON string) and was cleaned before (no NUL, no lone surrogate, which
    PostgreSQL's text could not hold); labels and payload are JSON our encoder wrote."""
    rows_text = ",".join(
        _ALERT_ROW
        % (
            _quoted(a.id),
            _quoted(a.fingerprint),
            _quoted(a.status),
            _quoted(a.alertname),
            a.labels_json,
            a.payload_json,
            _quoted(a.source),
            "true" if a.sanitized else "false",
            "null" if start is None else f'"{start.isoformat()}"',
        )
        for a, start in zip(prepared, starts, strict=True)
    )
    return f"[{rows_text}]"


# A start-less alert reads the newest alert of its fingerprint: commits that do so for one fingerprint
# take turns (a transaction-scoped advisory lock per fingerprint, taken in sorted order), so that two
# replicas cannot both open an episode. On a tie in time (one batch) the one committed last is newer.
_EPISODE_LOCK = 0x65706973  # "epis": the class of the two-key advisory locks, apart from _MIGRATION_LOCK
_RESOLVE_LOCK = 0x7265736F  # "reso": another class, see _RESOLVE_LOCKS
# The newest alert of each fingerprint by the order of the inserts, not by the clock (which may have
# stepped back since).
_NEWEST_ALERTS = """
SELECT f.fingerprint, n.status, n.starts_at
FROM unnest(%b::text[]) AS f(fingerprint)
CROSS JOIN LATERAL (
    SELECT a.status, a.starts_at FROM alerts a WHERE a.fingerprint = f.fingerprint ORDER BY a.seq DESC LIMIT 1
) AS n
"""

_CLAIM = f"""
WITH picked AS (
    SELECT id, state AS previous_state, lease_owner AS previous_owner
    FROM executions
    WHERE (state = 'pending' AND available_at <= now())
       OR (state = 'running' AND lease_expires_at <= now())
    ORDER BY seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE executions e
SET state = 'running', lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
    attempt = e.attempt + 1, started_at = coalesce(e.started_at, now()), updated_at = now(),
    error = CASE WHEN e.cancel_requested THEN e.error END
FROM picked
WHERE e.id = picked.id
RETURNING {rows.qualified(rows.EXECUTION_COLUMNS, "e")}, picked.previous_state, picked.previous_owner
"""  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter

_DEDUPE = """
INSERT INTO dedupe_keys AS d (playbook_name, dedupe_key, execution_id, expires_at, last_seen_at)
VALUES (%(playbook)s, %(key)s, %(id)s, now() + make_interval(secs => %(window)s), now())
ON CONFLICT (playbook_name, dedupe_key) DO UPDATE SET
    last_seen_at = now(),
    execution_id = CASE WHEN d.expires_at <= now() THEN excluded.execution_id ELSE d.execution_id END,
    expires_at = CASE WHEN d.expires_at <= now() THEN excluded.expires_at ELSE d.expires_at END
RETURNING execution_id
"""

# The dedupe claims and the inserts of a matched batch, one statement each (see _create_pipelined):
# the rows as one JSON array. The claims are all of distinct keys, so their order changes no outcome:
# they are taken in key order, as every replica takes them (two replicas claiming overlapping keys
# wait for each other instead of deadlocking); the executions are inserted in the order given.
_DEDUPES = """
INSERT INTO dedupe_keys AS d (playbook_name, dedupe_key, execution_id, expires_at, last_seen_at)
SELECT v."playbook", v."key", v."id", now() + make_interval(secs => v."window"), now()
FROM json_to_recordset(%s::json) AS v("playbook" text, "key" text, "id" text, "window" double precision)
ORDER BY v."playbook", v."key"
ON CONFLICT (playbook_name, dedupe_key) DO UPDATE SET
    last_seen_at = now(),
    execution_id = CASE WHEN d.expires_at <= now() THEN excluded.execution_id ELSE d.execution_id END,
    expires_at = CASE WHEN d.expires_at <= now() THEN excluded.expires_at ELSE d.expires_at END
RETURNING playbook_name, dedupe_key, execution_id
"""

_INSERT_EXECUTIONS = """
INSERT INTO executions (id, alert_id, alert_fingerprint, playbook_name, playbook_version,
                        playbook_hash, state, dry_run, dedupe_key)
SELECT v."id", v."alert", v."fingerprint", v."playbook", v."version", v."hash", v."state", v."dry_run",
       v."key"
FROM ROWS FROM (json_to_recordset(%s::json) AS ("id" text, "alert" text, "fingerprint" text,
     "playbook" text, "version" integer, "hash" text, "state" text, "dry_run" boolean, "key" text))
     WITH ORDINALITY AS v("id", "alert", "fingerprint", "playbook", "version", "hash", "state",
     "dry_run", "key", "n")
ORDER BY v."n"
"""

_STEP_STARTED = """
INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, params,
                   idempotency_key, started_at, lease_attempt)
SELECT e.id, %(index)s, %(name)s, %(action)s, %(attempt)s, 'started', false, %(params)s::jsonb,
       %(key)s, now(), e.attempt
FROM executions e
WHERE e.id = %(id)s AND e.lease_owner = %(owner)s AND e.attempt = %(lease_attempt)s AND e.state = 'running'
FOR SHARE
ON CONFLICT DO NOTHING
RETURNING id,
          (SELECT x.cancel_requested FROM executions x WHERE x.id = steps.execution_id FOR SHARE)
          AS cancel_requested
"""

_STEP_FINISHED = """
INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, output, error,
                   idempotency_key, started_at, finished_at, lease_attempt)
SELECT e.id, %(index)s, %(name)s, coalesce(nullif(%(action)s, ''), s.action, ''), %(attempt)s,
       %(status)s, true, %(output)s::jsonb, %(error)s, s.idempotency_key, s.started_at, now(), e.attempt
FROM executions e
LEFT JOIN steps s
       ON s.execution_id = e.id AND s.step_index = %(index)s AND s.attempt = %(attempt)s AND NOT s.final
WHERE e.id = %(id)s AND e.lease_owner = %(owner)s AND e.attempt = %(lease_attempt)s AND e.state = 'running'
FOR SHARE OF e
ON CONFLICT DO NOTHING
RETURNING id
"""

# A write that matches no row (nothing inserted, nothing updated) did not happen; a step record then
# conflicts with an earlier record of its attempt if the lease is still held, and is fenced off if not.
# Neither raises inside the transaction, so concurrent writers can share one (see _flush_writes).
_LEASE_HELD = """
SELECT 1 AS held FROM executions
WHERE id = %(id)s AND lease_owner = %(owner)s AND attempt = %(lease_attempt)s AND state = 'running'
"""

_RELEASE = f"""
UPDATE executions SET
    state = CASE WHEN cancel_requested AND %(state)s IN ('pending', 'awaiting_approval') THEN 'cancelled'
                 ELSE %(state)s END,
    lease_owner = NULL, lease_expires_at = NULL,
    error = CASE WHEN %(state)s = 'cancelled'
                      OR (cancel_requested AND %(state)s IN ('pending', 'awaiting_approval'))
                 THEN coalesce(error, %(error)s) ELSE %(error)s END,
    updated_at = now(),
    finished_at = CASE WHEN %(finished)s
                            OR (cancel_requested AND %(state)s IN ('pending', 'awaiting_approval'))
                       THEN now() END,
    available_at = now() + make_interval(secs => %(delay)s)
WHERE id = %(id)s AND lease_owner = %(owner)s AND attempt = %(attempt)s AND state = 'running'
RETURNING {rows.EXECUTION_COLUMNS}
"""  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter


# The same three writes for every write of a group at once (see _write_batched): one statement each,
# each row fenced by its own lease exactly as above. The rows come as one JSON array (one parameter,
# encoded in C; arrays of a dozen columns were costlier to dump than the statements they replaced);
# a statement's rows are told apart by the key of the row they wrote. They are inserted in the order
# given (ORDER BY the ordinality), so that record ids follow the steps whatever join the planner picks.
_STEPS_FINISHED = """
INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, output, error,
                   idempotency_key, started_at, finished_at, lease_attempt)
SELECT e.id, v."index", v."name", coalesce(nullif(v."action", ''), s.action, ''), v."attempt",
       v."status", true, v."output"::jsonb, v."error", s.idempotency_key, s.started_at, now(), e.attempt
FROM ROWS FROM (json_to_recordset(%s::json) AS ("id" text, "owner" text, "lease_attempt" integer,
     "index" integer, "name" text, "attempt" integer, "action" text, "status" text, "output" text,
     "error" text)) WITH ORDINALITY AS v("id", "owner", "lease_attempt", "index", "name", "attempt",
     "action", "status", "output", "error", "n")
JOIN executions e
     ON e.id = v."id" AND e.lease_owner = v."owner" AND e.attempt = v."lease_attempt" AND e.state = 'running'
LEFT JOIN steps s
       ON s.execution_id = e.id AND s.step_index = v."index" AND s.attempt = v."attempt" AND NOT s.final
ORDER BY v."n"
FOR SHARE OF e
ON CONFLICT DO NOTHING
RETURNING execution_id, step_index, attempt, id
"""

_STEPS_STARTED = """
INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, params,
                   idempotency_key, started_at, lease_attempt)
SELECT e.id, v."index", v."name", v."action", v."attempt", 'started', false, v."params"::jsonb,
       v."key", now(), e.attempt
FROM ROWS FROM (json_to_recordset(%s::json) AS ("id" text, "owner" text, "lease_attempt" integer,
     "index" integer, "name" text, "attempt" integer, "action" text, "params" text, "key" text))
     WITH ORDINALITY AS v("id", "owner", "lease_attempt", "index", "name", "attempt", "action", "params",
     "key", "n")
JOIN executions e
     ON e.id = v."id" AND e.lease_owner = v."owner" AND e.attempt = v."lease_attempt" AND e.state = 'running'
ORDER BY v."n"
FOR SHARE OF e
ON CONFLICT DO NOTHING
RETURNING execution_id, step_index, attempt, id,
          (SELECT x.cancel_requested FROM executions x WHERE x.id = steps.execution_id FOR SHARE)
          AS cancel_requested
"""

_RELEASES = f"""
UPDATE executions e SET
    state = CASE WHEN e.cancel_requested AND v."state" IN ('pending', 'awaiting_approval') THEN 'cancelled'
                 ELSE v."state" END,
    lease_owner = NULL, lease_expires_at = NULL,
    error = CASE WHEN v."state" = 'cancelled'
                      OR (e.cancel_requested AND v."state" IN ('pending', 'awaiting_approval'))
                 THEN coalesce(e.error, v."error") ELSE v."error" END,
    updated_at = now(),
    finished_at = CASE WHEN v."finished"
                            OR (e.cancel_requested AND v."state" IN ('pending', 'awaiting_approval'))
                       THEN now() END,
    available_at = now() + make_interval(secs => v."delay")
FROM json_to_recordset(%s::json) AS v("id" text, "owner" text, "attempt" integer, "state" text,
     "error" text, "finished" boolean, "delay" double precision)
WHERE e.id = v."id" AND e.lease_owner = v."owner" AND e.attempt = v."attempt" AND e.state = 'running'
RETURNING {", ".join("e." + c.strip() for c in rows.EXECUTION_COLUMNS.split(","))}
"""  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
# ASCII only: the server decodes the escapes
_BATCH_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))

# A resolved notification cancels the approvals its episode (or an older one) waits for, not those of
# a later episode of the same fingerprint: a resolved notification can arrive late (a retry).
_CANCEL_RESOLVED = """
UPDATE executions e SET state = 'cancelled', finished_at = now(), updated_at = now(), error = %s
FROM alerts a
WHERE a.id = e.alert_id AND e.alert_fingerprint = %s AND e.state = 'awaiting_approval'
  AND a.status = 'firing'
  AND coalesce(a.starts_at <= (SELECT r.starts_at FROM alerts r WHERE r.id = %s), true)
RETURNING e.id
"""
# A firing alert matched after its resolved notification was committed (matched in another order, by
# another replica, or a late retry of the firing one): the approvals it would wait for are cancelled
# as they are created, as that notification's own cancel would have done. Its own episode's, or a
# later episode's resolution inserted after it; not an earlier start inserted before it (a start-less
# episode's start is its receipt, and the clock may have stepped back since).
_CANCEL_ALREADY_RESOLVED = """
UPDATE executions e SET state = 'cancelled', finished_at = now(), updated_at = now(), error = %s
FROM alerts a
WHERE e.id = ANY(%s) AND e.state = 'awaiting_approval' AND a.id = e.alert_id AND a.status = 'firing'
  AND EXISTS (SELECT 1 FROM alerts r WHERE r.fingerprint = a.fingerprint AND r.status = 'resolved'
              AND (r.starts_at = a.starts_at OR (r.starts_at > a.starts_at AND r.seq > a.seq)))
RETURNING e.id
"""
# Matching a resolved alert and creating approvals for a firing one of the same fingerprint take
# turns: otherwise each could miss the other's uncommitted work. In the order of the lock keys, so
# that two matchers never wait for each other in a circle.
_RESOLVE_LOCKS = """
SELECT pg_advisory_xact_lock(%s, h)
FROM (SELECT DISTINCT hashtext(f) AS h FROM unnest(%s::text[]) AS f ORDER BY h) AS keys
"""

_BATCHED = {_STEP_FINISHED: _STEPS_FINISHED, _STEP_STARTED: _STEPS_STARTED, _RELEASE: _RELEASES}
"""Each statement a runner's write is made of, and the statement that writes it for a whole group."""


@dataclass(frozen=True, slots=True)
class _Write:
    """One write of a runner (a step record, a release): statements that each return one row, or none
    if fenced. A write of several statements is all or nothing: should some return a row and others
    not (a record that exists already), none of them is committed."""

    sql: str
    values: dict[str, Any]
    then: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def statements(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        return ((self.sql, self.values), *self.then)


Rows = tuple[DictRow | None, ...]


class _Partial(Exception):
    """A write of several statements wrote only some of them: its transaction must not commit."""


def _partial(rows: Rows) -> bool:
    return any(row is None for row in rows) and any(row is not None for row in rows)


_PRUNE = (
    (
        "executions",
        "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE state = ANY(%(finished)s) "
        "AND finished_at < now() - make_interval(secs => %(age)s) LIMIT %(batch)s)",
    ),
    (
        "alerts",
        "DELETE FROM alerts WHERE id IN (SELECT a.id FROM alerts a "
        "WHERE a.received_at < now() - make_interval(secs => %(age)s) AND a.matched_at IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.alert_id = a.id) "
        f"AND NOT {LAST_WORD.format(order='seq')} LIMIT %(batch)s)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
    ),
    (
        "dedupe_keys",
        "DELETE FROM dedupe_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM dedupe_keys WHERE "
        "((expires_at IS NOT NULL AND expires_at <= now()) OR "
        "(expires_at IS NULL AND last_seen_at < now() - make_interval(secs => %(age)s))) "
        f"AND NOT {DEDUPE_KEY_HELD} LIMIT %(batch)s))",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
    ),
    (
        "limit_hits",
        "DELETE FROM rate_limit_hits WHERE ctid = ANY(ARRAY(SELECT ctid FROM rate_limit_hits "
        "WHERE expires_at <= now() LIMIT %(batch)s))",
    ),
)


def check_postgres_url(url: str, shown: str) -> None:
    """Refuse what libpq would refuse only when connecting, or what would crash before it is asked."""
    invalid = f"invalid journal URL {shown!r}"
    try:
        urllib.parse.urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
        raise UsageError(f"{invalid}: {exc} (write an IPv6 host as [::1])") from None
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "not a connection URL"
        raise UsageError(f"{invalid}: {reason}") from None
    except UnicodeDecodeError:  # %ed%a0%80: percent-encoded bytes that are not UTF-8
        raise UsageError(f"{invalid}: a percent-encoded part is not UTF-8 text") from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise UsageError(f"{invalid}: port {port!r} is not a number from 1 to 65535")


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether the connection broke (cut, reset, ended by a server restart or an administrator)
    rather than the statement failing on a working one."""
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def _no_answer(limit: float | None) -> TimeoutError:
    return TimeoutError(f"no answer within {limit:g}s (journal.timeout)")


def _forget(tasks: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller was already told the journal is unavailable

    return done


class PostgresJournal(JournalBackend):
    """The :class:`kurative.journal.base.Journal` on PostgreSQL."""

    backend = "postgresql"
    placeholder = "%s"
    alert_order = "seq"

    def __init__(
        self,
        conninfo: str,
        *,
        url_shown: str,
        limits: JournalLimits = DEFAULT_LIMITS,
        group_commit: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 5.0,
        reconnect_timeout: float = 5.0,
        flushers: int = 2,
        operation_timeout: float | None = None,
    ) -> None:
        super().__init__(url=url_shown, limits=limits, group_commit=group_commit, flushers=flushers)
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        # psycopg waits for an answer as long as the socket stays open: a blackholed or half-open
        # connection (a partition, a failover behind a proxy) would hold the caller forever
        self._operation_timeout = operation_timeout or None
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=pool_timeout,
            # background reconnection backs off from 1 s, doubling with ±10 % jitter, for this long;
            # after that a connection is tried again whenever one is needed, from 1 s again. Kept
            # short: a long chain (psycopg_pool's 5 min, our former 60 s) leaves the daemon failing
            # for up to its last delay (16 s, 32 s...) after the database is back
            reconnect_timeout=reconnect_timeout,
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": max(1, round(connect_timeout)),
            },
            name="kurative-journal",
        )
        self._pool_open = False
        self._writer: GroupWriter[_Write, Rows] | None = (
            GroupWriter(self._flush_writes, concurrency=flushers) if group_commit else None
        )

    # -- plumbing -----------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> JournalUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JournalUnavailable(f"the journal at {self._url} is unavailable: {reason}")

    async def connect(self) -> None:
        """Check that the server answers (with a clear reason when not), then start the pool."""
        try:
            probe = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
            )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        await probe.close()
        if not self._pool_open:
            await self._pool.open(wait=False)
            self._pool_open = True

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], *, retry: bool = False, bounded: bool = True
    ) -> T:
        """Run ``fn`` on a pooled connection, mapping driver errors to journal errors.

        Deadlocks and serialization failures are retried (the transaction was rolled back whole).
        When ``retry`` is set (the operation is idempotent), a connection broken by a server restart
        or a cut network path is replaced and the operation tried again, and again for each further
        connection found broken (at most as many as the pool holds). The whole call is bounded by
        the operation timeout (unless ``bounded`` is false: migrations): past it the caller gets
        :class:`~kurative.errors.JournalUnavailable`, as for a broken connection — the outcome of a
        write is then unknown in the same way — while the query is cancelled and its connection
        discarded in the background.
        """
        conflicts = broken = 0
        limit = self._operation_timeout if bounded else None
        budget = limit
        clock = asyncio.get_running_loop().time
        deadline = None if limit is None else clock() + limit
        while True:
            try:
                return await self._within(self._attempt(fn), budget)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                conflicts += 1
                if conflicts < _TRANSIENT_RETRIES:
                    continue
                raise JournalError(f"journal transaction kept conflicting on {self._url}: {exc}") from exc
            except (PoolTimeout, PoolClosed) as exc:
                raise self._unavailable(exc) from exc
            except psycopg.OperationalError as exc:
                # a restart or a cut path breaks every pooled connection at once, and one in use
                # while the idle ones are checked returns broken after the check: each is discarded
                # as it fails, so the next try gets another, in what is left of the timeout
                again = broken == 0 or (_connection_lost(exc) and broken < self._pool.max_size)
                if not (retry and again):
                    raise self._unavailable(exc) from exc
                broken += 1
                try:
                    if deadline is not None:
                        budget = deadline - clock()
                    await self._within(self._pool.check(), budget)
                    if deadline is not None:
                        budget = deadline - clock()
                        if budget <= 0:
                            raise TimeoutError
                except TimeoutError:
                    raise self._unavailable(_no_answer(limit)) from exc
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # the pool's check does not pass it on
                    raise asyncio.CancelledError from None
            except TimeoutError as exc:
                raise self._unavailable(_no_answer(limit)) from exc
            except psycopg.Error as exc:
                raise JournalError(f"journal operation failed on {self._url}: {exc}") from exc

    async def _attempt(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._pool.connection(timeout=self._pool_timeout) as conn:
            return await fn(conn)

    async def _within(self, operation: Awaitable[T], limit: float | None) -> T:
        """``operation``'s result, or :class:`TimeoutError` after ``limit`` seconds.

        Not ``asyncio.timeout``: psycopg answers a cancellation by cancelling the query on the server
        and waiting for that (seconds more when the server cannot be reached), so the abandoned
        operation finishes in a task of its own and the caller is answered on time.
        """
        if limit is None:
            return await operation
        task = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if task in done:
            return task.result()
        self._abandon(task)
        raise TimeoutError

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(_forget(self._abandoned))

    async def _settle_abandoned(self) -> None:
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=self._pool_timeout + 10.0)

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.close()
        if self._writer is not None:
            await self._writer.close()
        await self._settle_abandoned()
        if self._pool_open:
            self._pool_open = False
            await self._pool.close()

    # -- schema -------------------------------------------------------------------------------------

    @staticmethod
    async def _applied(conn: Conn) -> tuple[int, ...]:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (SCHEMA_VERSION_TABLE,))
        row = await cur.fetchone()
        if row is None or not row["present"]:
            return ()
        cur = await conn.execute(f"SELECT version FROM {SCHEMA_VERSION_TABLE} ORDER BY version")  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        return tuple(int(r["version"]) for r in await cur.fetchall())

    async def _applied_versions(self) -> tuple[int, ...]:
        return await self._run(self._applied, retry=True)

    async def _apply_migrations(self, migrations: Sequence[Migration]) -> tuple[int, ...]:
        async def apply(conn: Conn) -> tuple[int, ...]:
            newly: list[int] = []
            for migration in migrations:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} (version integer PRIMARY KEY, "
                        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    current = max(await self._applied(conn), default=0)
                    check_version(current, len(migrations), self._url, migrating=True)
                    if migration.version <= current:
                        continue
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, name) VALUES (%s, %s)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (migration.version, migration.name),
                    )
                    newly.append(migration.version)
            async with conn.transaction():
                current = max(await self._applied(conn), default=0)
            check_version(current, len(migrations), self._url, migrating=True)
            return tuple(newly)

        return await self._run(apply, bounded=False)

    async def now(self) -> datetime:
        async def read(conn: Conn) -> datetime:
            cur = await conn.execute("SELECT now() AS now")
            row = await cur.fetchone()
            assert row is not None
            return _to_time(row["now"])

        return await self._run(read, retry=True)

    # -- alert inbox --------------------------------------------------------------------------------

    async def _flush_alerts(self, prepared: list[PreparedAlert]) -> None:
        fingerprints = joining(prepared)
        # every alert has its start: the group's rows are encoded once, for every try
        document = None if fingerprints else _alerts_document(prepared, [a.starts_at for a in prepared])

        async def insert(conn: Conn) -> None:
            # ON CONFLICT makes the retry safe: a retried alert keeps the start it was stored with.
            if document is not None:  # one statement, one transaction
                await conn.execute(_INSERT_ALERTS, (None, document))
                return
            async with conn.transaction():
                for fingerprint in fingerprints:
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_EPISODE_LOCK, fingerprint)
                    )
                # received after the locks, not at the transaction's start: after what it waited for
                cur = await conn.execute("SELECT clock_timestamp() AS now")
                row = await cur.fetchone()
                assert row is not None
                cur = await conn.execute(_NEWEST_ALERTS, (fingerprints,))
                last = {
                    r["fingerprint"]: last_episode(r["status"], _to_time(r["starts_at"]))
                    for r in await cur.fetchall()
                    if r["starts_at"] is not None
                }
                starts = join_episodes(prepared, last, _to_time(row["now"]))
                await conn.execute(_INSERT_ALERTS, (row["now"], _alerts_document(prepared, starts)))

        await self._run(insert, retry=True)

    async def get_alert(self, alert_id: str) -> StoredAlert:
        async def read(conn: Conn) -> StoredAlert:
            cur = await conn.execute(f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
            row = await cur.fetchone()
            if row is None:
                raise alert_not_found(alert_id)
            return rows.alert_from_row(row, CODEC)

        return await self._run(read, retry=True)

    # -- ruleset versions ---------------------------------------------------------------------------

    async def record_playbooks(
        self, versions: Sequence[PlaybookVersion]
    ) -> tuple[PlaybookVersionConflict, ...]:
        checked = [
            (name or "", version, content_hash or "", body)
            for name, version, content_hash, body in self._clean_playbooks(versions)
        ]

        async def record(conn: Conn) -> tuple[PlaybookVersionConflict, ...]:
            conflicts: list[PlaybookVersionConflict] = []
            async with conn.transaction():
                for name, version, content_hash, body in checked:
                    await conn.execute(
                        "INSERT INTO playbook_versions (name, version, content_hash, body) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (name, version) DO NOTHING",
                        (name, version, content_hash, body),
                    )
                    cur = await conn.execute(
                        "SELECT content_hash FROM playbook_versions WHERE name = %s AND version = %s",
                        (name, version),
                    )
                    known = await cur.fetchone()
                    if known is not None and known["content_hash"] != content_hash:
                        conflicts.append(
                            PlaybookVersionConflict(name, version, known["content_hash"], content_hash)
                        )
            return tuple(conflicts)

        return await self._run(record, retry=True)

    async def get_playbook(self, name: str, version: int, content_hash: str) -> PlaybookVersion:
        async def read(conn: Conn) -> PlaybookVersion:
            cur = await conn.execute(
                "SELECT name, version, content_hash, body FROM playbook_versions "
                "WHERE name = %s AND version = %s AND content_hash = %s",
                (name, version, content_hash),
            )
            row = await cur.fetchone()
            if row is None:
                raise playbook_not_found(name, version, content_hash)
            return rows.playbook_from_row(row)

        return await self._run(read, retry=True)

    # -- executions ---------------------------------------------------------------------------------

    async def _create_executions(
        self, alert_id: str, requests: Sequence[ExecutionRequest]
    ) -> tuple[CreationOutcome, ...]:
        async def create(conn: Conn) -> tuple[CreationOutcome, ...]:
            outcomes: list[CreationOutcome] = []
            async with conn.transaction():
                cur = await conn.execute(
                    "UPDATE alerts SET matched_at = coalesce(matched_at, now()), "
                    "ruleset = coalesce(ruleset, '') WHERE id = %s RETURNING fingerprint",
                    (alert_id,),
                )
                alert = await cur.fetchone()
                if alert is None:
                    raise alert_not_found(alert_id)
                for request in requests:
                    outcomes.append(await self._create_one(conn, alert_id, alert["fingerprint"], request))
            return tuple(outcomes)

        try:
            return await self._run(create)
        except JournalError as exc:
            if isinstance(exc.__cause__, psycopg.errors.ForeignKeyViolation):
                raise ExecutionNotFound(f"no alert {alert_id!r} in the journal (pruned meanwhile)") from exc
            raise

    async def _unmatched_alerts(self, limit: int) -> tuple[StoredAlert, ...]:
        async def read(conn: Conn) -> tuple[StoredAlert, ...]:
            cur = await conn.execute(
                f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE matched_at IS NULL "
                "ORDER BY received_at, seq LIMIT %s",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                (limit,),
            )
            return tuple(rows.alert_from_row(row, CODEC) for row in await cur.fetchall())

        return await self._run(read, retry=True)

    async def _match_alerts(
        self, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], ruleset: str
    ) -> MatchResult:
        async def match(conn: Conn) -> MatchResult:
            async with conn.transaction():
                # The row locks make a racing replica wait, then find the alerts matched: it skips them.
                cur = await conn.execute(
                    "UPDATE alerts SET matched_at = now(), ruleset = %s WHERE id = ANY(%s) "
                    "AND matched_at IS NULL RETURNING id, fingerprint, status",
                    (ruleset, [alert_id for alert_id, _ in matches]),
                )
                found = {row["id"]: row for row in await cur.fetchall()}
                resolving = {
                    row["fingerprint"]
                    for alert_id, requests in matches
                    if (row := found.get(alert_id)) is not None
                    and (row["status"] == "resolved" or any(r.requires_approval for r in requests))
                }
                if resolving:
                    await conn.execute(_RESOLVE_LOCKS, (_RESOLVE_LOCK, sorted(resolving)))
                simple = all(
                    found[alert_id]["status"] != "resolved" and not any(r.limits for r in requests)
                    for alert_id, requests in matches
                    if alert_id in found
                )
                if simple:
                    result = await self._create_pipelined(conn, matches, found)
                    return MatchResult(result.outcomes, await _cancel_resolved_approvals(conn, result))
                outcomes: list[tuple[CreationOutcome, ...]] = []
                cancelled: list[str] = []
                for alert_id, requests in matches:
                    alert = found.pop(alert_id, None)  # an alert listed twice is matched once
                    if alert is None:
                        outcomes.append(())
                        continue
                    created = [
                        await self._create_one(conn, alert_id, alert["fingerprint"], request)
                        for request in requests
                    ]
                    outcomes.append(tuple(created))
                    if alert["status"] == "resolved":
                        values = (RESOLVED_REASON, alert["fingerprint"], alert_id)
                        cur = await conn.execute(_CANCEL_RESOLVED, values)
                        cancelled.extend(r["id"] for r in await cur.fetchall())
                cancelled.extend(await _cancel_resolved_approvals(conn, MatchResult(tuple(outcomes))))
            return MatchResult(tuple(outcomes), tuple(sorted(cancelled)))

        return await self._run(match)

    @staticmethod
    async def _create_pipelined(
        conn: Conn, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], found: dict[str, DictRow]
    ) -> MatchResult:
        """The executions of firing alerts without limits, as :meth:`_try_create` creates them one by
        one, in two statements: every dedupe claim, then every insert. When two requests of the batch
        claim the same key (or a value cannot go into one JSON document), the claims are sent one by one
        instead, pipelined and in order, so that a key claimed earlier in the batch deduplicates a later
        request exactly as one by one."""
        first = {alert_id: n for n, (alert_id, _) in reversed(list(enumerate(matches)))}
        planned = [
            (alert_id, request, new_id())
            for n, (alert_id, requests) in enumerate(matches)
            if alert_id in found and first[alert_id] == n  # listed twice: matched once
            for request in requests
        ]
        keyed = [
            (request, execution_id) for _, request, execution_id in planned if request.dedupe_key is not None
        ]
        holders = await _claim_dedupe_keys(conn, keyed) if keyed else {}
        outcomes: dict[str, list[CreationOutcome]] = {alert_id: [] for alert_id in found}
        inserts: list[dict[str, Any]] = []
        for alert_id, request, execution_id in planned:
            holder = holders.get(execution_id, execution_id)
            if holder != execution_id:
                outcomes[alert_id].append(CreationOutcome(request, CreationStatus.DEDUPLICATED, holder))
                continue
            state = ExecutionState.AWAITING_APPROVAL if request.requires_approval else ExecutionState.PENDING
            inserts.append(
                {
                    "id": execution_id,
                    "alert": alert_id,
                    "fingerprint": found[alert_id]["fingerprint"],
                    "playbook": request.playbook_name,
                    "version": request.playbook_version,
                    "hash": request.playbook_hash,
                    "state": state.value,
                    "dry_run": request.dry_run,
                    "key": request.dedupe_key,
                }
            )
            outcomes[alert_id].append(CreationOutcome(request, CreationStatus.CREATED, execution_id))
        if inserts:
            document = _batch_document(inserts)
            if document is not None:
                await conn.execute(_INSERT_EXECUTIONS, (document,))
            else:
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO executions (id, alert_id, alert_fingerprint, playbook_name, "
                        "playbook_version, playbook_hash, state, dry_run, dedupe_key) VALUES (%(id)s, "
                        "%(alert)s, %(fingerprint)s, %(playbook)s, %(version)s, %(hash)s, %(state)s, "
                        "%(dry_run)s, %(key)s)",
                        inserts,
                    )
        return MatchResult(
            tuple(
                tuple(outcomes[alert_id]) if alert_id in found and first[alert_id] == n else ()
                for n, (alert_id, _) in enumerate(matches)
            )
        )

    async def _create_one(
        self, conn: Conn, alert_id: str, fingerprint: str, request: ExecutionRequest
    ) -> CreationOutcome:
        if not request.limits:
            return await self._try_create(conn, alert_id, fingerprint, request)
        # a savepoint, so that a refusing limit also undoes the dedupe claim
        async with conn.transaction() as savepoint:
            outcome = await self._try_create(conn, alert_id, fingerprint, request)
            if outcome.status is CreationStatus.RATE_LIMITED:
                raise psycopg.Rollback(savepoint)
        return outcome

    async def _try_create(
        self, conn: Conn, alert_id: str, fingerprint: str, request: ExecutionRequest
    ) -> CreationOutcome:
        execution_id = new_id()
        if request.dedupe_key is not None:
            cur = await conn.execute(
                _DEDUPE,
                {
                    "playbook": request.playbook_name,
                    "key": request.dedupe_key,
                    "id": execution_id,
                    "window": request.dedupe_window,
                },
            )
            holder = await cur.fetchone()
            assert holder is not None
            if holder["execution_id"] != execution_id:
                return CreationOutcome(request, CreationStatus.DEDUPLICATED, holder["execution_id"])
        limits = sorted(request.limits, key=lambda lim: (lim.name, lim.key, lim.per))
        refused = await self._over_limit(conn, request.playbook_name, limits)
        if refused is not None:
            return CreationOutcome(request, CreationStatus.RATE_LIMITED, None, refused)
        for limit in limits:
            await conn.execute(
                "INSERT INTO rate_limit_hits (playbook_name, limit_name, limit_key, per_seconds, "
                "execution_id, expires_at) VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
                (request.playbook_name, limit.name, limit.key, limit.per, execution_id, limit.per),
            )
        state = ExecutionState.AWAITING_APPROVAL if request.requires_approval else ExecutionState.PENDING
        await conn.execute(
            "INSERT INTO executions (id, alert_id, alert_fingerprint, playbook_name, playbook_version, "
            "playbook_hash, state, dry_run, dedupe_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                execution_id,
                alert_id,
                fingerprint,
                request.playbook_name,
                request.playbook_version,
                request.playbook_hash,
                state.value,
                request.dry_run,
                request.dedupe_key,
            ),
        )
        return CreationOutcome(request, CreationStatus.CREATED, execution_id)

    @staticmethod
    async def _over_limit(conn: Conn, playbook: str, limits: list[LimitRequest]) -> LimitRequest | None:
        for limit in limits:
            # the upsert locks the key's row until commit: concurrent creators count one after another
            await conn.execute(
                "INSERT INTO rate_limits (playbook_name, limit_name, limit_key, per_seconds) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (playbook_name, limit_name, limit_key, per_seconds) "
                "DO UPDATE SET touched_at = now()",
                (playbook, limit.name, limit.key, limit.per),
            )
            cur = await conn.execute(
                "SELECT count(*) AS hits FROM rate_limit_hits WHERE playbook_name = %s AND limit_name = %s "
                "AND limit_key = %s "
                "AND per_seconds = %s AND hit_at > now() - make_interval(secs => %s)",
                (playbook, limit.name, limit.key, limit.per, limit.per),
            )
            row = await cur.fetchone()
            assert row is not None
            if int(row["hits"]) >= limit.max:
                return limit
        return None

    async def _claim_executions(self, owner_text: str, limit: int, lease_seconds: float) -> tuple[Claim, ...]:
        async def claim(conn: Conn) -> tuple[Claim, ...]:
            cur = await conn.execute(_CLAIM, {"limit": limit, "owner": owner_text, "lease": lease_seconds})
            found = await cur.fetchall()
            claims = (
                rows.claim_from_row(row, CODEC, row["previous_state"], row["previous_owner"]) for row in found
            )
            return tuple(sorted(claims, key=lambda c: c.execution.created_at))

        return await self._run(claim)

    async def _renew_lease(self, lease: Lease, lease_seconds: float) -> Lease:
        async def renew(conn: Conn) -> Lease:
            cur = await conn.execute(
                "UPDATE executions SET lease_expires_at = now() + make_interval(secs => %s), "
                "updated_at = now() WHERE id = %s AND lease_owner = %s AND attempt = %s "
                "AND state = 'running' RETURNING lease_expires_at, cancel_requested",
                (lease_seconds, lease.execution_id, lease.owner, lease.attempt),
            )
            row = await cur.fetchone()
            if row is None:
                raise lease_lost(lease)
            return rows.renewed_lease(lease, row, CODEC)

        return await self._run(renew, retry=True)

    async def _release_execution(
        self, lease: Lease, state: ExecutionState, error: str | None, delay: float
    ) -> Execution:
        values = {
            "state": state.value,
            "error": error,
            "finished": state.finished,
            "delay": float(delay),
            "id": lease.execution_id,
            "owner": lease.owner,
            "attempt": lease.attempt,
        }
        (row,) = await self._write(_Write(_RELEASE, values))
        if row is None:
            raise lease_lost(lease)
        return rows.execution_from_row(row, CODEC)

    async def record_step_started(self, lease: Lease, step: StepStart) -> int:
        clean = self._clean_start(step)
        values = {"action": clean.action, "params": clean.params_json, "key": clean.idempotency_key}
        return await self._record_step(_STEP_STARTED, values, lease, step, clean.name, "started")

    async def record_step_finished(self, lease: Lease, step: StepFinish) -> int:
        clean = self._clean_finish(step)
        values = {
            "action": clean.action,
            "status": clean.status.value,
            "output": clean.output_json,
            "error": clean.error,
        }
        return await self._record_step(_STEP_FINISHED, values, lease, step, clean.name, "finished")

    async def _record_step(
        self,
        sql: str,
        values: dict[str, Any],
        lease: Lease,
        step: StepStart | StepFinish,
        name: str | None,
        what: str,
    ) -> int:
        """Insert one step record only while ``lease`` is held; a second record of one step attempt
        conflicts."""
        fence = {"id": lease.execution_id, "owner": lease.owner, "lease_attempt": lease.attempt}
        values = {**values, **fence, "index": step.index, "name": name, "attempt": step.attempt}
        (row,) = await self._write(_Write(sql, values))
        if row is not None:
            return int(row["id"])

        async def held(conn: Conn) -> bool:
            cur = await conn.execute(_LEASE_HELD, fence)
            return await cur.fetchone() is not None

        # nothing inserted: the attempt already has that record, or the lease was gone
        if await self._run(held, retry=True):
            raise step_twice(lease, step.name, step.attempt, what)
        raise lease_lost(lease)

    async def _record_steps(self, lease: Lease, steps: StepsToRecord) -> StepsWritten:
        fence = {"id": lease.execution_id, "owner": lease.owner, "lease_attempt": lease.attempt}
        statements: list[tuple[str, dict[str, Any]]] = []
        for step, clean in steps.finished:
            values = {
                **fence,
                "index": step.index,
                "name": clean.name,
                "attempt": step.attempt,
                "action": clean.action,
                "status": clean.status.value,
                "output": clean.output_json,
                "error": clean.error,
            }
            statements.append((_STEP_FINISHED, values))
        if steps.started is not None:
            start, clean_start = steps.started
            values = {
                **fence,
                "index": start.index,
                "name": clean_start.name,
                "attempt": start.attempt,
                "action": clean_start.action,
                "params": clean_start.params_json,
                "key": clean_start.idempotency_key,
            }
            statements.append((_STEP_STARTED, values))
        if steps.release is not None:
            release = steps.release
            values = {
                "state": release.state.value,
                "error": release.error,
                "finished": release.state.finished,
                "delay": release.delay,
                "id": lease.execution_id,
                "owner": lease.owner,
                "attempt": lease.attempt,
            }
            statements.append((_RELEASE, values))
        (sql, first), *then = statements
        found = await self._write(_Write(sql, first, tuple(then)))
        if any(row is None for row in found):  # nothing written: a record exists, or the lease is gone
            return await self._conflict(lease, steps)
        rows_of = list(found)
        finished = tuple(int(row["id"]) for row in rows_of[: len(steps.finished)] if row is not None)
        started = None
        cancel = False
        if steps.started is not None:
            row = rows_of[len(steps.finished)]
            started = int(row["id"]) if row is not None else None
            cancel = bool(row is not None and row["cancel_requested"])
        execution = None
        if steps.release is not None and rows_of[-1] is not None:
            execution = rows.execution_from_row(rows_of[-1], CODEC)
        return StepsWritten(finished, started, execution, cancel)

    async def _conflict(self, lease: Lease, steps: StepsToRecord) -> StepsWritten:
        """Raise the conflict that kept :meth:`_record_steps` from writing: which record exists.

        Unless every record is there already, as written, under this very lease: the same write,
        committed late after its caller had given up on it (``journal.timeout`` during a slow commit)
        and now tried again (:func:`~kurative.journal.backend.written_before`)."""

        fence = {"id": lease.execution_id, "owner": lease.owner, "lease_attempt": lease.attempt}

        async def existing(conn: Conn) -> list[tuple[Any, ...]] | None:
            cur = await conn.execute(_LEASE_HELD, fence)
            if await cur.fetchone() is None:
                return None
            cur = await conn.execute(
                "SELECT id, step_index, attempt, final, lease_attempt, status, error, idempotency_key "
                "FROM steps WHERE execution_id = %s",  # the columns of RETRY_CHECK_COLUMNS
                (lease.execution_id,),
            )
            return [tuple(r.values()) for r in await cur.fetchall()]

        stored = await self._run(existing, retry=True)
        if stored is None:
            raise lease_lost(lease)
        again = written_before(steps, lease.attempt, stored)
        if again is not None:
            return again
        found = {(row[1], row[2], bool(row[3])) for row in stored}
        for step, _ in steps.finished:
            if (step.index, step.attempt, True) in found:
                raise step_twice(lease, step.name, step.attempt, "finished")
        if steps.started is not None:
            start = steps.started[0]
            raise step_twice(lease, start.name, start.attempt, "started")
        raise lease_lost(lease)  # pragma: no cover - written, then gone before the check

    async def _write(self, write: _Write) -> Rows:
        """Run one runner write, sharing a transaction with concurrent ones (group commit)."""
        if self._writer is not None:
            return await self._writer.submit(write)
        return await self._run(lambda conn: _write_alone(conn, write))

    async def _flush_writes(self, writes: list[_Write]) -> list[Rows | BaseException]:
        """Commit ``writes`` in one transaction, pipelined: one round trip and one fsync for all.

        None of them raises on a lost lease or a duplicate step record (they return no row), so one
        caller's fenced write does not spoil the others'. Should the group fail for another reason, or
        a write of several statements be only partly written, each write is committed on its own, so
        that each caller gets its own outcome."""

        async def group(conn: Conn) -> list[Rows | BaseException]:
            if len(writes) == 1 and not writes[0].then:  # a statement is a transaction of its own
                return [await _write_alone(conn, writes[0])]
            async with conn.pipeline(), conn.transaction():
                results = await _write_batched(conn, writes)
                if results is None:
                    cursors = [[conn.cursor() for _ in write.statements] for write in writes]
                    for mine, write in zip(cursors, writes, strict=True):
                        for cursor, (sql, values) in zip(mine, write.statements, strict=True):
                            await cursor.execute(sql, values)
                    results = [tuple([await cursor.fetchone() for cursor in mine]) for mine in cursors]
                if any(_partial(found) for found in results):
                    raise _Partial  # rolls the group back: each write again on its own
            return list(results)

        try:
            return await self._run(group)
        except JournalUnavailable:
            raise
        except _Partial:
            pass
        except JournalError:
            if len(writes) == 1:
                raise
        outcomes: list[Rows | BaseException] = []
        for write in writes:

            async def alone(conn: Conn, write: _Write = write) -> Rows:
                return await _write_alone(conn, write)

            try:
                outcomes.append(await self._run(alone))
            except JournalError as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _stored_time(moment: datetime) -> Any:
        return moment

    async def _list_executions(self, sql: str, params: list[Any], limit: int) -> Page:
        async def read(conn: Conn) -> Page:
            cur = await conn.execute(sql.encode(), params)
            return rows.page_from_rows(await cur.fetchall(), limit, CODEC)

        return await self._run(read, retry=True)

    async def _read_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def read(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql.encode(), list(params))
            return [
                tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in await cur.fetchall()
            ]

        return await self._run(read, retry=True)

    async def _list_alerts(self, sql: str, params: list[Any], limit: int) -> AlertPage:
        async def read(conn: Conn) -> AlertPage:
            cur = await conn.execute(sql.encode(), params)
            return rows.alert_page_from_rows(await cur.fetchall(), limit, CODEC)

        return await self._run(read, retry=True)

    async def get_execution(self, execution_id: str) -> ExecutionDetail:
        execution_sql, steps_sql, approvals_sql = rows.detail_queries(self.placeholder)

        async def read(conn: Conn) -> ExecutionDetail:
            # One snapshot, one round trip: the three reads are pipelined (each runner reads its
            # execution when it starts, so this is on the path of every execution).
            async with conn.pipeline(), conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                execution_cur = conn.cursor()
                steps_cur = conn.cursor()
                approvals_cur = conn.cursor()
                await execution_cur.execute(execution_sql, (execution_id,))
                await steps_cur.execute(steps_sql, (execution_id,))
                await approvals_cur.execute(approvals_sql, (execution_id,))
                row = await execution_cur.fetchone()
                steps = await steps_cur.fetchall()
                approvals = await approvals_cur.fetchall()
            if row is None:
                raise execution_not_found(execution_id)
            return rows.detail_from_rows(row, steps, approvals, CODEC)

        return await self._run(read, retry=True)

    async def _record_approval(
        self, execution_id: str, decision: Decision, who_text: str, reason_text: str
    ) -> Approval:
        async def record(conn: Conn) -> Approval:
            async with conn.transaction():
                state = await _lock_state(conn, execution_id)
                if state is not ExecutionState.AWAITING_APPROVAL:
                    raise not_awaiting_approval(execution_id, state)
                cur = await conn.execute(
                    "INSERT INTO approvals (execution_id, decision, who, reason) VALUES (%s, %s, %s, %s) "
                    f"RETURNING {rows.APPROVAL_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                    (execution_id, decision.value, who_text, reason_text),
                )
                approval = await cur.fetchone()
                assert approval is not None
                approved = decision is Decision.APPROVED
                await conn.execute(
                    "UPDATE executions SET state = %s, updated_at = now(), available_at = now(), "
                    "finished_at = CASE WHEN %s THEN NULL ELSE now() END, error = %s WHERE id = %s",
                    (
                        (ExecutionState.PENDING if approved else ExecutionState.CANCELLED).value,
                        approved,
                        None if approved else rejected_by(who_text, reason_text),
                        execution_id,
                    ),
                )
            return rows.approval_from_row(approval, CODEC)

        return await self._run(record)

    async def _cancel_execution(self, execution_id: str, who_text: str, reason_text: str) -> Execution:
        async def cancel(conn: Conn) -> Execution:
            async with conn.transaction():
                state = await _lock_state(conn, execution_id)
                if state.finished:
                    raise already_finished(execution_id, state)
                if state is ExecutionState.RUNNING:
                    cur = await conn.execute(
                        "UPDATE executions SET cancel_requested = true, error = %s, updated_at = now() "
                        f"WHERE id = %s RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (cancelled_by(who_text, reason_text), execution_id),
                    )
                else:
                    cur = await conn.execute(
                        "UPDATE executions SET state = 'cancelled', finished_at = now(), updated_at = now(), "
                        f"error = %s WHERE id = %s RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (cancelled_by(who_text, reason_text), execution_id),
                    )
                updated = await cur.fetchone()
                assert updated is not None
            return rows.execution_from_row(updated, CODEC)

        return await self._run(cancel)

    async def _expire_approval(self, execution_id: str) -> bool:
        async def expire(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE executions SET state = 'pending', available_at = now(), updated_at = now() "
                "WHERE id = %s AND state = 'awaiting_approval' RETURNING id",
                (execution_id,),
            )
            return await cur.fetchone() is not None

        return await self._run(expire)

    async def _cancel_awaiting_approval(
        self, alert_fingerprint: str, reason_text: str | None
    ) -> tuple[str, ...]:
        async def cancel(conn: Conn) -> tuple[str, ...]:
            cur = await conn.execute(
                "UPDATE executions SET state = 'cancelled', finished_at = now(), updated_at = now(), "
                "error = %s WHERE alert_fingerprint = %s AND state = 'awaiting_approval' RETURNING id",
                (reason_text, alert_fingerprint),
            )
            return tuple(sorted(r["id"] for r in await cur.fetchall()))

        return await self._run(cancel)

    # -- retention ----------------------------------------------------------------------------------

    async def prune(self, older_than: float, *, batch: int = 1000) -> PruneReport:
        async def delete(field: str, sql: str) -> int:
            values = {"finished": _FINISHED, "age": float(older_than), "batch": batch}

            async def run(conn: Conn) -> int:
                cur = await conn.execute(sql.encode(), values)
                return cur.rowcount

            return await self._run(run)

        report = await self._prune_in_batches(_PRUNE, batch, delete)

        async def forget_idle_limits(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM rate_limits r WHERE touched_at < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM rate_limit_hits h WHERE h.playbook_name = r.playbook_name "
                "AND h.limit_name = r.limit_name AND h.limit_key = r.limit_key "
                "AND h.per_seconds = r.per_seconds)",
                (float(older_than),),
            )

        await self._run(forget_idle_limits)
        return report


def _batch_document(rows_: list[dict[str, Any]]) -> str | None:
    """``rows_`` as the one JSON document a batched statement reads, or None when a value has no exact
    form there (not JSON, or a NUL, which PostgreSQL text cannot hold: the caller then sends each row
    on its own and gets the driver's own error for it)."""
    try:
        document = _BATCH_ENCODER.encode(rows_)
    except (TypeError, ValueError):
        return None
    return None if "\\u0000" in document else document


async def _cancel_resolved_approvals(conn: Conn, result: MatchResult) -> tuple[str, ...]:
    """Of the approvals ``result`` created, cancel those of a firing alert whose episode has resolved
    already (see :data:`_CANCEL_ALREADY_RESOLVED`); their ids."""
    waiting = awaiting_approval(result)
    if not waiting:
        return ()
    cur = await conn.execute(_CANCEL_ALREADY_RESOLVED, (RESOLVED_REASON, waiting))
    return tuple(row["id"] for row in await cur.fetchall())


async def _claim_dedupe_keys(conn: Conn, keyed: list[tuple[ExecutionRequest, str]]) -> dict[str, str]:
    """Claim each request's dedupe key for its new execution id; return the id holding each key."""
    claims: list[dict[str, Any]] = [
        {"playbook": r.playbook_name, "key": r.dedupe_key, "id": execution_id, "window": r.dedupe_window}
        for r, execution_id in keyed
    ]
    distinct = len({(claim["playbook"], claim["key"]) for claim in claims}) == len(claims)
    document = _batch_document(claims) if distinct else None
    if document is not None:
        cur = await conn.execute(_DEDUPES, (document,))
        found = await cur.fetchall()
        held = {(row["playbook_name"], row["dedupe_key"]): row["execution_id"] for row in found}
        return {claim["id"]: held[claim["playbook"], claim["key"]] for claim in claims}
    holders: dict[str, str] = {}
    async with conn.pipeline():
        cursors = [conn.cursor() for _ in claims]
        for cursor, claim in zip(cursors, claims, strict=True):
            await cursor.execute(_DEDUPE, claim)
        for cursor, claim in zip(cursors, claims, strict=True):
            row = await cursor.fetchone()
            assert row is not None
            holders[claim["id"]] = row["execution_id"]
    return holders


async def _lock_state(conn: Conn, execution_id: str) -> ExecutionState:
    """The execution's state, its row locked until the transaction ends."""
    cur = await conn.execute("SELECT state FROM executions WHERE id = %s FOR UPDATE", (execution_id,))
    row = await cur.fetchone()
    if row is None:
        raise execution_not_found(execution_id)
    return ExecutionState(row["state"])


_Key = tuple[Any, ...]


def _row_key(sql: str, values: dict[str, Any]) -> _Key:
    """What tells a row of a batched statement apart in its RETURNING rows."""
    if sql is _RELEASE:
        return (values["id"],)
    return (values["id"], values["index"], values["attempt"])


async def _write_batched(conn: Conn, writes: Sequence[_Write]) -> list[Rows] | None:
    """Write a group with one statement per kind of write instead of one per write.

    In the order a single write makes them (final records, then started records, then releases),
    each row fenced by its own lease as in the single statements. A few statements instead of three
    per execution: the driver's cost per statement was most of the runner's journal cost. Returns
    None, having sent nothing, when the group does not lend itself to that (a statement of another
    kind, a write whose statements are in another order, two rows with one key); the caller then
    sends each statement on its own, in the same transaction."""
    order = list(_BATCHED)
    batches: dict[str, list[dict[str, Any]]] = {sql: [] for sql in order}
    keys: dict[str, set[_Key]] = {sql: set() for sql in order}
    for write in writes:
        last = -1
        for sql, values in write.statements:
            if sql not in batches or order.index(sql) < last:
                return None
            last = order.index(sql)
            key = _row_key(sql, values)
            if key in keys[sql]:
                return None
            keys[sql].add(key)
            batches[sql].append(values)
    try:
        documents = {sql: _BATCH_ENCODER.encode(batch) for sql, batch in batches.items() if batch}
    except (TypeError, ValueError):
        return None
    cursors = {}
    for sql, document in documents.items():
        cursors[sql] = conn.cursor()
        await cursors[sql].execute(_BATCHED[sql], (document,))
    written: dict[str, dict[_Key, DictRow]] = {}
    for sql, cursor in cursors.items():
        if sql is _RELEASE:
            written[sql] = {(row["id"],): row for row in await cursor.fetchall()}
        else:
            found = await cursor.fetchall()
            written[sql] = {(row["execution_id"], row["step_index"], row["attempt"]): row for row in found}
    return [
        tuple(written[sql].get(_row_key(sql, values)) for sql, values in write.statements) for write in writes
    ]


async def _write_alone(conn: Conn, write: _Write) -> Rows:
    """One write in its own transaction; a partly written one is rolled back and returns no rows."""
    if not write.then:
        cur = await conn.execute(write.sql, write.values)
        return (await cur.fetchone(),)
    found: list[DictRow | None] = []
    async with conn.transaction() as transaction:
        for sql, values in write.statements:
            cur = await conn.execute(sql, values)
            found.append(await cur.fetchone())
        if _partial(tuple(found)):
            raise psycopg.Rollback(transaction)
    if _partial(tuple(found)):
        return tuple(None for _ in found)
    return tuple(found)
