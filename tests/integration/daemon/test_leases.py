"""A worker that lost its lease (it stalled past it and another replica took over) stops before its
next side effect; the new holder finishes the execution, and every webhook is sent by one of them."""

from __future__ import annotations

import asyncio

import pytest

from kurative.adapters.http import HttpAdapter
from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.journal import ExecutionState, StepStatus, open_journal
from tests.integration.daemon.conftest import Setup, matched_alert
from tests.integration.journal.helpers import raw_sql

pytestmark = pytest.mark.timeout(120)

LEASE = 60.0

PLAYBOOK = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: wait-then-call, version: 1}
    spec:
      trigger: {alertname: [Slowly]}
      approval: auto
      steps:
        - name: wait
          action: sleep
          params: {duration: 1500ms}
        - name: call
          action: http.request
          params: {url: "SINK/call", json: {}}
"""


async def test_a_worker_whose_lease_was_taken_stops_before_its_next_step(setup: Setup) -> None:
    setup.playbook("slow", PLAYBOOK.replace("SINK", setup.sink.url))
    journal = await open_journal(setup.journal_url, migrate=True)
    http = HttpAdapter()
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Slowly"})
        # leases far longer than the test: replica-a's first renewal (at a third of its lease) must not
        # come before the takeover below, however slowly a loaded machine gets there
        settings = RunnerSettings(lease_seconds=LEASE)
        runner = ExecutionRunner(journal, Services(http=http), settings, cache)

        (first,) = await journal.claim_executions("replica-a", lease_seconds=LEASE)
        stalled = asyncio.create_task(runner.run(first))
        await asyncio.sleep(0.5)  # replica-a is in its sleep step
        past = "0" if setup.journal_url.startswith("sqlite") else "now() - interval '1 second'"
        raw_sql(setup.journal_url, f"UPDATE executions SET lease_expires_at = {past}")  # a-stall
        (second,) = await journal.claim_executions("replica-b", lease_seconds=LEASE)
        assert second.recovered
        taken_over = asyncio.create_task(runner.run(second))
        results = await asyncio.gather(stalled, taken_over)
        assert results[0] is None  # replica-a stopped: it no longer holds the lease
        assert results[1] is ExecutionState.SUCCEEDED
        (call,) = setup.sink.requests
        assert call.idempotency_key == f"{first.execution.id}/call"
        detail = await journal.get_execution(first.execution.id)
        calls = [s for s in detail.steps if s.name == "call" and s.status is StepStatus.STARTED]
        assert [s.lease_attempt for s in calls] == [second.lease.attempt]
    finally:
        await http.aclose()
        await journal.close()
