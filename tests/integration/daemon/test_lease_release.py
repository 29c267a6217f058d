"""A lease renewal that comes right after the execution's own release is no lost lease: the execution
left the running state because its runner released it, and nothing is logged as lost (seen in the chaos
run with three replicas, where busy replicas logged ``lease_lost`` for executions that had succeeded)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.journal import ExecutionState, Journal, open_journal
from tests.integration.daemon.conftest import Setup, matched_alert

pytestmark = pytest.mark.timeout(60)

LEASE = 0.9  # renewed every 0.3 s

PLAYBOOK = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: quick, version: 1}
    spec:
      trigger: {alertname: [Quick]}
      approval: auto
      steps:
        - name: say
          action: log
          params: {message: "quick ${labels.alertname}"}
"""


class SlowAfterRelease:
    """The journal, except that a write carrying a release returns only after a renewal interval (as
    on a busy replica, whose event loop gets back to the runner late): the renewal comes in between."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    async def record_steps(self, lease: Any, **records: Any) -> Any:
        written = await self._journal.record_steps(lease, **records)
        if records.get("release") is not None:
            await asyncio.sleep(LEASE)
        return written

    async def release_execution(self, lease: Any, *args: Any, **kwargs: Any) -> Any:
        released = await self._journal.release_execution(lease, *args, **kwargs)
        await asyncio.sleep(LEASE)
        return released


async def test_a_renewal_after_the_runners_own_release_is_not_a_lost_lease(setup: Setup) -> None:
    setup.playbook("quick", PLAYBOOK)
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Quick"})
        slow: Any = SlowAfterRelease(journal)
        runner = ExecutionRunner(slow, Services(), RunnerSettings(lease_seconds=LEASE), cache)
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=LEASE)
        with structlog.testing.capture_logs() as logs:
            state = await runner.run(claim)
        assert state is ExecutionState.SUCCEEDED
        assert (await journal.get_execution(claim.execution.id)).execution.state is ExecutionState.SUCCEEDED
        events = [e["event"] for e in logs]
        assert "execution_released" in events
        assert "lease_lost" not in events, [e for e in logs if e["event"] == "lease_lost"]
    finally:
        await journal.close()


class StolenDuringRelease:
    """The journal, except that the release write starts only after the lease has run out and another
    replica has claimed the execution (a stalled database: renewals stall too meanwhile)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.releasing = False
        self.taken = asyncio.Event()
        """Set once the other replica holds the execution."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    async def record_steps(self, lease: Any, **records: Any) -> Any:
        if records.get("release") is not None:
            self.releasing = True
            await self.taken.wait()
        return await self._journal.record_steps(lease, **records)

    async def renew_lease(self, lease: Any, seconds: float) -> Any:
        if self.releasing:
            await self.taken.wait()
        return await self._journal.renew_lease(lease, seconds)


async def test_a_lease_really_lost_while_the_release_is_written_is_logged_as_lost(setup: Setup) -> None:
    setup.playbook("quick", PLAYBOOK)
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Quick"})
        stolen = StolenDuringRelease(journal)
        runner = ExecutionRunner(stolen, Services(), RunnerSettings(lease_seconds=LEASE), cache)
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=LEASE)

        async def other_replica() -> None:
            try:
                while not await journal.claim_executions("replica-b", lease_seconds=60):
                    await asyncio.sleep(0.1)
            finally:
                stolen.taken.set()  # a failed claim must not leave the runner waiting

        claiming = asyncio.create_task(other_replica())
        with structlog.testing.capture_logs() as logs:
            await runner.run(claim)
        await asyncio.wait_for(claiming, timeout=30)
        assert [e for e in logs if e["event"] == "lease_lost" and e["log_level"] == "warning"], logs
    finally:
        await journal.close()
