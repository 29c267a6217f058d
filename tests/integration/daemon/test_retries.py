"""A retry never repeats a change that already landed: when an attempt's answer is lost after the API
server applied it (a timeout, a reset), the runner asks the action's check before trying again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings
from kurative.errors import TemporaryActionError
from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.journal import ExecutionState, StepStatus, open_journal
from tests.integration.daemon.conftest import Setup, matched_alert
from tests.support.fakekube import FakeCluster

pytestmark = pytest.mark.timeout(120)

PLAYBOOKS = {
    "restart": ("kubernetes.rollout_restart", "{namespace: NS, kind: Deployment, name: web}"),
    "rollback": ("kubernetes.rollback_deployment", "{namespace: NS, name: web}"),
}
TEMPLATE = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: {name}, version: 1}}
    spec:
      trigger: {{alertname: [Flaky]}}
      approval: auto
      steps:
        - name: change
          action: {action}
          params: {params}
          retry: {{attempts: 3, backoff: 100ms}}
"""


@dataclass
class LostAnswers:
    """The real adapter; the first PATCH reaches the API server, but its answer never comes back."""

    inner: KubernetesAdapter
    patches: list[str] = field(default_factory=list)

    def client(self, cluster: str | None) -> Any:
        outer = self
        inner = self.inner.client(cluster)

        class Client:
            cluster = inner.cluster

            async def request(self, method: str, path: str, **kwargs: Any) -> Any:
                answer = await inner.request(method, path, **kwargs)
                if method == "PATCH" and kwargs.get("query", {}).get("dryRun") is None:
                    outer.patches.append(path)
                    if len(outer.patches) == 1:
                        raise TemporaryActionError(f"PATCH {path}: read timed out")
                return answer

            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

        return Client()


@pytest.mark.parametrize("which", sorted(PLAYBOOKS))
async def test_a_change_whose_answer_was_lost_is_found_done_not_made_twice(
    setup: Setup, fake_kube: FakeCluster, which: str
) -> None:
    setup.kube.deployment("web", replicas=1)
    setup.kube.wait_revision("web", "1")
    if which == "rollback":  # a bad rollout to roll back from
        path = setup.kube.ns_path("deployments", "web", group="/apis/apps/v1")
        body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:broken"}]}}}}
        setup.kube.patch(path, body, "application/strategic-merge-patch+json")
        setup.kube.wait_revision("web", "2")
    action, params = PLAYBOOKS[which]
    params = params.replace("NS", setup.kube.namespace)
    setup.playbook(which, TEMPLATE.format(name=which, action=action, params=params))
    journal = await open_journal(setup.journal_url, migrate=True)
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, fake_kube.api_client())
    lossy = LostAnswers(adapter)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Flaky"})
        runner = ExecutionRunner(journal, Services(kubernetes=lossy), RunnerSettings(), cache)  # type: ignore[arg-type]
        (claim,) = await journal.claim_executions("replica-a")
        assert await runner.run(claim) is ExecutionState.SUCCEEDED
        detail = await journal.get_execution(claim.execution.id)
        finals = [(s.attempt, s.status, s.output) for s in detail.steps if s.status is not StepStatus.STARTED]
        assert finals == [
            (1, StepStatus.FAILED, {"retry": True}),
            (2, StepStatus.SUCCEEDED, {"recovered": True}),
        ]
        assert len(lossy.patches) == 1  # changed once
        if which == "rollback":
            path = setup.kube.ns_path("deployments", "web", group="/apis/apps/v1")
            image = setup.kube.get(path)["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image != "nginx:broken"
    finally:
        adapter.close()
        await journal.close()
