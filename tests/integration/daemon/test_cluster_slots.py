"""Batch claims fill every free worker at once; Kubernetes steps still take a slot of their cluster, so
no more than ``runner.perCluster`` of them run against one cluster however many executions a claim
brought in."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.execution.workers import ClusterSlots
from kurative.journal import ExecutionState, StepStatus, open_journal
from tests.integration.daemon.conftest import Setup, StartDaemon, journal_url, matched_alert  # noqa: F401

pytestmark = pytest.mark.timeout(120)

READ = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: read-web, version: 1}
    spec:
      trigger: {alertname: [ReadWeb]}
      approval: auto
      steps:
        - name: read
          action: kubernetes.get
          params: {namespace: "${labels.namespace}", kind: Deployment, name: web}
        - name: note
          action: log
          params: {message: "read for ${labels.pod}"}
"""


async def test_a_claimed_batch_runs_at_most_per_cluster_kubernetes_steps_at_once(
    setup: Setup, start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.kube.deployment("web", replicas=1)
    setup.playbook("read", READ)
    original = ClusterSlots.slot
    active = 0
    peak = 0

    @contextlib.asynccontextmanager
    async def counted(self: ClusterSlots, cluster: str | None) -> AsyncIterator[None]:
        nonlocal active, peak
        async with original(self, cluster):
            active += 1
            peak = max(peak, active)
            try:
                await asyncio.sleep(0.05)  # hold the slot long enough for the others to queue
                yield
            finally:
                active -= 1

    monkeypatch.setattr(ClusterSlots, "slot", counted)
    runner = {"lease": "10s", "pollInterval": "200ms", "shutdownTimeout": "5s", "workers": 8, "perCluster": 2}
    async with start_daemon(setup.settings(runner=runner), setup.env) as running, running.client() as client:
        labels = [
            {"alertname": "ReadWeb", "namespace": setup.kube.namespace, "pod": f"p{i}"} for i in range(10)
        ]
        await setup.post(client, *({"labels": label} for label in labels))
        executions = await running.settle(10, within=60)
    assert {e.state for e in executions} == {ExecutionState.SUCCEEDED}
    assert peak == 2


SLEEP_THEN_LOG = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: two-local-steps, version: 1}
    spec:
      trigger: {alertname: [TwoLocal]}
      approval: auto
      steps:
        - {name: first, action: sleep, params: {duration: 300ms}}
        - {name: second, action: log, params: {message: "second"}}
"""


async def test_steps_that_are_not_kubernetes_never_wait_for_a_cluster_slot(
    tmp_path: Path,
    journal_url: str,  # noqa: F811
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.yaml").write_text(textwrap.dedent(SLEEP_THEN_LOG))
    journal = await open_journal(journal_url, migrate=True)
    try:
        _, cache = await matched_alert(journal, rules, {"alertname": "TwoLocal"})
        slots = ClusterSlots(1)
        runner = ExecutionRunner(journal, Services(), RunnerSettings(per_cluster=1), cache, slots.slot)
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=30)
        async with slots.slot(None):  # another execution's Kubernetes step holds the default cluster
            state = await asyncio.wait_for(runner.run(claim), 10)
        assert state is ExecutionState.SUCCEEDED
        detail = await journal.get_execution(claim.execution.id)
        finals = [(s.name, s.status) for s in detail.steps if s.status is not StepStatus.STARTED]
        assert finals == [("first", StepStatus.SUCCEEDED), ("second", StepStatus.SUCCEEDED)]
    finally:
        await journal.close()
