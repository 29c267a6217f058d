"""What every journal backend does the same way, written once so that SQLite and PostgreSQL cannot drift.

A backend subclasses :class:`JournalBackend` and keeps only what its database needs: the SQL, its
transactions and its clock. The shared part is the alert inbox's group commit, the schema status and
check, the checking and cleaning of every argument before a transaction starts, the filter of
``list_executions``, the batched prune loop and the wording of every error a caller may act on.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kurative.errors import ExecutionNotFound, JournalConflict, LeaseLost, RecordRejected
from kurative.journal.batching import GroupCommitter
from kurative.journal.encoding import (
    JournalLimits,
    PreparedAlert,
    bounded_text,
    clean_text,
    decode_cursor,
    encode_json,
    prepare_alerts,
    truncate_text,
)
from kurative.journal.models import (
    AlertPage,
    Approval,
    Claim,
    CreationOutcome,
    CreationStatus,
    Decision,
    Execution,
    ExecutionFilter,
    ExecutionRequest,
    ExecutionState,
    IncomingAlert,
    Lease,
    MatchResult,
    Page,
    PlaybookVersion,
    PruneReport,
    Release,
    SchemaStatus,
    StepFinish,
    StepStart,
    StepStatus,
    StepsWritten,
    StoredAlert,
)
from kurative.journal.rows import ALERT_COLUMNS, EXECUTION_COLUMNS
from kurative.journal.schema import Migration, check_version, load_migrations
from kurative.journal.validation import check_lease_seconds, check_page_limit, check_release, check_request

PRUNE_BATCH_MAX = 100_000
SPARE_FLUSHER_AFTER = 0.05
"""Seconds an alert commit may take before a second one starts beside it (see ``_Group``): far
longer than a commit to a healthy database (about 1 ms with fsync on here), short enough that a
commit waiting on a lock or a silent connection holds up the alerts behind it only this long."""
RESOLVED_REASON = "the alert resolved"
"""Why :meth:`match_alerts` cancels an execution that waited for approval."""


def awaiting_approval(result: MatchResult) -> list[str]:
    """The executions ``result`` created in ``awaiting_approval``: those a resolution already in the
    journal may cancel at once (only a firing alert's; a backend checks which alert they are of)."""
    return [
        outcome.execution_id
        for outcomes in result.outcomes
        for outcome in outcomes
        if outcome.status is CreationStatus.CREATED
        and outcome.request.requires_approval
        and outcome.execution_id is not None
    ]


LAST_WORD = (
    "(CASE WHEN a.{order} = (SELECT max(n.{order}) FROM alerts n WHERE n.fingerprint = a.fingerprint) "
    "THEN EXISTS (SELECT 1 FROM alerts o WHERE o.fingerprint = a.fingerprint AND o.{order} < a.{order} "
    "AND (o.matched_at IS NULL OR EXISTS (SELECT 1 FROM executions e WHERE e.alert_id = o.id))) "
    "ELSE false END)"
)
"""SQL true for an alert ``a`` that is the newest of its fingerprint while an older one stays (its
execution is kept, or it is still to be matched): prune keeps it, since the newest alert says whether
the fingerprint's episode is open (see :mod:`kurative.journal.episodes`), and without it the older one
would say so instead (a resolved episode would look open again). ``{order}`` is the insert order,
indexed per fingerprint (migration 5); the older alerts are looked at only for the newest one."""

DEDUPE_KEY_HELD = "EXISTS (SELECT 1 FROM executions e WHERE e.id = dedupe_keys.execution_id)"
"""SQL true while the execution holding a dedupe key is in the journal. Prune keeps such a key whatever
its age: dropping the key of an execution still waiting (for approval, a lease, its retry) or finished
within the retention would let the next repeat of the same firing episode start a second execution."""


@dataclass(frozen=True, slots=True)
class CleanStart:
    """A :class:`StepStart` made storable."""

    name: str | None
    action: str | None
    params_json: str
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class CleanRelease:
    """A :class:`Release` checked: its state, its error cut to size, its delay."""

    state: ExecutionState
    error: str | None
    delay: float


@dataclass(frozen=True, slots=True)
class StepsToRecord:
    """The arguments of :meth:`record_steps`, each record next to its storable form."""

    finished: tuple[tuple[StepFinish, CleanFinish], ...]
    started: tuple[StepStart, CleanStart] | None
    release: CleanRelease | None


RETRY_CHECK_COLUMNS = "id, step_index, attempt, final, lease_attempt, status, error, idempotency_key"
"""The columns of a step record :func:`written_before` compares, in its order."""


def written_before(
    steps: StepsToRecord, lease_attempt: int, stored: Iterable[Sequence[Any]]
) -> StepsWritten | None:
    """The records of ``steps`` when every one of them is stored already, as written, under this very
    lease (``stored``: an execution's step records, :data:`RETRY_CHECK_COLUMNS`): the same write tried
    again after its caller lost sight of it (a PostgreSQL commit that outlasted ``journal.timeout``).
    Anything else — a record missing, another lease's, a different status, error or key — is a step
    recorded twice, and None."""
    if steps.release is not None:
        return None
    found = {(index, attempt, bool(final)): row for row in stored for index, attempt, final in [row[1:4]]}
    ids: list[int] = []
    for step, clean in steps.finished:
        row = found.get((step.index, step.attempt, True))
        if row is None or row[4] != lease_attempt or (row[5], row[6]) != (clean.status.value, clean.error):
            return None
        ids.append(int(row[0]))
    if steps.started is None:
        return StepsWritten(tuple(ids))
    start, clean_start = steps.started
    row = found.get((start.index, start.attempt, False))
    if row is None or row[4] != lease_attempt or row[7] != clean_start.idempotency_key:
        return None
    return StepsWritten(tuple(ids), int(row[0]))


@dataclass(frozen=True, slots=True)
class CleanFinish:
    """A :class:`StepFinish` made storable; ``action`` is empty when the started record names it."""

    status: StepStatus
    name: str | None
    action: str
    output_json: str
    error: str | None


class JournalBackend(abc.ABC):
    """The shared half of a :class:`kurative.journal.base.Journal` implementation."""

    backend: str
    """The folder of its migrations: ``sqlite`` or ``postgresql``."""
    placeholder: str
    """How its SQL marks a parameter."""
    alert_order: str
    """The column that orders the inbox by commit (SQLite's rowid, PostgreSQL's seq)."""

    def __init__(self, *, url: str, limits: JournalLimits, group_commit: bool, flushers: int) -> None:
        self._url = url
        self._limits = limits
        self._committer: GroupCommitter[PreparedAlert] | None = (
            GroupCommitter(self._flush_alerts, concurrency=flushers, spare_after=SPARE_FLUSHER_AFTER)
            if group_commit
            else None
        )

    @property
    def url(self) -> str:
        return self._url

    # -- what each backend writes in its own SQL ---------------------------------------------------

    @abc.abstractmethod
    async def _flush_alerts(self, prepared: list[PreparedAlert]) -> None:
        """Insert prepared alerts in one transaction."""

    @abc.abstractmethod
    async def _applied_versions(self) -> tuple[int, ...]:
        """The migration versions the database has recorded."""

    @abc.abstractmethod
    async def _apply_migrations(self, migrations: Sequence[Migration]) -> tuple[int, ...]:
        """Apply the migrations the database lacks, each in its own transaction; return their versions."""

    @abc.abstractmethod
    async def _create_executions(
        self, alert_id: str, requests: Sequence[ExecutionRequest]
    ) -> tuple[CreationOutcome, ...]: ...

    @abc.abstractmethod
    async def _match_alerts(
        self, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], ruleset: str
    ) -> MatchResult: ...

    @abc.abstractmethod
    async def _unmatched_alerts(self, limit: int) -> tuple[StoredAlert, ...]: ...

    @abc.abstractmethod
    async def _claim_executions(
        self, owner_text: str, limit: int, lease_seconds: float
    ) -> tuple[Claim, ...]: ...

    @abc.abstractmethod
    async def _renew_lease(self, lease: Lease, lease_seconds: float) -> Lease: ...

    @abc.abstractmethod
    async def _release_execution(
        self, lease: Lease, state: ExecutionState, error: str | None, delay: float
    ) -> Execution: ...

    @abc.abstractmethod
    async def _record_steps(self, lease: Lease, steps: StepsToRecord) -> StepsWritten: ...

    @abc.abstractmethod
    async def _list_executions(self, sql: str, params: list[Any], limit: int) -> Page:
        """Run the query of :func:`select_executions`."""

    @staticmethod
    @abc.abstractmethod
    def _stored_time(moment: datetime) -> Any:
        """A datetime as the database stores it, for comparisons in SQL."""

    @abc.abstractmethod
    async def _record_approval(
        self, execution_id: str, decision: Decision, who_text: str, reason_text: str
    ) -> Approval: ...

    @abc.abstractmethod
    async def _cancel_execution(self, execution_id: str, who_text: str, reason_text: str) -> Execution: ...

    @abc.abstractmethod
    async def _expire_approval(self, execution_id: str) -> bool: ...

    @abc.abstractmethod
    async def _cancel_awaiting_approval(
        self, alert_fingerprint: str, reason_text: str | None
    ) -> tuple[str, ...]: ...

    @abc.abstractmethod
    async def _list_alerts(self, sql: str, params: list[Any], limit: int) -> AlertPage:
        """Run the query of :func:`select_alerts`."""

    @abc.abstractmethod
    async def _read_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read-only query and return its rows as tuples."""

    # -- schema -------------------------------------------------------------------------------------

    async def schema_status(self) -> SchemaStatus:
        latest = len(load_migrations(self.backend))
        applied = await self._applied_versions()
        return SchemaStatus(current=max(applied, default=0), latest=latest, applied=applied)

    async def check_schema(self) -> None:
        status = await self.schema_status()
        check_version(status.current, status.latest, self._url, migrating=False)

    async def migrate(self) -> SchemaStatus:
        newly = await self._apply_migrations(load_migrations(self.backend))
        status = await self.schema_status()
        return SchemaStatus(current=status.current, latest=status.latest, applied=newly)

    # -- alert inbox --------------------------------------------------------------------------------

    async def commit_alerts(self, alerts: Sequence[IncomingAlert]) -> tuple[str, ...]:
        prepared = prepare_alerts(alerts, self._limits)
        if not prepared:
            return ()
        if self._committer is not None:
            await self._committer.submit(prepared)
        else:
            await self._flush_alerts(prepared)
        return tuple(alert.id for alert in prepared)

    # -- executions: every argument checked before any transaction --------------------------------

    async def create_executions(
        self, alert_id: str, requests: Sequence[ExecutionRequest]
    ) -> tuple[CreationOutcome, ...]:
        for request in requests:
            check_request(request, self._limits)
        return await self._create_executions(alert_id, requests)

    def check_request(self, request: ExecutionRequest) -> None:
        check_request(request, self._limits)

    async def match_alerts(
        self, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], ruleset: str
    ) -> MatchResult:
        for _, requests in matches:
            for request in requests:
                check_request(request, self._limits)
        if not matches:
            return MatchResult(())
        return await self._match_alerts(matches, self._clean(ruleset, "ruleset") or "")

    async def unmatched_alerts(self, *, limit: int = 500) -> tuple[StoredAlert, ...]:
        check_page_limit(limit)
        return await self._unmatched_alerts(limit)

    async def claim_executions(
        self, owner: str, *, limit: int = 1, lease_seconds: float = 30.0
    ) -> tuple[Claim, ...]:
        owner_text = self._clean(owner, "lease owner") or ""
        check_lease_seconds(lease_seconds)
        check_page_limit(limit)
        return await self._claim_executions(owner_text, limit, lease_seconds)

    async def renew_lease(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease_seconds(lease_seconds)
        return await self._renew_lease(lease, lease_seconds)

    async def release_execution(
        self,
        lease: Lease,
        state: ExecutionState,
        *,
        error: str | None = None,
        delay: float = 0.0,
    ) -> Execution:
        checked = check_release(state, delay)
        return await self._release_execution(
            lease, checked, truncate_text(error, self._limits.max_text_chars), delay
        )

    async def record_steps(
        self,
        lease: Lease,
        *,
        finished: Sequence[StepFinish] = (),
        started: StepStart | None = None,
        release: Release | None = None,
    ) -> StepsWritten:
        if not finished and started is None and release is None:
            raise RecordRejected("record_steps needs a record or a release to write")
        seen: set[tuple[int, int]] = set()
        for step in finished:
            if (step.index, step.attempt) in seen:
                raise step_twice(lease, step.name, step.attempt, "finished")
            seen.add((step.index, step.attempt))
        clean_release = None
        if release is not None:
            state = check_release(release.state, release.delay)
            error = truncate_text(release.error, self._limits.max_text_chars)
            clean_release = CleanRelease(state, error, float(release.delay))
        steps = StepsToRecord(
            finished=tuple((step, self._clean_finish(step)) for step in finished),
            started=(started, self._clean_start(started)) if started is not None else None,
            release=clean_release,
        )
        return await self._record_steps(lease, steps)

    async def list_executions(
        self,
        where: ExecutionFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        sql, params = select_executions(where, cursor, limit, mark=self.placeholder, time=self._stored_time)
        return await self._list_executions(sql, params, limit)

    async def count_unfinished(self) -> Mapping[ExecutionState, int]:
        states = [state.value for state in ExecutionState if not state.finished]
        marks = ", ".join([self.placeholder] * len(states))
        sql = f"SELECT state, count(*) FROM executions WHERE state IN ({marks}) GROUP BY state"  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        found = dict.fromkeys((ExecutionState(s) for s in states), 0)
        for state, count in await self._read_rows(sql, states):
            found[ExecutionState(state)] = int(count)
        return found

    async def record_approval(
        self, execution_id: str, decision: Decision, who: str, reason: str = ""
    ) -> Approval:
        decision = Decision(decision)
        who_text, reason_text = self._who_and_reason(who, reason, "approver")
        return await self._record_approval(execution_id, decision, who_text, reason_text)

    async def cancel_execution(self, execution_id: str, who: str, reason: str = "") -> Execution:
        who_text, reason_text = self._who_and_reason(who, reason, "who")
        return await self._cancel_execution(execution_id, who_text, reason_text)

    async def expire_approval(self, execution_id: str) -> bool:
        return await self._expire_approval(execution_id)

    async def cancel_awaiting_approval(self, alert_fingerprint: str, reason: str) -> tuple[str, ...]:
        return await self._cancel_awaiting_approval(
            alert_fingerprint, truncate_text(reason, self._limits.max_text_chars)
        )

    async def list_alerts(
        self,
        *,
        alertname: str | None = None,
        fingerprint: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlertPage:
        sql, params = select_alerts(
            alertname, fingerprint, cursor, limit, mark=self.placeholder, order=self.alert_order
        )
        return await self._list_alerts(sql, params, limit)

    # -- arguments, cleaned before any transaction --------------------------------------------------

    def _clean(self, text: str | None, what: str) -> str | None:
        return clean_text(text, what, self._limits.max_text_chars)

    def _clean_playbooks(
        self, versions: Sequence[PlaybookVersion]
    ) -> list[tuple[str | None, int, str | None, str]]:
        return [
            (
                self._clean(v.name, "playbook name"),
                int(v.version),
                self._clean(v.content_hash, "content hash"),
                bounded_text(v.body, f"playbook {v.name} body", self._limits.max_record_bytes),
            )
            for v in versions
        ]

    def _clean_start(self, step: StepStart) -> CleanStart:
        params_json, _ = encode_json(step.params, f"step {step.name} params", self._limits.max_record_bytes)
        return CleanStart(
            name=self._clean(step.name, "step name"),
            action=self._clean(step.action, "step action"),
            params_json=params_json,
            idempotency_key=self._clean(step.idempotency_key, "idempotency key"),
        )

    def _clean_finish(self, step: StepFinish) -> CleanFinish:
        status = StepStatus(step.status)
        if status is StepStatus.STARTED:
            raise JournalConflict("record_step_finished needs a final status, not 'started'")
        output_json, _ = encode_json(step.output, f"step {step.name} output", self._limits.max_record_bytes)
        return CleanFinish(
            status=status,
            name=self._clean(step.name, "step name"),
            action=self._clean(step.action, "step action") or "",
            output_json=output_json,
            error=truncate_text(step.error, self._limits.max_record_bytes),
        )

    def _who_and_reason(self, who: str, reason: str, what: str) -> tuple[str, str]:
        """The person acting on an execution (``what`` names the argument) and their reason."""
        # a reason is kept whole (refused past the record limit), as its limit says
        return self._clean(who, what) or "", bounded_text(
            reason or "", "reason", self._limits.max_record_bytes
        )

    # -- retention ----------------------------------------------------------------------------------

    @staticmethod
    async def _prune_in_batches(
        statements: Iterable[tuple[str, str]], batch: int, delete: Callable[[str, str], Awaitable[int]]
    ) -> PruneReport:
        """Run each ``(field, sql)`` through ``delete`` until a round deletes fewer than ``batch`` rows."""
        check_page_limit(batch, what="batch", maximum=PRUNE_BATCH_MAX)
        report = PruneReport()
        for field, sql in statements:
            while True:
                deleted = await delete(field, sql)
                report = report + PruneReport(**{field: deleted})
                if deleted < batch:
                    break
        return report


def select_executions(
    where: ExecutionFilter | None,
    cursor: str | None,
    limit: int,
    *,
    mark: str,
    time: Callable[[datetime], Any],
) -> tuple[str, list[Any]]:
    """The ``list_executions`` query, one row more than ``limit`` to tell whether a next page exists.

    ``mark`` is the dialect's parameter placeholder; ``time`` turns a datetime into a stored time.
    """
    check_page_limit(limit)
    where = where or ExecutionFilter()
    clauses: list[str] = []
    params: list[Any] = []
    if cursor is not None:
        clauses.append(f"seq < {mark}")
        params.append(decode_cursor(cursor))
    if where.states:
        clauses.append(f"state IN ({', '.join(mark for _ in where.states)})")
        params.extend(ExecutionState(s).value for s in where.states)
    for column, value in (
        ("playbook_name =", where.playbook_name),
        ("alert_fingerprint =", where.alert_fingerprint),
    ):
        if value is not None:
            clauses.append(f"{column} {mark}")
            params.append(value)
    if where.alertname is not None:
        clauses.append(f"alert_id IN (SELECT id FROM alerts WHERE alertname = {mark})")  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        params.append(where.alertname)
    for column, moment in (("created_at >=", where.created_after), ("created_at <", where.created_before)):
        if moment is not None:
            clauses.append(f"{column} {mark}")
            params.append(time(moment))
    sql = f"SELECT {EXECUTION_COLUMNS} FROM executions"  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY seq DESC LIMIT {mark}"
    params.append(limit + 1)
    return sql, params


ALERT_CURSOR = "a"
"""Marks an inbox cursor, so that an execution cursor passed to the inbox is refused (and back)."""


def select_alerts(
    alertname: str | None,
    fingerprint: str | None,
    cursor: str | None,
    limit: int,
    *,
    mark: str,
    order: str,
) -> tuple[str, list[Any]]:
    """The ``list_alerts`` query, one row more than ``limit``; ``order`` is the backend's commit order."""
    check_page_limit(limit)
    clauses: list[str] = []
    params: list[Any] = []
    if cursor is not None:
        clauses.append(f"{order} < {mark}")
        params.append(decode_cursor(cursor, prefix=ALERT_CURSOR))
    for column, value in (("alertname", alertname), ("fingerprint", fingerprint)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    sql = f"SELECT {ALERT_COLUMNS}, matched_at, ruleset, {order} AS position FROM alerts"  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY {order} DESC LIMIT {mark}"
    params.append(limit + 1)
    return sql, params


# -- errors a caller may act on ---------------------------------------------------------------------


def lease_lost(lease: Lease) -> LeaseLost:
    return LeaseLost(
        f"{lease.owner} no longer holds the lease on execution {lease.execution_id} "
        f"(attempt {lease.attempt}): another worker took it over, or it left the running state"
    )


def step_twice(lease: Lease, name: str, attempt: int, what: str) -> JournalConflict:
    return JournalConflict(
        f"step {name} attempt {attempt} of execution {lease.execution_id} was already {what}"
    )


def execution_not_found(execution_id: str) -> ExecutionNotFound:
    return ExecutionNotFound(f"no execution {execution_id!r} in the journal (unknown or pruned)")


def alert_not_found(alert_id: str) -> ExecutionNotFound:
    return ExecutionNotFound(f"no alert {alert_id!r} in the journal (unknown or pruned)")


def playbook_not_found(name: str, version: int, content_hash: str) -> ExecutionNotFound:
    return ExecutionNotFound(f"playbook {name} version {version} ({content_hash[:12]}) is not in the journal")


def rejected_by(who_text: str, reason_text: str) -> str:
    """The error a rejected execution finishes with."""
    return f"rejected by {who_text}: {reason_text}"


def cancelled_by(who_text: str, reason_text: str) -> str:
    """The error a cancelled execution finishes with."""
    return f"cancelled by {who_text}: {reason_text}"


def not_awaiting_approval(execution_id: str, state: str) -> JournalConflict:
    return JournalConflict(f"execution {execution_id} is {state}, not awaiting approval")


def already_finished(execution_id: str, state: ExecutionState) -> JournalConflict:
    return JournalConflict(f"execution {execution_id} already finished ({state})")
