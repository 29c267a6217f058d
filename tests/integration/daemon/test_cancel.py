"""A cancel of a running execution: seen at the next step, across a crash, before an approval, while
the start write waits for the cancel's lock, and with a step a crash left open."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import pytest

import kurative.execution.runner as runner_module
from kurative.errors import BreakerOpen
from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.execution.workers import WorkerPool
from kurative.journal import ExecutionState, StepStart, open_journal
from kurative.metrics import Metrics
from tests.integration.daemon.conftest import HeldClaims, Setup, edge_playbook, matched_alert

pytestmark = pytest.mark.timeout(120)


async def test_who_and_why_of_a_cancel_survive_a_crash(setup: Setup) -> None:
    """The who and why recorded at once survive the replica dying and another one claiming."""
    setup.playbook("say", edge_playbook("say", "        - {name: say, action: log, params: {message: hi}}\n"))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        (dead,) = await journal.claim_executions("dead-replica", lease_seconds=0.5)
        asked = await journal.cancel_execution(dead.execution.id, "alice", "wrong cluster")
        assert asked.error == "cancelled by alice: wrong cluster"
        await asyncio.sleep(0.8)  # the dead replica's lease expires
        (claim,) = await journal.claim_executions("replica-b")
        runner = ExecutionRunner(journal, Services(), RunnerSettings(), cache)
        assert await runner.run(claim) is ExecutionState.CANCELLED
        detail = await journal.get_execution(claim.execution.id)
        assert detail.execution.error == "cancelled by alice: wrong cluster"
    finally:
        await journal.close()


async def test_a_cancel_seen_by_an_approval_steps_start_write_is_not_dropped(setup: Setup) -> None:
    """A cancel seen by the write of an approval step's start cancels instead of asking a human."""
    steps = """\
        - {name: first, action: sleep, params: {duration: 1s}}
        - {name: ask, action: approval, params: {message: "go?"}}
"""
    setup.playbook("ask", edge_playbook("ask", steps))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        runner = ExecutionRunner(journal, Services(), RunnerSettings(lease_seconds=30), cache)
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=30)
        running = asyncio.create_task(runner.run(claim))
        while not (await journal.get_execution(claim.execution.id)).steps:
            await asyncio.sleep(0.01)  # "first" has started
        asked = await journal.cancel_execution(claim.execution.id, "alice", "wrong cluster")
        assert asked.state is ExecutionState.RUNNING
        state = await asyncio.wait_for(running, 30)
        detail = await journal.get_execution(claim.execution.id)
        assert (state, detail.execution.state, detail.execution.error) == (
            ExecutionState.CANCELLED,
            ExecutionState.CANCELLED,
            "cancelled by alice: wrong cluster",
        )
    finally:
        await journal.close()


@pytest.mark.postgres
@pytest.mark.parametrize("journal_url", ["postgresql"], indirect=True)
async def test_a_cancel_committed_while_the_start_write_waits_is_seen(setup: Setup) -> None:
    """READ COMMITTED: the start write waits for the cancel's row lock and then reads the row as
    the cancel left it."""
    setup.playbook("say", edge_playbook("say", "        - {name: say, action: log, params: {message: hi}}\n"))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, _cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=30)
        async with await psycopg.AsyncConnection.connect(setup.journal_url) as other:
            await other.execute(
                "UPDATE executions SET cancel_requested = true WHERE id = %s", (claim.execution.id,)
            )  # not committed yet: the row is locked
            start = StepStart(0, "say", "log", 1, {"message": "hi"}, None)
            writing = asyncio.create_task(journal.record_steps(claim.lease, started=start))
            await asyncio.sleep(1.0)  # the start write is waiting on the row lock
            assert not writing.done()
            await other.commit()  # the cancel is committed before the start write is
            written = await asyncio.wait_for(writing, 10)
        assert written.started is not None
        assert written.cancel_requested, "a cancel committed before the step's start write was not seen"
    finally:
        await journal.close()


async def test_recovery_of_an_open_step_under_a_cancel_closes_it(setup: Setup) -> None:
    """A step a crash left open in an execution then cancelled is closed (failed, "may have acted"),
    not left started for ever."""
    steps = """\
        - {name: say, action: log, params: {message: hi}}
"""
    setup.playbook("say", edge_playbook("say", steps))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        (dead,) = await journal.claim_executions("dead-replica", lease_seconds=0.5)
        await journal.cancel_execution(dead.execution.id, "alice", "wrong cluster")
        start = StepStart(0, "say", "log", 1, {"message": "hi"}, None)
        written = await journal.record_steps(dead.lease, started=start)
        assert written.cancel_requested  # the runner would now write SKIPPED... but is killed
        await asyncio.sleep(0.8)
        (claim,) = await journal.claim_executions("replica-b")
        runner = ExecutionRunner(journal, Services(), RunnerSettings(), cache)
        assert await runner.run(claim) is ExecutionState.CANCELLED
        detail = await journal.get_execution(claim.execution.id)
        statuses = [s.status.value for s in detail.steps]
        assert statuses == ["started", "failed"], statuses
        assert "then cancelled" in (detail.steps[-1].error or "")
        assert detail.execution.error == "cancelled by alice: wrong cluster"
    finally:
        await journal.close()


async def _crashed_and_cancelled(journal: Any) -> str:
    (dead,) = await journal.claim_executions("dead-replica", lease_seconds=0.5)
    await journal.cancel_execution(dead.execution.id, "alice", "wrong cluster")
    await journal.record_steps(dead.lease, started=StepStart(0, "say", "log", 1, {"message": "hi"}, None))
    await asyncio.sleep(0.8)  # the dead replica's lease expires
    return dead.execution.id


async def test_a_claim_taken_over_from_a_dead_replica_is_not_handed_back_but_left_to_recovery(
    setup: Setup,
) -> None:
    setup.playbook("say", edge_playbook("say", "        - {name: say, action: log, params: {message: hi}}\n"))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        execution_id = await _crashed_and_cancelled(journal)
        held = HeldClaims(journal)
        settings = RunnerSettings(poll_interval=0.1)
        runner = ExecutionRunner(held, Services(), settings, cache)  # type: ignore[arg-type]
        pool = WorkerPool(held, runner, settings)  # type: ignore[arg-type]
        looping = asyncio.create_task(pool.run())
        await held.claiming.wait()
        stopping = asyncio.create_task(pool.stop(deadline=5))
        await asyncio.sleep(0)
        held.go.set()
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(looping, 10)
        detail = await journal.get_execution(execution_id)
        # not released (which would cancel it with the dead replica's step unlooked at): its lease
        # runs out, and whoever claims it next closes that step, as after any crash
        assert detail.execution.state is ExecutionState.RUNNING
        assert detail.execution.lease_owner == pool.owner
        assert [s.status.value for s in detail.steps] == ["started"]
    finally:
        await journal.close()


async def test_breaker_during_recovery_of_an_open_step_under_a_late_cancel(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.playbook("say", edge_playbook("say", "        - {name: say, action: log, params: {message: hi}}\n"))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        (dead,) = await journal.claim_executions("dead-replica", lease_seconds=0.5)
        await journal.record_steps(dead.lease, started=StepStart(0, "say", "log", 1, {"message": "hi"}, None))
        await asyncio.sleep(0.8)
        (claim,) = await journal.claim_executions("replica-b")

        async def check(*args: Any, **kwargs: Any) -> Any:
            # the target's breaker is open; meanwhile someone cancels
            await journal.cancel_execution(claim.execution.id, "alice", "wrong cluster")
            raise BreakerOpen("cluster default", 30.0)

        monkeypatch.setattr(runner_module, "recover_step", check)
        runner = ExecutionRunner(journal, Services(), RunnerSettings(), cache)
        state = await runner.run(claim)
        detail = await journal.get_execution(claim.execution.id)
        statuses = [s.status.value for s in detail.steps]
        assert state is ExecutionState.CANCELLED
        assert statuses == ["started", "failed"], statuses
    finally:
        await journal.close()


async def test_a_shutdown_release_that_cancels_is_counted(setup: Setup) -> None:
    steps = "        - {name: kill, action: kubernetes.delete_pod, params: {namespace: x, pod: y}}\n"
    setup.playbook("kill", edge_playbook("kill", steps))
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        waiting = asyncio.Event()

        @contextlib.asynccontextmanager
        async def busy_cluster(cluster: str | None) -> Any:
            waiting.set()
            await asyncio.Event().wait()  # every slot of the cluster is taken
            yield

        metrics = Metrics()
        runner = ExecutionRunner(
            journal,
            Services(),
            RunnerSettings(lease_seconds=30),
            cache,
            cluster_slot=busy_cluster,
            metrics=metrics,
        )
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=30)
        task = asyncio.create_task(runner.run(claim))
        await asyncio.wait_for(waiting.wait(), 10)
        await journal.cancel_execution(claim.execution.id, "alice", "wrong cluster")
        task.cancel()  # shutdown's deadline passed
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # whichever replica ends it (this one now, or the next to claim it) counts it once
        later = Metrics()
        for again in await journal.claim_executions("replica-b"):
            other = ExecutionRunner(journal, Services(), RunnerSettings(), cache, metrics=later)
            await other.run(again)
        detail = await journal.get_execution(claim.execution.id)
        sample = {"playbook": "kill", "outcome": "cancelled"}
        counted = sum(
            m.registry.get_sample_value("kurative_executions_total", sample) or 0.0 for m in (metrics, later)
        )
        assert detail.execution.state is ExecutionState.CANCELLED
        assert counted == 1.0, (
            f"kurative_executions_total{{outcome=cancelled}} = {counted} over both replicas"
        )
    finally:
        await journal.close()
