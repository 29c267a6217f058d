"""The Journal interface that every backend implements and every caller depends on.

Callers (ingress, matcher, runner, REST API, CLI) see only this Protocol, so SQLite (the embedded
default) and PostgreSQL (several replicas) are interchangeable and proven so by one contract test
suite. Every method is one atomic operation: it either commits entirely or raises and leaves nothing
written. Any method may raise :class:`kurative.errors.JournalUnavailable` when the database cannot be
reached; the caller decides whether to retry (the ingress answers 503 so that Alertmanager retries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from kurative.journal.models import (
    AlertPage,
    Approval,
    Claim,
    CreationOutcome,
    Decision,
    Execution,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionRequest,
    ExecutionState,
    IncomingAlert,
    Lease,
    MatchResult,
    Page,
    PlaybookVersion,
    PlaybookVersionConflict,
    PruneReport,
    Release,
    SchemaStatus,
    StepFinish,
    StepStart,
    StepsWritten,
    StoredAlert,
)


class Journal(Protocol):
    @property
    def url(self) -> str:
        """The journal's URL with any password replaced by ``***``, for logs and errors."""

    async def close(self) -> None:
        """Finish queued commits and close every connection."""

    # -- schema -------------------------------------------------------------------------------------

    async def schema_status(self) -> SchemaStatus:
        """The schema version in the database and the newest one this build ships."""

    async def migrate(self) -> SchemaStatus:
        """Apply every shipped migration the database lacks, each in its own transaction.

        Safe to run from several replicas at once (they serialize). Raises
        :class:`kurative.errors.SchemaVersionError` when the database is newer than this build.
        """

    async def now(self) -> datetime:
        """The database clock, which every lease is measured against."""

    # -- alert inbox --------------------------------------------------------------------------------

    async def commit_alerts(self, alerts: Sequence[IncomingAlert]) -> tuple[str, ...]:
        """Commit a batch of received alerts in one transaction; return their ids, in order, once the
        commit is durable. Oversized or malformed alerts raise :class:`kurative.errors.AlertError`
        before the database is touched. Concurrent calls may share one transaction (group commit);
        each call's batch is still all or nothing. Each alert gets the start of its firing episode
        (:mod:`kurative.journal.episodes`, kept as ``StoredAlert.starts_at``): a payload without
        ``startsAt`` joins its fingerprint's open episode; :func:`kurative.journal.episodes.commit_and_join`
        commits parsed alerts and hands them back with that start, ready to plan."""

    async def get_alert(self, alert_id: str) -> StoredAlert:
        """One inbox record; :class:`kurative.errors.ExecutionNotFound` when unknown or pruned."""

    async def unmatched_alerts(self, *, limit: int = 500) -> tuple[StoredAlert, ...]:
        """Committed alerts not matched yet (oldest first): those just received, and those of a replica
        that died between its 200 and the match."""

    def check_request(self, request: ExecutionRequest) -> None:
        """Raise :class:`~kurative.errors.RecordRejected` for a request this journal would refuse
        (what :meth:`match_alerts` checks before its transaction)."""

    async def match_alerts(
        self, matches: Sequence[tuple[str, Sequence[ExecutionRequest]]], ruleset: str
    ) -> MatchResult:
        """In one transaction: mark each alert matched against ``ruleset`` and create its executions
        (as :meth:`create_executions` does), and cancel the executions still awaiting approval of
        every resolved alert's fingerprint. An alert already matched (by another replica) is left as
        it is and gets no outcomes, so matching twice never creates twice."""

    # -- ruleset versions ---------------------------------------------------------------------------

    async def record_playbooks(
        self, versions: Sequence[PlaybookVersion]
    ) -> tuple[PlaybookVersionConflict, ...]:
        """Keep every loaded playbook version for history. Versions already recorded with the same
        content are ignored; one recorded with a different content hash is not overwritten and is
        returned as a conflict (changed content needs a new version)."""

    async def get_playbook(self, name: str, version: int, content_hash: str) -> PlaybookVersion:
        """The exact playbook an execution started on, so that it finishes on that version."""

    # -- executions ---------------------------------------------------------------------------------

    async def create_executions(
        self, alert_id: str, requests: Sequence[ExecutionRequest]
    ) -> tuple[CreationOutcome, ...]:
        """Create the executions of one matched alert, in the order given, in one transaction.

        For each request, the dedupe key is claimed first (a live key means ``deduplicated``, with
        the id of the execution that holds it); then every limit is counted (one at its ``max``
        means ``rate_limited``, and the dedupe key is not consumed, so a later notification may run
        once the budget frees). Replicas racing on the same alert create exactly one execution.
        Requests that need approval start in ``awaiting_approval``, the others in ``pending``. The
        alert counts as matched from then on (see :meth:`match_alerts`, the daemon's batch form)."""

    async def claim_executions(
        self, owner: str, *, limit: int = 1, lease_seconds: float = 30.0
    ) -> tuple[Claim, ...]:
        """Lease up to ``limit`` runnable executions to ``owner``: pending ones that are due, and
        running ones whose lease expired (a dead replica's work, flagged ``recovered``). Oldest
        first. Each claim increments ``attempt``, which fences off the previous holder."""

    async def renew_lease(self, lease: Lease, lease_seconds: float) -> Lease:
        """Extend the lease from now (database clock); :class:`kurative.errors.LeaseLost` when another
        worker holds it now or the execution left ``running``."""

    async def release_execution(
        self,
        lease: Lease,
        state: ExecutionState,
        *,
        error: str | None = None,
        delay: float = 0.0,
    ) -> Execution:
        """Let go of a leased execution, leaving it in ``state``: a finished state, ``pending`` (run
        again after ``delay`` seconds, e.g. when a breaker is open) or ``awaiting_approval`` (an
        approval step waits for a human). :class:`kurative.errors.LeaseLost` when not held."""

    async def record_step_started(self, lease: Lease, step: StepStart) -> int:
        """Append the ``started`` record of one step attempt, before its action runs; return its id.
        :class:`kurative.errors.LeaseLost` when the lease is no longer held (do not run the action);
        :class:`kurative.errors.JournalConflict` when that attempt was already started."""

    async def record_step_finished(self, lease: Lease, step: StepFinish) -> int:
        """Append the final record (succeeded, failed, skipped, dry_run) of one step attempt; its
        start time and idempotency key come from the ``started`` record when there is one."""

    async def record_steps(
        self,
        lease: Lease,
        *,
        finished: Sequence[StepFinish] = (),
        started: StepStart | None = None,
        release: Release | None = None,
    ) -> StepsWritten:
        """In one transaction, in this order: the final records ``finished`` (of attempts started by
        earlier calls, or skipped), the ``started`` record of the next step attempt, and the release
        of the execution. All or nothing, fenced by ``lease`` as the single-record calls are:
        :class:`kurative.errors.LeaseLost` when it is no longer held (nothing written, do not run the
        action), :class:`kurative.errors.JournalConflict` when one of the records already exists.

        This is how a runner writes a step's result together with whatever comes next, so that the
        rule "a step's final record is durable before the next step starts and before the execution
        ends" costs one commit per step instead of two. Concurrent calls may share a transaction
        (group commit); each still returns only once its own records are durable."""

    async def list_executions(
        self,
        where: ExecutionFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of executions, newest first; pass ``page.next_cursor`` back for the next one."""

    async def count_unfinished(self) -> Mapping[ExecutionState, int]:
        """How many executions are pending, awaiting approval and running now (every state that is
        not finished, each present, 0 if none): what the backlog gauges show."""

    async def get_execution(self, execution_id: str) -> ExecutionDetail:
        """One execution with its step records (in the order written) and approvals."""

    async def record_approval(
        self, execution_id: str, decision: Decision, who: str, reason: str = ""
    ) -> Approval:
        """Approve (back to ``pending``) or reject (``cancelled``) an execution awaiting approval;
        :class:`kurative.errors.JournalConflict` when it is not awaiting approval."""

    async def cancel_execution(self, execution_id: str, who: str, reason: str = "") -> Execution:
        """Cancel an execution that has not finished. A pending or waiting one is cancelled at once;
        a running one is flagged and its holder sees ``cancel_requested`` on its next renewal."""

    async def expire_approval(self, execution_id: str) -> bool:
        """Hand an execution whose approval step ran out of time back to the workers (``pending``), so
        that the step fails and the ``always`` steps run. False when it no longer awaits approval."""

    async def cancel_awaiting_approval(self, alert_fingerprint: str, reason: str) -> tuple[str, ...]:
        """Cancel every execution of that alert still waiting for approval (the alert resolved)."""

    # -- the REST API's reads ---------------------------------------------------------------------------

    async def list_alerts(
        self,
        *,
        alertname: str | None = None,
        fingerprint: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlertPage:
        """A page of the alert inbox, newest first, each with whether (and against which ruleset) it
        was matched; pass ``page.next_cursor`` back for the next one."""

    # -- retention ----------------------------------------------------------------------------------

    async def prune(self, older_than: float, *, batch: int = 1000) -> PruneReport:
        """Delete finished executions (with their steps and approvals) that finished more than
        ``older_than`` seconds ago, then alerts no execution refers to, expired dedupe keys and
        limit counts; in transactions of at most ``batch`` rows. Unfinished work is never pruned, and
        neither is the dedupe key of an execution still in the journal (a key without a window lives
        until its execution is pruned and it was last seen more than ``older_than`` seconds ago)."""
