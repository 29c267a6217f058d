"""The embedded journal: one SQLite file, so that ``kurative serve`` needs no database server.

One process owns the file. Every call runs on a single dedicated thread with one connection, which
keeps blocking sqlite3 calls off the event loop and makes every transaction naturally serialized (so
no row locks are needed where PostgreSQL uses them). WAL mode lets the CLI read (and prune) while the
daemon writes; the busy timeout makes a brief lock wait rather than fail. ``synchronous=FULL``: an
alert is acknowledged only once it is on disk. Times are the host clock, in epoch seconds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from kurative.errors import JournalError, JournalUnavailable
from kurative.journal import rows
from kurative.journal.backend import (
    DEDUPE_KEY_HELD,
    LAST_WORD,
    RESOLVED_REASON,
    CleanFinish,
    CleanRelease,
    CleanStart,
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
from kurative.journal.encoding import DEFAULT_LIMITS, JournalLimits, PreparedAlert, new_id
from kurative.journal.episodes import Episode, join_episodes, joining, last_episode
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

_FINISHED = tuple(sorted(state.value for state in FINISHED_STATES))
_FINISHED_SQL = ", ".join(f"'{state}'" for state in _FINISHED)


def _to_time(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _from_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


CODEC = rows.Codec(time=_to_time, json=_from_json)


def _now() -> float:
    """Epoch seconds rounded to the microsecond, so that a time read back as a datetime and passed
    in again (a list filter) compares equal to the stored one."""
    return round(time.time(), 6)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else round(moment.timestamp(), 6)


class SQLiteJournal(JournalBackend):
    """The :class:`kurative.journal.base.Journal` on one SQLite file."""

    backend = "sqlite"
    placeholder = "?"
    alert_order = "rowid"

    def __init__(
        self,
        path: str,
        *,
        url: str,
        limits: JournalLimits = DEFAULT_LIMITS,
        busy_timeout: float = 5.0,
        group_commit: bool = True,
    ) -> None:
        super().__init__(url=url, limits=limits, group_commit=group_commit, flushers=1)
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kurative-journal")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._path != ":memory:":
                parent = Path(self._path).parent
                if not parent.is_dir():
                    raise JournalUnavailable(
                        f"the journal at {self._url} cannot be opened: directory {parent} does not exist"
                    )
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
        return self._conn

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connect())
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if any(word in text for word in ("locked", "busy", "unable to open", "disk I/O", "readonly")):
                raise JournalUnavailable(f"the journal at {self._url} is unavailable: {text}") from exc
            raise JournalError(f"journal operation failed on {self._url}: {text}") from exc
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal operation failed on {self._url}: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise JournalUnavailable(f"the journal at {self._url} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (busy, I/O error) leaves the transaction open; some errors end it already
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def connect(self) -> None:
        """Open the file (creating it) and check that it answers."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._closed:
            return
        if self._committer is not None:
            await self._committer.close()
        self._closed = True

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- schema -------------------------------------------------------------------------------------

    @staticmethod
    def _current_version(conn: sqlite3.Connection) -> tuple[int, ...]:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_VERSION_TABLE,)
        ).fetchone()
        if exists is None:
            return ()
        return tuple(
            r[0]
            for r in conn.execute(f"SELECT version FROM {SCHEMA_VERSION_TABLE} ORDER BY version")  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        )

    async def _applied_versions(self) -> tuple[int, ...]:
        return await self._run(self._current_version)

    async def _apply_migrations(self, migrations: Sequence[Migration]) -> tuple[int, ...]:
        def apply(conn: sqlite3.Connection) -> tuple[int, ...]:
            with self._transaction(conn):
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} ("
                    "version integer PRIMARY KEY, name text NOT NULL, "
                    "applied_at real NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))"
                )
            newly: list[int] = []
            for migration in migrations:
                with self._transaction(conn):
                    current = max(self._current_version(conn), default=0)
                    check_version(current, len(migrations), self._url, migrating=True)
                    if migration.version <= current:
                        continue
                    # executescript would commit first; run statement by statement in our transaction
                    for statement in _split_sql(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (migration.version, migration.name, _now()),
                    )
                newly.append(migration.version)
            current = max(self._current_version(conn), default=0)
            check_version(current, len(migrations), self._url, migrating=True)
            return tuple(newly)

        return await self._run(apply)

    async def now(self) -> datetime:
        return _to_time(_now())

    # -- alert inbox --------------------------------------------------------------------------------

    async def _flush_alerts(self, prepared: list[PreparedAlert]) -> None:
        fingerprints = joining(prepared)

        def insert(conn: sqlite3.Connection) -> None:
            now = _now()
            with self._transaction(conn):
                last: dict[str, Episode] = {}
                for fingerprint in fingerprints:  # one transaction at a time: nobody commits meanwhile
                    # the last committed, whatever the clock said (it may have stepped back since)
                    newest = conn.execute(
                        "SELECT status, starts_at FROM alerts WHERE fingerprint = ? "
                        "ORDER BY rowid DESC LIMIT 1",
                        (fingerprint,),
                    ).fetchone()
                    if newest is not None and newest["starts_at"] is not None:
                        last[fingerprint] = last_episode(newest["status"], _to_time(newest["starts_at"]))
                starts = join_episodes(prepared, last, _to_time(now))
                conn.executemany(
                    "INSERT INTO alerts (id, fingerprint, status, alertname, labels, payload, source, "
                    "sanitized, received_at, starts_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    [
                        (
                            a.id,
                            a.fingerprint,
                            a.status,
                            a.alertname,
                            a.labels_json,
                            a.payload_json,
                            a.source,
                            int(a.sanitized),
                            now,
                            _epoch(start),
                        )
                        for a, start in zip(prepared, starts, strict=True)
                    ],
                )

        await self._run(insert)

    async def get_alert(self, alert_id: str) -> StoredAlert:
        def read(conn: sqlite3.Connection) -> StoredAlert:
            row = conn.execute(
                f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE id = ?",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                (alert_id,),
            ).fetchone()
            if row is None:
                raise alert_not_found(alert_id)
            return rows.alert_from_row(row, CODEC)

        return await self._run(read)

    # -- ruleset versions ---------------------------------------------------------------------------

    async def record_playbooks(
        self, versions: Sequence[PlaybookVersion]
    ) -> tuple[PlaybookVersionConflict, ...]:
        checked = self._clean_playbooks(versions)

        def record(conn: sqlite3.Connection) -> tuple[PlaybookVersionConflict, ...]:
            conflicts: list[PlaybookVersionConflict] = []
            now = _now()
            with self._transaction(conn):
                for name, version, content_hash, body in checked:
                    known = conn.execute(
                        "SELECT content_hash FROM playbook_versions WHERE name = ? AND version = ?",
                        (name, version),
                    ).fetchone()
                    if known is None:
                        conn.execute(
                            "INSERT INTO playbook_versions (name, version, content_hash, body, recorded_at) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (name, version, content_hash, body, now),
                        )
                    elif known[0] != content_hash:
                        conflicts.append(
                            PlaybookVersionConflict(name or "", version, known[0], content_hash or "")
                        )
            return tuple(conflicts)

        return await self._run(record)

    async def get_playbook(self, name: str, version: int, content_hash: str) -> PlaybookVersion:
        def read(conn: sqlite3.Connection) -> PlaybookVersion:
            row = conn.execute(
                "SELECT name, version, content_hash, body FROM playbook_versions "
                "WHERE name = ? AND version = ? AND content_hash = ?",
                (name, version, content_hash),
            ).fetchone()
            if row is None:
                raise playbook_not_found(name, version, content_hash)
            return rows.playbook_from_row(row)

        return await self._run(read)

    # -- executions ---------------------------------------------------------------------------------

    async def _create_executions(
        self, alert_id: str, requests: Sequence[ExecutionRequest]
    ) -> tuple[CreationOutcome, ...]:
        def create(conn: sqlite3.Connection) -> tuple[CreationOutcome, ...]:
            outcomes: list[CreationOutcome] = []
            with self._transaction(conn):
                now = _now()
                alert = conn.execute(
                    "UPDATE alerts SET matched_at = coalesce(matched_at, ?), ruleset = coalesce(ruleset, '') "
                    "WHERE id = ? RETURNING fingerprint",
                    (now, alert_id),
                ).fetchone()
                if alert is None:
                    raise alert_not_found(alert_id)
                for request in requests:
                    outcomes.append(self._create_one(conn, alert_id, alert[0], request, now))
            return tuple(outcomes)

        return await self._run(create)

    async def _unmatched_alerts(self, limit: int) -> tuple[StoredAlert, ...]:
        def read(conn: sqlite3.Connection) -> tuple[StoredAlert, ...]:
            found = conn.execute(
                f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE matched_at IS NULL "
                "ORDER BY received_at, rowid LIMIT ?",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                (limit,),
            ).fetchall()
            return tuple(rows.alert_from_row(row, CODEC) for row in found)

        return await self._run(read)

    async def _match_alerts(
        self, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], ruleset: str
    ) -> MatchResult:
        def match(conn: sqlite3.Connection) -> MatchResult:
            outcomes: list[tuple[CreationOutcome, ...]] = []
            cancelled: list[str] = []
            now = _now()
            with self._transaction(conn):
                for alert_id, requests in matches:
                    alert = conn.execute(
                        "UPDATE alerts SET matched_at = ?, ruleset = ? WHERE id = ? AND matched_at IS NULL "
                        "RETURNING fingerprint, status",
                        (now, ruleset, alert_id),
                    ).fetchone()
                    if alert is None:
                        outcomes.append(())
                        continue
                    outcomes.append(
                        tuple(
                            self._create_one(conn, alert_id, alert[0], request, now) for request in requests
                        )
                    )
                    if alert[1] == "resolved":
                        # its episode's approvals of firing alerts (or an older episode's), not a later
                        # episode's (a resolved notification can arrive late: a retry), nor those of
                        # playbooks that a resolution starts
                        found = conn.execute(
                            "UPDATE executions SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                            "error = ? WHERE alert_fingerprint = ? AND state = 'awaiting_approval' "
                            "AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = executions.alert_id "
                            "AND a.status = 'firing' AND coalesce(a.starts_at "
                            "<= (SELECT r.starts_at FROM alerts r WHERE r.id = ?), 1)) RETURNING id",
                            (now, now, RESOLVED_REASON, alert[0], alert_id),
                        ).fetchall()
                        cancelled.extend(r[0] for r in found)
                waiting = awaiting_approval(MatchResult(tuple(outcomes)))
                if waiting:
                    # a firing alert matched after its resolved notification was committed (matched
                    # first, or a late retry of the firing one): its approvals are cancelled at once
                    found = conn.execute(
                        "UPDATE executions SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                        "error = ? WHERE state = 'awaiting_approval' "
                        "AND id IN (SELECT value FROM json_each(?)) "
                        "AND EXISTS (SELECT 1 FROM alerts a JOIN alerts r ON r.fingerprint = a.fingerprint "
                        "WHERE a.id = executions.alert_id AND a.status = 'firing' AND r.status = 'resolved' "
                        "AND (r.starts_at = a.starts_at OR (r.starts_at > a.starts_at "
                        "AND r.rowid > a.rowid))) RETURNING id",
                        (now, now, RESOLVED_REASON, json.dumps(waiting)),
                    ).fetchall()
                    cancelled.extend(r[0] for r in found)
            return MatchResult(tuple(outcomes), tuple(sorted(cancelled)))

        return await self._run(match)

    def _create_one(
        self, conn: sqlite3.Connection, alert_id: str, fingerprint: str, request: ExecutionRequest, now: float
    ) -> CreationOutcome:
        execution_id = new_id()
        conn.execute("SAVEPOINT request")
        try:
            if request.dedupe_key is not None:
                live = conn.execute(
                    "SELECT execution_id, expires_at FROM dedupe_keys "
                    "WHERE playbook_name = ? AND dedupe_key = ?",
                    (request.playbook_name, request.dedupe_key),
                ).fetchone()
                if live is not None and (live["expires_at"] is None or live["expires_at"] > now):
                    conn.execute(
                        "UPDATE dedupe_keys SET last_seen_at = ? WHERE playbook_name = ? AND dedupe_key = ?",
                        (now, request.playbook_name, request.dedupe_key),
                    )
                    conn.execute("RELEASE request")
                    return CreationOutcome(request, CreationStatus.DEDUPLICATED, live["execution_id"])
                expires = None if request.dedupe_window is None else now + request.dedupe_window
                conn.execute(
                    "INSERT INTO dedupe_keys (playbook_name, dedupe_key, execution_id, expires_at, "
                    "last_seen_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (playbook_name, dedupe_key) DO UPDATE "
                    "SET execution_id = excluded.execution_id, expires_at = excluded.expires_at, "
                    "last_seen_at = excluded.last_seen_at",
                    (request.playbook_name, request.dedupe_key, execution_id, expires, now),
                )
            limits = sorted(request.limits, key=lambda lim: (lim.name, lim.key, lim.per))
            for limit in limits:
                conn.execute(
                    "INSERT INTO rate_limits (playbook_name, limit_name, limit_key, per_seconds, touched_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET touched_at = excluded.touched_at",
                    (request.playbook_name, limit.name, limit.key, limit.per, now),
                )
                (count,) = conn.execute(
                    "SELECT count(*) FROM rate_limit_hits WHERE playbook_name = ? AND limit_name = ? "
                    "AND limit_key = ? AND per_seconds = ? AND hit_at > ?",
                    (request.playbook_name, limit.name, limit.key, limit.per, now - limit.per),
                ).fetchone()
                if count >= limit.max:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    return CreationOutcome(request, CreationStatus.RATE_LIMITED, None, limit)
            for limit in limits:
                conn.execute(
                    "INSERT INTO rate_limit_hits (playbook_name, limit_name, limit_key, per_seconds, "
                    "execution_id, hit_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.playbook_name,
                        limit.name,
                        limit.key,
                        limit.per,
                        execution_id,
                        now,
                        now + limit.per,
                    ),
                )
            state = ExecutionState.AWAITING_APPROVAL if request.requires_approval else ExecutionState.PENDING
            conn.execute(
                "INSERT INTO executions (seq, id, alert_id, alert_fingerprint, playbook_name, "
                "playbook_version, playbook_hash, state, dry_run, dedupe_key, available_at, created_at, "
                "updated_at) VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM executions), "
                "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    execution_id,
                    alert_id,
                    fingerprint,
                    request.playbook_name,
                    request.playbook_version,
                    request.playbook_hash,
                    state.value,
                    int(request.dry_run),
                    request.dedupe_key,
                    now,
                    now,
                    now,
                ),
            )
        except BaseException:
            conn.execute("ROLLBACK TO request")
            conn.execute("RELEASE request")
            raise
        conn.execute("RELEASE request")
        return CreationOutcome(request, CreationStatus.CREATED, execution_id)

    async def _claim_executions(self, owner_text: str, limit: int, lease_seconds: float) -> tuple[Claim, ...]:
        def claim(conn: sqlite3.Connection) -> tuple[Claim, ...]:
            claims: list[Claim] = []
            with self._transaction(conn):
                now = _now()
                picked = conn.execute(
                    "SELECT id, state, lease_owner FROM executions "
                    "WHERE (state = 'pending' AND available_at <= ?) "
                    "OR (state = 'running' AND lease_expires_at <= ?) ORDER BY seq LIMIT ?",
                    (now, now, limit),
                ).fetchall()
                for row in picked:
                    updated = conn.execute(
                        f"UPDATE executions SET state = 'running', lease_owner = ?, lease_expires_at = ?, "
                        "attempt = attempt + 1, started_at = coalesce(started_at, ?), updated_at = ?, "
                        "error = CASE WHEN cancel_requested THEN error END "  # a cancel's who and why stay
                        f"WHERE id = ? RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (owner_text, now + lease_seconds, now, now, row["id"]),
                    ).fetchone()
                    claims.append(rows.claim_from_row(updated, CODEC, row["state"], row["lease_owner"]))
            return tuple(claims)

        return await self._run(claim)

    async def _renew_lease(self, lease: Lease, lease_seconds: float) -> Lease:
        def renew(conn: sqlite3.Connection) -> Lease:
            now = _now()
            row = conn.execute(
                "UPDATE executions SET lease_expires_at = ?, updated_at = ? WHERE id = ? "
                "AND lease_owner = ? AND attempt = ? AND state = 'running' "
                "RETURNING lease_expires_at, cancel_requested",
                (now + lease_seconds, now, lease.execution_id, lease.owner, lease.attempt),
            ).fetchone()
            if row is None:
                raise lease_lost(lease)
            return rows.renewed_lease(lease, row, CODEC)

        return await self._run(renew)

    async def _release_execution(
        self, lease: Lease, state: ExecutionState, error: str | None, delay: float
    ) -> Execution:
        def release(conn: sqlite3.Connection) -> Execution:
            return _release(conn, lease, CleanRelease(state, error, delay))

        return await self._run(release)

    def _check_lease(self, conn: sqlite3.Connection, lease: Lease) -> bool:
        """Raise :class:`LeaseLost` unless ``lease`` is held; whether a cancel was requested."""
        held = conn.execute(
            "SELECT cancel_requested FROM executions "
            "WHERE id = ? AND lease_owner = ? AND attempt = ? AND state = 'running'",
            (lease.execution_id, lease.owner, lease.attempt),
        ).fetchone()
        if held is None:
            raise lease_lost(lease)
        return bool(held[0])

    async def record_step_started(self, lease: Lease, step: StepStart) -> int:
        clean = self._clean_start(step)

        def insert(conn: sqlite3.Connection) -> sqlite3.Cursor:
            return _insert_started(conn, lease, step, clean)

        return await self._record_step(lease, step, "started", insert)

    async def record_step_finished(self, lease: Lease, step: StepFinish) -> int:
        clean = self._clean_finish(step)

        def insert(conn: sqlite3.Connection) -> sqlite3.Cursor:
            return _insert_finished(conn, lease, step, clean)

        return await self._record_step(lease, step, "finished", insert)

    async def _record_step(
        self,
        lease: Lease,
        step: StepStart | StepFinish,
        what: str,
        insert: Callable[[sqlite3.Connection], sqlite3.Cursor],
    ) -> int:
        """Run ``insert`` only while ``lease`` is held; a second record of one step attempt conflicts."""

        def record(conn: sqlite3.Connection) -> int:
            with self._transaction(conn):
                self._check_lease(conn, lease)
                try:
                    cursor = insert(conn)
                except sqlite3.IntegrityError:
                    raise step_twice(lease, step.name, step.attempt, what) from None
                return int(cursor.lastrowid or 0)

        return await self._run(record)

    async def _record_steps(self, lease: Lease, steps: StepsToRecord) -> StepsWritten:
        def record(conn: sqlite3.Connection) -> StepsWritten:
            with self._transaction(conn):
                cancel = self._check_lease(conn, lease)
                finished: list[int] = []
                for step, clean in steps.finished:
                    try:
                        cursor = _insert_finished(conn, lease, step, clean)
                    except sqlite3.IntegrityError:
                        if not finished and (again := _written_before(conn, lease, steps)) is not None:
                            return again
                        raise step_twice(lease, step.name, step.attempt, "finished") from None
                    finished.append(int(cursor.lastrowid or 0))
                started = None
                if steps.started is not None:
                    start, clean_start = steps.started
                    try:
                        cursor = _insert_started(conn, lease, start, clean_start)
                    except sqlite3.IntegrityError:
                        if not finished and (again := _written_before(conn, lease, steps)) is not None:
                            return again
                        raise step_twice(lease, start.name, start.attempt, "started") from None
                    started = int(cursor.lastrowid or 0)
                execution = _release(conn, lease, steps.release) if steps.release is not None else None
            return StepsWritten(tuple(finished), started, execution, cancel and started is not None)

        return await self._run(record)

    @staticmethod
    def _stored_time(moment: datetime) -> Any:
        return _epoch(moment)

    async def _list_executions(self, sql: str, params: list[Any], limit: int) -> Page:
        def read(conn: sqlite3.Connection) -> Page:
            return rows.page_from_rows(conn.execute(sql, params).fetchall(), limit, CODEC)

        return await self._run(read)

    async def _read_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(sql, list(params)).fetchall()]

        return await self._run(read)

    async def _list_alerts(self, sql: str, params: list[Any], limit: int) -> AlertPage:
        def read(conn: sqlite3.Connection) -> AlertPage:
            return rows.alert_page_from_rows(conn.execute(sql, params).fetchall(), limit, CODEC)

        return await self._run(read)

    async def get_execution(self, execution_id: str) -> ExecutionDetail:
        execution_sql, steps_sql, approvals_sql = rows.detail_queries(self.placeholder)

        def read(conn: sqlite3.Connection) -> ExecutionDetail:
            conn.execute("BEGIN")
            try:
                row = conn.execute(execution_sql, (execution_id,)).fetchone()
                if row is None:
                    raise execution_not_found(execution_id)
                steps = conn.execute(steps_sql, (execution_id,)).fetchall()
                approvals = conn.execute(approvals_sql, (execution_id,)).fetchall()
            finally:
                conn.execute("COMMIT")
            return rows.detail_from_rows(row, steps, approvals, CODEC)

        return await self._run(read)

    async def _record_approval(
        self, execution_id: str, decision: Decision, who_text: str, reason_text: str
    ) -> Approval:
        def record(conn: sqlite3.Connection) -> Approval:
            with self._transaction(conn):
                state = _read_state(conn, execution_id)
                if state is not ExecutionState.AWAITING_APPROVAL:
                    raise not_awaiting_approval(execution_id, state)
                now = _now()
                conn.execute(
                    "INSERT INTO approvals (execution_id, decision, who, reason, decided_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (execution_id, decision.value, who_text, reason_text, now),
                )
                approved = decision is Decision.APPROVED
                conn.execute(
                    "UPDATE executions SET state = ?, updated_at = ?, available_at = ?, finished_at = ?, "
                    "error = ? WHERE id = ?",
                    (
                        (ExecutionState.PENDING if approved else ExecutionState.CANCELLED).value,
                        now,
                        now,
                        None if approved else now,
                        None if approved else rejected_by(who_text, reason_text),
                        execution_id,
                    ),
                )
            return Approval(execution_id, decision, who_text, reason_text, _to_time(now))

        return await self._run(record)

    async def _cancel_execution(self, execution_id: str, who_text: str, reason_text: str) -> Execution:
        def cancel(conn: sqlite3.Connection) -> Execution:
            with self._transaction(conn):
                state = _read_state(conn, execution_id)
                if state.finished:
                    raise already_finished(execution_id, state)
                now = _now()
                if state is ExecutionState.RUNNING:
                    updated = conn.execute(
                        "UPDATE executions SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ? "
                        f"RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (cancelled_by(who_text, reason_text), now, execution_id),
                    ).fetchone()
                else:
                    updated = conn.execute(
                        "UPDATE executions SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                        f"error = ? WHERE id = ? RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
                        (now, now, cancelled_by(who_text, reason_text), execution_id),
                    ).fetchone()
            return rows.execution_from_row(updated, CODEC)

        return await self._run(cancel)

    async def _expire_approval(self, execution_id: str) -> bool:
        def expire(conn: sqlite3.Connection) -> bool:
            now = _now()
            with self._transaction(conn):
                found = conn.execute(
                    "UPDATE executions SET state = 'pending', available_at = ?, updated_at = ? "
                    "WHERE id = ? AND state = 'awaiting_approval' RETURNING id",
                    (now, now, execution_id),
                ).fetchone()
            return found is not None

        return await self._run(expire)

    async def _cancel_awaiting_approval(
        self, alert_fingerprint: str, reason_text: str | None
    ) -> tuple[str, ...]:
        def cancel(conn: sqlite3.Connection) -> tuple[str, ...]:
            now = _now()
            with self._transaction(conn):
                found = conn.execute(
                    "UPDATE executions SET state = 'cancelled', finished_at = ?, updated_at = ?, error = ? "
                    "WHERE alert_fingerprint = ? AND state = 'awaiting_approval' RETURNING id",
                    (now, now, reason_text, alert_fingerprint),
                ).fetchall()
            return tuple(sorted(r[0] for r in found))

        return await self._run(cancel)

    # -- retention ----------------------------------------------------------------------------------

    async def prune(self, older_than: float, *, batch: int = 1000) -> PruneReport:
        statements = (
            (
                "executions",
                "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE state IN "
                f"({_FINISHED_SQL}) AND finished_at < :cutoff LIMIT :batch)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
            ),
            (
                "alerts",
                "DELETE FROM alerts WHERE id IN (SELECT a.id FROM alerts a WHERE a.received_at < :cutoff "
                "AND a.matched_at IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.alert_id = a.id) "
                f"AND NOT {LAST_WORD.format(order='rowid')} LIMIT :batch)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
            ),
            (
                "dedupe_keys",
                "DELETE FROM dedupe_keys WHERE rowid IN (SELECT rowid FROM dedupe_keys WHERE "
                "((expires_at IS NOT NULL AND expires_at <= :now) OR "
                f"(expires_at IS NULL AND last_seen_at < :cutoff)) AND NOT {DEDUPE_KEY_HELD} LIMIT :batch)",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
            ),
            (
                "limit_hits",
                "DELETE FROM rate_limit_hits WHERE rowid IN (SELECT rowid FROM rate_limit_hits "
                "WHERE expires_at <= :now LIMIT :batch)",
            ),
        )

        def delete(conn: sqlite3.Connection, field: str, sql: str) -> int:
            now = _now()
            with self._transaction(conn):
                cursor = conn.execute(sql, {"cutoff": now - older_than, "now": now, "batch": batch})
                if field == "limit_hits":
                    conn.execute(
                        "DELETE FROM rate_limits WHERE touched_at < ? AND NOT EXISTS (SELECT 1 FROM "
                        "rate_limit_hits h WHERE h.playbook_name = rate_limits.playbook_name AND "
                        "h.limit_name = rate_limits.limit_name AND "
                        "h.limit_key = rate_limits.limit_key)",
                        (now - older_than,),
                    )
            return int(cursor.rowcount)

        async def run(field: str, sql: str) -> int:
            return await self._run(lambda conn: delete(conn, field, sql))

        return await self._prune_in_batches(statements, batch, run)


def _insert_started(
    conn: sqlite3.Connection, lease: Lease, step: StepStart, clean: CleanStart
) -> sqlite3.Cursor:
    return conn.execute(
        "INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, "
        "params, idempotency_key, started_at, lease_attempt) "
        "VALUES (?, ?, ?, ?, ?, 'started', 0, ?, ?, ?, ?)",
        (
            lease.execution_id,
            step.index,
            clean.name,
            clean.action,
            step.attempt,
            clean.params_json,
            clean.idempotency_key,
            _now(),
            lease.attempt,
        ),
    )


def _written_before(conn: sqlite3.Connection, lease: Lease, steps: StepsToRecord) -> StepsWritten | None:
    """:func:`~kurative.journal.backend.written_before` on this execution's stored records."""
    stored = conn.execute(
        "SELECT id, step_index, attempt, final, lease_attempt, status, error, idempotency_key "
        "FROM steps WHERE execution_id = ?",  # the columns of RETRY_CHECK_COLUMNS
        (lease.execution_id,),
    ).fetchall()
    return written_before(steps, lease.attempt, stored)


def _insert_finished(
    conn: sqlite3.Connection, lease: Lease, step: StepFinish, clean: CleanFinish
) -> sqlite3.Cursor:
    started = conn.execute(
        "SELECT action, idempotency_key, started_at FROM steps WHERE execution_id = ? "
        "AND step_index = ? AND attempt = ? AND final = 0",
        (lease.execution_id, step.index, step.attempt),
    ).fetchone()
    return conn.execute(
        "INSERT INTO steps (execution_id, step_index, name, action, attempt, status, final, "
        "params, output, error, idempotency_key, started_at, finished_at, lease_attempt) "
        "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
        (
            lease.execution_id,
            step.index,
            clean.name,
            clean.action or (started["action"] if started else ""),
            step.attempt,
            clean.status.value,
            None,
            clean.output_json,
            clean.error,
            started["idempotency_key"] if started else None,
            started["started_at"] if started else None,
            _now(),
            lease.attempt,
        ),
    )


def _release(conn: sqlite3.Connection, lease: Lease, release: CleanRelease) -> Execution:
    now = _now()
    row = conn.execute(
        # a release to pending or awaiting_approval of an execution someone asked to cancel cancels it;
        # a cancelled one keeps the who and why the request recorded
        "UPDATE executions SET "
        "state = CASE WHEN cancel_requested AND ?2 IN ('pending', 'awaiting_approval') THEN 'cancelled' "
        "ELSE ?2 END, lease_owner = NULL, lease_expires_at = NULL, "
        "error = CASE WHEN ?2 = 'cancelled' OR (cancel_requested AND ?2 IN ('pending', 'awaiting_approval')) "
        "THEN coalesce(error, ?3) ELSE ?3 END, updated_at = ?1, "
        "finished_at = CASE WHEN ?4 OR (cancel_requested AND ?2 IN ('pending', 'awaiting_approval')) "
        "THEN ?1 END, "
        "available_at = ?5 WHERE id = ?6 AND lease_owner = ?7 "
        f"AND attempt = ?8 AND state = 'running' RETURNING {rows.EXECUTION_COLUMNS}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        (
            now,
            release.state.value,
            release.error,
            release.state.finished,
            now + release.delay,
            lease.execution_id,
            lease.owner,
            lease.attempt,
        ),
    ).fetchone()
    if row is None:
        raise lease_lost(lease)
    return rows.execution_from_row(row, CODEC)


def _read_state(conn: sqlite3.Connection, execution_id: str) -> ExecutionState:
    """The execution's state; the caller's immediate transaction keeps it from changing."""
    row = conn.execute("SELECT state FROM executions WHERE id = ?", (execution_id,)).fetchone()
    if row is None:
        raise execution_not_found(execution_id)
    return ExecutionState(row["state"])


def _split_sql(script: str) -> list[str]:
    """Statements of a migration file. Our migrations hold no semicolons inside literals or bodies."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
