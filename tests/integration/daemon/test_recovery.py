"""Recovery of a step a dead replica left open: the process died after the action took effect and
before its final record. A stamped Kubernetes step is then recorded as done, never applied twice."""

from __future__ import annotations

import asyncio

import pytest

from kurative.actions.base import ActionContext
from kurative.actions.registry import get_action
from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings
from kurative.journal import ExecutionState, StepStart, StepStatus, open_journal
from tests.integration.daemon.conftest import Setup, StartDaemon, matched_alert
from tests.integration.kube.helpers import APPS
from tests.support.fakekube import FakeCluster

pytestmark = pytest.mark.timeout(120)

RESTART = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: restart-web, version: 1}
    spec:
      trigger: {alertname: [WebStuck]}
      approval: auto
      steps:
        - name: restart
          action: kubernetes.rollout_restart
          params: {namespace: "${labels.namespace}", kind: Deployment, name: web}
        - name: note
          action: log
          params: {message: "restarted"}
"""


async def test_a_stamped_step_that_took_effect_before_the_crash_is_recorded_done_not_repeated(
    setup: Setup, start_daemon: StartDaemon, fake_kube: FakeCluster
) -> None:
    setup.kube.deployment("web", replicas=1)
    setup.playbook("restart", RESTART)
    settings = setup.settings()
    journal = await open_journal(setup.journal_url, migrate=True)
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, fake_kube.api_client())
    try:
        # A replica that matched the alert, claimed the execution, started the step, restarted the
        # Deployment - and died before writing the step's result.
        labels = {"alertname": "WebStuck", "namespace": setup.kube.namespace}
        alert_id, _ = await matched_alert(journal, setup.rules, labels)
        (claim,) = await journal.claim_executions("dead-replica", lease_seconds=1.0)
        execution_id = claim.execution.id
        assert claim.execution.alert_id == alert_id
        params = {"namespace": setup.kube.namespace, "kind": "Deployment", "name": "web"}
        await journal.record_step_started(
            claim.lease,
            StepStart(0, "restart", "kubernetes.rollout_restart", 1, params, f"{execution_id}/restart"),
        )
        spec = get_action("kubernetes.rollout_restart")
        assert spec is not None
        ctx = ActionContext(execution_id, "restart", services={"kubernetes": adapter})
        await spec.run(ctx, params)
        path = setup.kube.ns_path("deployments", "web", group=APPS)
        restarted = setup.kube.get(path)["spec"]["template"]["metadata"]["annotations"]
        await asyncio.sleep(1.2)  # the dead replica's lease runs out

        async with start_daemon(settings, setup.env) as running:
            (done,) = await running.settle(1)
            assert done.state is ExecutionState.SUCCEEDED, done.error
            detail = await running.journal.get_execution(execution_id)
            restart = [s for s in detail.steps if s.name == "restart" and s.status is not StepStatus.STARTED]
            assert [(s.status, s.attempt, s.output) for s in restart] == [
                (StepStatus.SUCCEEDED, 1, {"recovered": True})
            ]
        # the Deployment was restarted once: the recovered step did not restart it again
        assert setup.kube.get(path)["spec"]["template"]["metadata"]["annotations"] == restarted
    finally:
        adapter.close()
        await journal.close()
