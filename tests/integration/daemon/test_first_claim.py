"""The runner reads an execution's step records only when it can have some: on its first claim it
has none (a step is recorded only under a lease, and each claim increments the attempt); claimed
again, it reads them and does not repeat a finished step."""

from __future__ import annotations

from typing import Any

import pytest

from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.journal import (
    ExecutionDetail,
    ExecutionState,
    Journal,
    StepFinish,
    StepStart,
    StepStatus,
    open_journal,
)
from tests.integration.daemon.conftest import Setup, matched_alert

pytestmark = pytest.mark.timeout(60)

PLAYBOOK = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: two-logs, version: 1}
    spec:
      trigger: {alertname: [Twice]}
      approval: auto
      steps:
        - name: first
          action: log
          params: {message: one}
        - name: second
          action: log
          params: {message: two}
"""


class CountingReads:
    """The journal, counting the runner's reads of execution details."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.detail_reads = 0

    async def get_execution(self, execution_id: str) -> ExecutionDetail:
        self.detail_reads += 1
        return await self._journal.get_execution(execution_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)


async def test_first_claim_runs_without_reading_history_and_a_later_claim_reads_it(setup: Setup) -> None:
    setup.playbook("two", PLAYBOOK)
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        counting = CountingReads(journal)
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Twice"})
        runner = ExecutionRunner(counting, Services(), RunnerSettings(), cache)  # type: ignore[arg-type]
        (claim,) = await journal.claim_executions("replica-a")
        assert claim.lease.attempt == 1
        await journal.record_step_started(claim.lease, StepStart(0, "first", "log", 1, {"message": "one"}))
        await journal.record_step_finished(claim.lease, StepFinish(0, "first", StepStatus.SUCCEEDED, 1))
        await journal.release_execution(claim.lease, ExecutionState.PENDING)

        (again,) = await journal.claim_executions("replica-a")
        assert again.lease.attempt == 2
        assert not again.recovered
        assert await runner.run(again) is ExecutionState.SUCCEEDED
        assert counting.detail_reads == 1
        detail = await journal.get_execution(again.execution.id)
        assert [(s.name, s.status) for s in detail.steps] == [
            ("first", StepStatus.STARTED),
            ("first", StepStatus.SUCCEEDED),
            ("second", StepStatus.STARTED),
            ("second", StepStatus.SUCCEEDED),
        ]  # the first step ran once

        await matched_alert(journal, setup.rules, {"alertname": "Twice", "pod": "other"})
        (fresh,) = await journal.claim_executions("replica-a")
        assert fresh.lease.attempt == 1
        assert await runner.run(fresh) is ExecutionState.SUCCEEDED
        assert counting.detail_reads == 1  # nothing to read on a first claim
        steps = (await journal.get_execution(fresh.execution.id)).steps
        assert [s.status for s in steps] == [StepStatus.STARTED, StepStatus.SUCCEEDED] * 2
    finally:
        await journal.close()
