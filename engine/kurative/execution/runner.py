"""Running one claimed execution, step by step, with every step journaled before and after it acts.

The order of writes is what makes a crash harmless: a step's ``started`` record is committed before its
action runs, its final record after; the execution is released only after its last step's record. A
step's final record is committed together with whatever the runner writes next (the next step's
``started`` record, a skipped step, the release), in one :meth:`~kurative.journal.base.Journal.record_steps`
call: one commit per step rather than two, and the same order of what becomes durable.
What a kill -9 can leave behind is therefore at most one step per execution recorded as started but
not finished, and recovery (:mod:`kurative.execution.recovery`) decides from the action's declared
repeat-safety whether to run it again, record it as done, or park the execution for review.

The runner also: renews the lease in the background (a lost lease stops it before its next side
effect), renders each step's params at run time with the outputs of earlier steps, evaluates step
``when``, applies ``timeout`` and ``retry`` (through :mod:`kurative.execution.retrying`), runs ``always``
steps after a failure, honours dry-run (global or per playbook), parks the execution while a breaker
is open, waits in ``awaiting_approval`` at an ``approval`` step, honours ``cancel_requested`` between
steps, and finishes on the playbook version the execution started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, NamedTuple

from kurative.actions.base import ActionContext, ActionSpec, RepeatSafety
from kurative.actions.registry import get_action
from kurative.durations import FORMATS, format_duration, parse_duration
from kurative.errors import (
    ActionError,
    BreakerOpen,
    ExpressionError,
    JournalError,
    JournalUnavailable,
    KurativeError,
    LeaseLost,
    PermanentActionError,
    RecordRejected,
    TemporaryActionError,
)
from kurative.execution.recent import RecentAlerts
from kurative.execution.recovery import Recovery, recover_step
from kurative.execution.retrying import decide
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.journal import (
    Claim,
    ExecutionDetail,
    ExecutionState,
    Journal,
    Lease,
    Release,
    StepFinish,
    StepRecord,
    StepStart,
    StepStatus,
)
from kurative.journal.backoff import retry_until
from kurative.journal.inbox import inbox_alert
from kurative.logging import Logger, bind, unbind
from kurative.matching.conditions import Condition, compile_condition
from kurative.matching.context import build_context
from kurative.matching.planning import render_step
from kurative.metrics import Metrics
from kurative.playbooks.loading import load_bytes
from kurative.playbooks.models import Playbook, Step
from kurative.playbooks.quickcheck import Check, compile_check

log = Logger("kurative.execution")

APPROVAL = "approval"
BREAKER_MARK = "breaker_open"
CANCELLED = "cancelled while running"
"""The error of an execution released cancelled (the cancel request's who and why, when recorded, win)."""
CANCELLED_BEFORE = "cancelled before it ran"
INTERRUPTED_CANCELLED = (
    "interrupted by a crash, then cancelled: not checked nor run again (it may have acted)"
)


class Stop(Exception):
    """Control flow: stop working on this execution now (lease lost, parked, waiting, cancelled)."""


@dataclass(frozen=True, slots=True)
class LoadedPlaybook:
    """A playbook version as the runner needs it: the model and its compiled step conditions."""

    playbook: Playbook
    conditions: Mapping[str, Condition]


class PlaybookCache:
    """Playbook versions by (name, version, content hash), read from the journal once per process."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._loaded: dict[tuple[str, int, str], LoadedPlaybook] = {}

    def remember(self, playbook: Playbook) -> None:
        """Seed the cache with a playbook this process loaded itself (no journal read needed)."""
        key = (playbook.name, playbook.version, playbook.content_hash)
        if key not in self._loaded:
            self._loaded[key] = _prepare(playbook)

    async def get(self, name: str, version: int, content_hash: str) -> LoadedPlaybook:
        key = (name, version, content_hash)
        found = self._loaded.get(key)
        if found is None:
            stored = await self._journal.get_playbook(name, version, content_hash)
            loaded = load_bytes(f"journal:{name}@{version}", stored.body.encode("utf-8"))
            match = [p for p in loaded.playbooks if p.name == name]
            if not match:
                raise JournalError(f"the journal's copy of playbook {name!r} v{version} does not load")
            found = self._loaded[key] = _prepare(match[0])
        return found


def _prepare(playbook: Playbook) -> LoadedPlaybook:
    conditions = {step.name: compile_condition(step.when) for step in playbook.steps if step.when}
    return LoadedPlaybook(playbook, conditions)


def playbook_record_body(playbook: Playbook) -> str:
    """What the journal keeps of a playbook version: its parsed document as JSON (content, not format)."""
    return json.dumps(playbook.body, sort_keys=True, ensure_ascii=False)


@dataclass
class StepHistory:
    """What the journal says about one step: its records in order."""

    records: list[StepRecord] = field(default_factory=list)

    @property
    def final(self) -> StepRecord | None:
        """The record that settles the step: a success, skip or dry run, or a failure not retried
        (a step parked at an open breaker is not settled: it runs again once the breaker lets it)."""
        for record in reversed(self.records):
            if record.status is StepStatus.STARTED:
                continue
            if record.status is StepStatus.FAILED and (_retry_pending(record) or _breaker(record)):
                return None  # another attempt follows (also after a crash before it was scheduled)
            return record
        return None

    @property
    def open(self) -> StepRecord | None:
        """The latest attempt's ``started`` record when it has no final record: what a dead holder was
        running. An older interrupted attempt that a later one replaced is no longer open."""
        if not self.records:
            return None
        latest = max(r.attempt for r in self.records)
        mine = [r for r in self.records if r.attempt == latest]
        if any(r.status is not StepStatus.STARTED for r in mine):
            return None
        return mine[-1]

    @property
    def failures(self) -> int:
        """Failed attempts that count against ``retry.attempts`` (an open breaker does not)."""
        return sum(1 for r in self.records if r.status is StepStatus.FAILED and not _breaker(r))

    @property
    def last_failure_may_have_acted(self) -> bool:
        """The step's last attempt failed after reaching for its target (not refused by a breaker)."""
        finished = [r for r in self.records if r.status is not StepStatus.STARTED]
        return bool(finished) and finished[-1].status is StepStatus.FAILED and not _breaker(finished[-1])

    @property
    def next_attempt(self) -> int:
        return max((r.attempt for r in self.records), default=0) + 1


def _retry_pending(record: StepRecord) -> bool:
    output = record.output if isinstance(record.output, Mapping) else {}
    return bool(output.get("retry"))


def _breaker(record: StepRecord) -> bool:
    output = record.output if isinstance(record.output, Mapping) else {}
    return bool(output.get(BREAKER_MARK))


class Settled(NamedTuple):
    """How a step attempt ended, as later steps see it (its record goes with the next write)."""

    status: StepStatus
    output: Any
    error: str | None


def _step_view(record: StepRecord | Settled) -> dict[str, Any]:
    return {"status": record.status.value, "output": record.output, "error": record.error}


class LeaseKeeper:
    """Renews the lease every third of its length; remembers a loss and a cancel request.

    A timer, not a task per execution: most executions end before their first renewal is due, and a
    task that only sleeps cost each of them its creation, a wake-up and its cancellation. The renewal
    itself runs as a task, started when it is due; the next is timed from the end of the last."""

    def __init__(self, journal: Journal, lease: Lease, seconds: float) -> None:
        self._journal = journal
        self.lease = lease
        self._seconds = seconds
        self.lost: str | None = None
        self.acting = False
        """An action is running: its effect is unknown until its final record is written."""
        self.pending: list[StepFinish] = []
        """Final records not written yet: they go with the next write (a start, a release)."""
        self.releasing = False
        """The runner is writing the release: the execution leaves the running state on purpose."""
        self._renewed = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._stopped = False
        self.cancel_seen = False
        """A write told of a cancel request made after the lease was last renewed."""
        self.released: ExecutionState | None = None
        """The state the release left the execution in (cancelled, when one to pending or
        awaiting_approval met a cancel request)."""

    @property
    def cancel_requested(self) -> bool:
        return self.lease.cancel_requested or self.cancel_seen

    def start(self) -> None:
        """Renew from now on, until :meth:`stop` or the lease is lost."""
        self._stopped = False
        self._schedule()

    def _schedule(self) -> None:
        if not self._stopped and self.lost is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds / 3, self._due)

    def _due(self) -> None:
        self._timer = None
        self._renewing = asyncio.create_task(self._renew(), name=f"lease-{self.lease.execution_id}")

    async def _renew(self) -> None:
        try:
            self.lease = await self._journal.renew_lease(self.lease, self._seconds)
            self._renewed = time.monotonic()
        except LeaseLost as exc:
            if self.releasing:
                # Most likely the release itself, committed just before: no lease to keep. Had it
                # been lost, the release's own write fails with LeaseLost and says so.
                self._renewing = None
                return
            self.lost = str(exc)
            log.warning("lease_lost", error=str(exc))
        except JournalError as exc:
            log.warning("lease_renewal_failed", error=str(exc))
            if time.monotonic() - self._renewed >= self._seconds:
                # Unrenewed for a whole lease: another replica may hold it now. Nothing more may
                # be done here (the journal would refuse it anyway once it is back).
                self.lost = f"not renewed for {self._seconds:g}s: {exc}"
                log.warning("lease_lost", error=self.lost)
        self._renewing = None
        self._schedule()

    async def stop(self) -> None:
        """No more renewals; a renewal under way is cancelled and waited for."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    def check(self) -> None:
        if self.lost is not None:
            raise Stop(f"lease lost: {self.lost}")

    async def refresh(self) -> None:
        """Renew now, before another attempt: a lost lease or a cancel request is seen at once."""
        self.lease = await self._journal.renew_lease(self.lease, self._seconds)
        self._renewed = time.monotonic()


class ExecutionRunner:
    """Runs one claimed execution to its end, or to the point where it must wait or be parked."""

    def __init__(
        self,
        journal: Journal,
        services: Services,
        settings: RunnerSettings,
        playbooks: PlaybookCache,
        cluster_slot: Callable[[str | None], contextlib.AbstractAsyncContextManager[None]] | None = None,
        recent: RecentAlerts | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._recent = recent
        self._metrics = metrics
        self._journal = journal
        self._services = services
        self._settings = settings
        self._playbooks = playbooks
        self._cluster_slot = cluster_slot or (lambda cluster: contextlib.nullcontext())
        self._quick_checks: dict[int, tuple[ActionSpec, Check | None]] = {}

    async def _act(
        self, spec: ActionSpec, ctx: ActionContext, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Run the action, its params checked against its schema first.

        The compiled quick check (:mod:`kurative.playbooks.quickcheck`) answers yes only when jsonschema
        would find nothing; otherwise :meth:`ActionSpec.run` checks them with jsonschema, as always,
        and names each problem. Both ways the action never runs with params its schema refuses."""
        found = self._quick_checks.get(id(spec))
        if found is None or found[0] is not spec:
            found = self._quick_checks[id(spec)] = (spec, compile_check(dict(spec.params), FORMATS))
        check, implementation = found[1], spec.implementation
        if (
            check is not None
            and implementation is not None
            and isinstance(params, Mapping)
            and check(dict(params))
        ):
            return await implementation(ctx, params)
        return await spec.run(ctx, params)

    async def run(self, claim: Claim) -> ExecutionState | None:
        """Run ``claim``; return the state it was released in (None when the lease was lost)."""
        execution = claim.execution
        bind(
            execution_id=execution.id,
            alert_fingerprint=execution.alert_fingerprint,
            playbook=execution.playbook_name,
            version=execution.playbook_version,
        )
        log.info("execution_started", attempt=claim.lease.attempt, recovered=claim.recovered or None)
        keeper = LeaseKeeper(self._journal, claim.lease, self._settings.lease_seconds)
        keeper.start()
        metrics = self._metrics
        if metrics is not None:
            metrics.executions_in_progress.inc()
        try:
            state = await self._run(claim, keeper)
            if metrics is not None and state.finished:
                metrics.child(metrics.executions, execution.playbook_name, state.value).inc()
            return state
        except Stop as stop:
            log.info("execution_stopped", reason=str(stop))
            if metrics is not None and keeper.lost is not None:
                metrics.leases_lost.inc()
            return None
        except Exception as exc:  # a bug, or a journal refusal nobody expected: never leave it running
            log.exception("execution_crashed")
            if not keeper.acting and keeper.lost is None:
                reason = f"kurative could not run it: {type(exc).__name__}: {exc}"[:2000]
                await self._last_release(keeper, ExecutionState.NEEDS_REVIEW, reason)
                if metrics is not None:
                    metrics.executions.labels(
                        execution.playbook_name, ExecutionState.NEEDS_REVIEW.value
                    ).inc()
            return None
        except asyncio.CancelledError:
            # Shutting down: between steps the execution goes back to pending for any replica (or is
            # cancelled, if someone asked); inside an action its lease is left to expire, and recovery
            # checks the open step.
            if not keeper.acting and keeper.lost is None:
                left = await self._last_release(keeper, ExecutionState.PENDING, "interrupted by shutdown")
                if left is not None:
                    self.released(execution.playbook_name, left)
            raise
        finally:
            if metrics is not None:
                metrics.executions_in_progress.dec()
            await keeper.stop()
            unbind("execution_id", "alert_fingerprint", "playbook", "version", "step")

    async def _write(self, keeper: LeaseKeeper, write: Callable[[], Awaitable[Any]]) -> Any:
        """A journal write that waits out a short outage (half a lease) before giving up."""
        try:
            return await retry_until(write, deadline=self._settings.lease_seconds / 2, what="the journal")
        except LeaseLost as exc:
            if keeper.lost is None:
                # Told by the write itself (the keeper may have stopped watching: a release under way).
                log.warning("lease_lost", error=str(exc))
            keeper.lost = str(exc)
            raise Stop(f"lease lost: {exc}") from None
        except JournalUnavailable as exc:
            raise Stop(f"the journal is unavailable: {exc}") from None

    async def _last_release(
        self, keeper: LeaseKeeper, state: ExecutionState, error: str
    ) -> ExecutionState | None:
        """Release after something went wrong, with the final records still pending when possible;
        the state it left the execution in (None: not released)."""
        pending, keeper.pending = keeper.pending, []
        keeper.releasing = True
        if pending:
            try:
                written = await self._journal.record_steps(
                    keeper.lease, finished=pending, release=Release(state, error)
                )
                return written.execution.state if written.execution is not None else state
            except KurativeError:
                pass  # without them: a step left started is what recovery looks at, as after a crash
        try:
            return (await self._journal.release_execution(keeper.lease, state, error=error)).state
        except KurativeError:
            return None

    def released(self, playbook: str, state: ExecutionState) -> None:
        """An execution released outside a run's own end: counted if that finished it (a release to
        pending of an execution someone asked to cancel cancels it)."""
        if state.finished:
            log.info("execution_released", state=state.value)
            if self._metrics is not None:
                self._metrics.child(self._metrics.executions, playbook, state.value).inc()

    async def _commit(
        self, keeper: LeaseKeeper, started: StepStart | None = None, release: Release | None = None
    ) -> int | None:
        """Write the pending final records, then ``started`` and ``release``, in one transaction;
        return the id of the ``started`` record. Nothing at all to write is no write."""
        pending = list(keeper.pending)
        if not pending and started is None and release is None:
            return None
        if release is not None:
            keeper.releasing = True

        async def write() -> Any:
            return await self._journal.record_steps(
                keeper.lease, finished=pending, started=started, release=release
            )

        try:
            written = await self._write(keeper, write)
        except RecordRejected:
            if not pending:
                raise  # ``started`` itself cannot be journalled: the caller says so
            # a result too large to journal: each pending record alone, cut down when refused
            for record in pending:
                await self._write_alone(keeper, record)
            keeper.pending = []
            if started is None and release is None:
                return None
            return await self._commit(keeper, started, release)
        keeper.pending = []
        if written.cancel_requested:
            keeper.cancel_seen = True
        if written.execution is not None:
            keeper.released = written.execution.state
        return written.started  # type: ignore[no-any-return]

    async def _write_alone(self, keeper: LeaseKeeper, record: StepFinish) -> None:
        async def write() -> Any:
            try:
                return await self._journal.record_steps(keeper.lease, finished=[record])
            except RecordRejected as exc:
                shorter = StepFinish(
                    record.index, record.name, record.status, record.attempt, record.action,
                    {"truncated": str(exc)}, record.error,
                )  # fmt: skip
                return await self._journal.record_steps(keeper.lease, finished=[shorter])

        await self._write(keeper, write)

    async def _release(
        self, keeper: LeaseKeeper, state: ExecutionState, error: str | None = None, delay: float = 0.0
    ) -> ExecutionState:
        await self._commit(keeper, release=Release(state, error, delay))
        released = keeper.released or state
        log.info("execution_released", state=released.value, error=error, delay=round(delay, 3) or None)
        return released

    async def _cancel(
        self, keeper: LeaseKeeper, index: int, step: Step, open_record: StepRecord | None
    ) -> ExecutionState:
        """Release cancelled, as asked; a step a crash left open is closed first, not run again."""
        if open_record is not None:
            attempt = open_record.attempt
            await self._finish(keeper, index, step, attempt, StepStatus.FAILED, None, INTERRUPTED_CANCELLED)
        return await self._release(keeper, ExecutionState.CANCELLED, CANCELLED)

    async def _run(self, claim: Claim, keeper: LeaseKeeper) -> ExecutionState:
        execution = claim.execution
        try:
            loaded = await self._playbooks.get(
                execution.playbook_name, execution.playbook_version, execution.playbook_hash
            )
            detail = await self._history(claim)
            parsed = self._recent.get(execution.alert_id) if self._recent is not None else None
            if parsed is None:
                parsed = inbox_alert(await self._journal.get_alert(execution.alert_id))
            alert, group = parsed
        except JournalUnavailable as exc:
            raise Stop(f"the journal is unavailable: {exc}") from None
        except (KurativeError, IndexError) as exc:
            return await self._release(
                keeper, ExecutionState.NEEDS_REVIEW, f"cannot load the execution: {exc}"
            )
        playbook = loaded.playbook
        histories = _histories(detail, len(playbook.steps))
        steps: dict[str, Any] = {}
        failed: str | None = None
        for index, step in enumerate(playbook.steps):
            bind(step=step.name)
            history = histories[index]
            final = history.final
            if final is not None:
                steps[step.name] = _step_view(final)
                if final.status is StepStatus.FAILED and failed is None:
                    failed = f"step {step.name!r} failed: {final.error}"
                continue
            keeper.check()
            if keeper.cancel_requested:
                return await self._cancel(keeper, index, step, history.open)
            context = build_context(
                alert,
                playbook,
                group,
                steps=steps,
                execution={"id": execution.id, "attempt": claim.lease.attempt},
            )
            outcome = await self._step(claim, keeper, detail, index, step, history, context, loaded, failed)
            if isinstance(outcome, ExecutionState):
                return outcome
            steps[step.name] = _step_view(outcome)
            if outcome.status is StepStatus.FAILED and failed is None:
                failed = f"step {step.name!r} failed: {outcome.error}"
        unbind("step")
        if failed is not None:
            return await self._release(keeper, ExecutionState.FAILED, failed)
        return await self._release(keeper, ExecutionState.SUCCEEDED)

    async def _history(self, claim: Claim) -> ExecutionDetail:
        """The execution's step records and approvals, read only when it may have some to read.

        On its first claim (attempt 1) an execution has no step records: a step is recorded only
        under a lease, and every claim increments the attempt. Approvals it may have (an approved
        playbook) matter only to an ``approval`` step already started, so there is nothing to read.
        """
        if claim.lease.attempt == 1 and not claim.recovered:
            return ExecutionDetail(claim.execution, (), ())
        return await self._journal.get_execution(claim.execution.id)

    async def _finish(
        self,
        keeper: LeaseKeeper,
        index: int,
        step: Step,
        attempt: int,
        status: StepStatus,
        output: Any = None,
        error: str | None = None,
    ) -> Settled:
        """The final record of a step attempt. It is written with the runner's next write (the next
        step's start, a release), which is committed before anything else happens to the execution."""
        keeper.pending.append(StepFinish(index, step.name, status, attempt, step.action, output, error))
        log.debug("step_finished", status=status.value, attempt=attempt, error=error)
        return Settled(status, output, error)

    async def _step(
        self,
        claim: Claim,
        keeper: LeaseKeeper,
        detail: ExecutionDetail,
        index: int,
        step: Step,
        history: StepHistory,
        context: Mapping[str, Any],
        loaded: LoadedPlaybook,
        failed: str | None,
    ) -> Settled | ExecutionState:
        execution = claim.execution
        playbook = loaded.playbook
        open_record = history.open
        spec = get_action(step.action)

        async def settle(status: StepStatus, output: Any = None, error: str | None = None) -> Settled:
            attempt = open_record.attempt if open_record is not None else history.next_attempt
            return await self._finish(keeper, index, step, attempt, status, output, error)

        if failed is not None and not step.always and open_record is None:
            return await settle(StepStatus.SKIPPED, None, f"skipped: {failed}")
        condition = loaded.conditions.get(step.name)
        if condition is not None and open_record is None:
            try:
                holds = condition.holds(context)
            except ExpressionError as exc:
                return await settle(StepStatus.FAILED, None, str(exc))
            if not holds:
                reason = f"skipped: when `{condition.source}` is false"
                return await settle(StepStatus.SKIPPED, None, reason)
        try:
            rendered = render_step(playbook, step, context)
        except KurativeError as exc:
            return await settle(StepStatus.FAILED, None, str(exc))
        if spec is None:
            error = f"unknown action {step.action!r}"
            return await settle(StepStatus.FAILED, None, error)
        cluster = rendered.cluster if isinstance(rendered.cluster, str) and rendered.cluster else None
        label = self._settings.cluster_label
        if cluster is None and label is not None and step.action.startswith("kubernetes."):
            cluster = context.get("labels", {}).get(label) or None
        dry_run = execution.dry_run or self._settings.dry_run
        ctx = ActionContext(
            execution_id=execution.id,
            step=step.name,
            attempt=history.next_attempt,
            dry_run=dry_run,
            cluster=cluster,
            services=self._services.for_actions(),
        )
        params = rendered.params

        if step.action == APPROVAL and not dry_run:
            try:
                spec.check_params(params)  # as every action's, though no implementation runs
            except PermanentActionError as exc:
                return await settle(StepStatus.FAILED, None, str(exc))
            return await self._approval(keeper, detail, index, step, history, params)

        if open_record is not None:
            recorded = open_record.params if isinstance(open_record.params, Mapping) else params
            try:
                verdict = await recover_step(spec, ctx, recorded)
            except BreakerOpen as exc:
                # parked with its step open, unless a cancel came meanwhile: then the step is closed
                await self._write(keeper, keeper.refresh)
                if keeper.cancel_requested:
                    return await self._cancel(keeper, index, step, open_record)
                return await self._release(keeper, ExecutionState.PENDING, str(exc), exc.retry_after)
            log.info("step_recovered", verdict=verdict.value, attempt=open_record.attempt)
            if verdict is Recovery.DONE:
                return await settle(StepStatus.SUCCEEDED, {"recovered": True})
            if verdict is Recovery.REVIEW:
                reason = (
                    f"step {step.name!r} ({step.action}) was interrupted by a crash and cannot be "
                    "proven done or not done; check the target and rerun or cancel"
                )
                return await self._release(keeper, ExecutionState.NEEDS_REVIEW, reason)

        if dry_run and not spec.dry_run:
            return await settle(
                StepStatus.DRY_RUN, {"dry_run": f"{step.action} has no dry-run mode: not run"}
            )
        return await self._attempts(keeper, index, step, history, spec, ctx, params, cluster)

    async def _attempts(
        self,
        keeper: LeaseKeeper,
        index: int,
        step: Step,
        history: StepHistory,
        spec: ActionSpec,
        ctx: ActionContext,
        params: Mapping[str, Any],
        cluster: str | None,
    ) -> Settled | ExecutionState:
        failures = history.failures
        attempt = history.next_attempt
        unsure = history.last_failure_may_have_acted
        while True:
            keeper.check()
            if unsure and spec.repeat_safety is not RepeatSafety.IDEMPOTENT:
                # The failed attempt may have changed the target after all (its answer was lost): a
                # stamped change that is there is done, one that is not is retried, and what cannot
                # be told (a deletion's object there but not stamped: maybe a same-name replacement,
                # which a retry would delete) is parked for review, as after a crash.
                try:
                    verdict = await recover_step(spec, ctx, params, ask_again=True)
                except BreakerOpen as exc:
                    return await self._release(keeper, ExecutionState.PENDING, str(exc), exc.retry_after)
                except TemporaryActionError as exc:  # the target cannot be asked now: ask it later
                    unknown = f"whether the last attempt took effect cannot be checked yet: {exc}"
                    wait = max(step.retry.backoff, 1.0)
                    return await self._release(keeper, ExecutionState.PENDING, unknown, wait)
                log.info("step_checked_before_retry", verdict=verdict.value, attempt=attempt)
                if verdict is Recovery.DONE:
                    found = {"recovered": True}
                    return await self._finish(keeper, index, step, attempt, StepStatus.SUCCEEDED, found)
                if verdict is Recovery.REVIEW:
                    reason = (
                        f"step {step.name!r} ({step.action}) failed in a way that may have taken effect "
                        "and cannot be proven done or not done; check the target and rerun or cancel"
                    )
                    return await self._release(keeper, ExecutionState.NEEDS_REVIEW, reason)
            if attempt > history.next_attempt:
                await self._write(keeper, keeper.refresh)
            if keeper.cancel_requested:
                return await self._release(keeper, ExecutionState.CANCELLED, CANCELLED)
            start = StepStart(index, step.name, step.action, attempt, dict(params), ctx.idempotency_key)
            kube = step.action.startswith("kubernetes.")
            if kube and keeper.pending:
                # a cluster slot may take long to free: the earlier result is not held back meanwhile
                await self._commit(keeper)
            error: BaseException | None = None
            begun: float | None = None
            # Only a Kubernetes step takes a slot of its cluster (runner.perCluster); others never wait
            # for one, so nothing they hold back waits with them.
            slot = self._cluster_slot(cluster) if kube else contextlib.nullcontext()
            async with slot:
                # The slot first: a step waiting for its cluster has not started (nothing to recover).
                keeper.check()
                try:
                    await self._commit(keeper, started=start)
                except RecordRejected as exc:  # its rendered params are too large to journal
                    error = PermanentActionError(f"the step cannot be journalled: {exc}")
                # a cancel asked for while the step before ran is seen as this one is recorded: it
                # does not run
                if error is None and not keeper.cancel_requested:
                    log.debug("step_started", action=step.action, attempt=attempt, dry_run=ctx.dry_run)
                    begun = time.monotonic()
                    keeper.acting = True
                    # the action is told when the step's timeout ends, so that its own (a request's)
                    # ends first and counts against the target's breaker, as a cancellation does not
                    ends = None if step.timeout is None else asyncio.get_running_loop().time() + step.timeout
                    deadline = asyncio.timeout_at(ends)
                    try:
                        async with deadline:
                            acting = ctx if ends is None else replace(ctx, deadline=ends)
                            output = await self._act(spec, acting, params)
                    except TimeoutError as exc:
                        if deadline.expired():
                            error = TimeoutError(f"timed out after {step.timeout:g}s")
                        else:  # the action's own (a socket's): temporary, as a timeout is
                            error = TemporaryActionError(f"{step.action} timed out: {exc or 'no answer'}")
                    except (ActionError, BreakerOpen, KurativeError) as exc:
                        error = exc
                    except Exception as exc:  # an action's bug must not take the worker down
                        log.exception("step_crashed", action=step.action)
                        error = exc
            if error is None and begun is None:  # recorded started, then the cancel was seen
                await self._finish(keeper, index, step, attempt, StepStatus.SKIPPED, None, CANCELLED_BEFORE)
                return await self._release(keeper, ExecutionState.CANCELLED, CANCELLED)
            if begun is not None:
                self._took(step, ctx, error, time.monotonic() - begun)
            if error is None:
                keeper.acting = False
                status = StepStatus.DRY_RUN if ctx.dry_run else StepStatus.SUCCEEDED
                return await self._finish(keeper, index, step, attempt, status, dict(output))
            keeper.acting = False
            decision = decide(error, step.retry, failures + 1)
            message = str(error) or type(error).__name__
            if isinstance(error, BreakerOpen):
                await self._finish(
                    keeper, index, step, attempt, StepStatus.FAILED, {BREAKER_MARK: True}, message
                )
                return await self._release(keeper, ExecutionState.PENDING, message, decision.delay)
            failures += 1
            unsure = True
            if not decision.retry:
                return await self._finish(keeper, index, step, attempt, StepStatus.FAILED, None, message)
            await self._finish(keeper, index, step, attempt, StepStatus.FAILED, {"retry": True}, message)
            if decision.delay > self._settings.lease_seconds / 3:
                return await self._release(keeper, ExecutionState.PENDING, message, decision.delay)
            await self._commit(keeper)  # the failure is durable before the wait
            await asyncio.sleep(decision.delay)
            attempt += 1
            ctx = ActionContext(ctx.execution_id, ctx.step, attempt, ctx.dry_run, ctx.cluster, ctx.services)

    def _took(self, step: Step, ctx: ActionContext, error: BaseException | None, seconds: float) -> None:
        log.debug("step_took", seconds=round(seconds, 4))
        if self._metrics is None:
            return
        if error is None:
            outcome = "dry_run" if ctx.dry_run else "succeeded"
        elif isinstance(error, TimeoutError):
            outcome = "timeout"
        elif isinstance(error, BreakerOpen):
            outcome = "breaker_open"
        else:
            outcome = "failed"
        self._metrics.child(self._metrics.step_duration, step.action, outcome).observe(seconds)

    async def _approval(
        self,
        keeper: LeaseKeeper,
        detail: ExecutionDetail,
        index: int,
        step: Step,
        history: StepHistory,
        params: Mapping[str, Any],
    ) -> Settled | ExecutionState:
        """An ``approval`` step: record it started and wait in ``awaiting_approval``; once a human
        approved (after the step started), record who and why as its output."""
        open_record = history.open
        if open_record is None:
            attempt = history.next_attempt
            start = StepStart(index, step.name, step.action, attempt, dict(params), None)
            state = ExecutionState.AWAITING_APPROVAL
            await self._commit(keeper, started=start, release=Release(state))
            released = keeper.released or state  # cancelled, if a cancel was asked for meanwhile
            if released is state:
                log.info("approval_requested", message=params.get("message"))
            log.info("execution_released", state=released.value)
            return released
        since = open_record.started_at
        decided = [a for a in detail.approvals if since is None or a.decided_at >= since]
        if not decided:
            timeout = approval_timeout(open_record.params)
            if since is not None and await self._write(keeper, self._journal.now) >= since + timedelta(
                seconds=timeout
            ):
                error = f"no decision within {format_duration(timeout)}"
                return await self._finish(
                    keeper, index, step, open_record.attempt, StepStatus.FAILED, None, error
                )
            return await self._release(keeper, ExecutionState.AWAITING_APPROVAL)
        last = decided[-1]
        output = {"decision": last.decision.value, "by": last.who, "reason": last.reason}
        return await self._finish(keeper, index, step, open_record.attempt, StepStatus.SUCCEEDED, output)


def approval_timeout(params: Any) -> float:
    """Seconds an ``approval`` step waits for a decision (its ``timeout`` param, or the declared default)."""
    declared = get_action(APPROVAL)
    default = declared.params["properties"]["timeout"]["default"] if declared else "1h"
    given = params.get("timeout", default) if isinstance(params, Mapping) else default
    try:
        return parse_duration(given)
    except KurativeError:
        return parse_duration(default)


def _histories(detail: ExecutionDetail, count: int) -> list[StepHistory]:
    histories = [StepHistory() for _ in range(count)]
    for record in detail.steps:
        if 0 <= record.index < count:
            histories[record.index].records.append(record)
    return histories
