"""The runner at its edges: a cancel between steps, a retry whose check cannot tell, a dry run
interrupted, an action's own timeout, an approval's params, and a claim in flight at shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

import kurative.execution.runner as runner_module
from kurative.actions import registry
from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings
from kurative.errors import TemporaryActionError
from kurative.execution.runner import ExecutionRunner
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings
from kurative.execution.workers import WorkerPool
from kurative.journal import ExecutionState, Journal, StepStart, StepStatus, open_journal
from tests.integration.daemon.conftest import HeldClaims, Setup, edge_playbook, matched_alert
from tests.support.fakekube import FakeCluster

pytestmark = pytest.mark.timeout(120)


async def _journal(setup: Setup) -> Journal:
    return await open_journal(setup.journal_url, migrate=True)


def _kube(fake_kube: FakeCluster) -> KubernetesAdapter:
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, fake_kube.api_client())
    return adapter


@dataclass
class LostDelete:
    """The first DELETE lands; the pod is recreated under its name (as a StatefulSet does) and the
    answer to the DELETE is lost, and so is the action's own next read."""

    inner: KubernetesAdapter
    kube: Any
    deletes: list[str] = field(default_factory=list)
    read_failed: bool = False

    def client(self, cluster: str | None) -> Any:
        outer, inner = self, self.inner.client(cluster)

        class Client:
            cluster = inner.cluster

            async def request(self, method: str, path: str, **kwargs: Any) -> Any:
                if method == "GET" and outer.deletes and not outer.read_failed:
                    outer.read_failed = True
                    raise TemporaryActionError(f"GET {path}: connection reset")
                answer = await inner.request(method, path, **kwargs)
                if method == "DELETE":
                    outer.deletes.append(path)
                    if len(outer.deletes) == 1:
                        outer.kube.pod("db-0")  # the replacement
                        raise TemporaryActionError(f"DELETE {path}: read timed out")
                return answer

            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

        return Client()


async def test_a_retry_whose_check_cannot_tell_parks_for_review_and_spares_the_replacement(
    setup: Setup, fake_kube: FakeCluster
) -> None:
    first = setup.kube.pod("db-0")
    steps = f"""\
        - name: kill
          action: kubernetes.delete_pod
          params: {{namespace: {setup.kube.namespace}, pod: db-0}}
          retry: {{attempts: 3, backoff: 100ms}}
"""
    setup.playbook("kill", edge_playbook("kill", steps))
    journal = await _journal(setup)
    adapter = _kube(fake_kube)
    lossy = LostDelete(adapter, setup.kube)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        runner = ExecutionRunner(journal, Services(kubernetes=lossy), RunnerSettings(), cache)  # type: ignore[arg-type]
        (claim,) = await journal.claim_executions("replica-a")
        state = await runner.run(claim)
        path = setup.kube.ns_path("pods", "db-0")
        assert len(lossy.deletes) == 1, f"deleted {len(lossy.deletes)} times; ended {state}"
        assert setup.kube.get(path)["metadata"]["uid"] != first["metadata"]["uid"]  # the replacement lives
        assert state is ExecutionState.NEEDS_REVIEW
        detail = await journal.get_execution(claim.execution.id)
        assert "cannot be proven done or not done" in (detail.execution.error or "")
        assert [s.status for s in detail.steps] == [
            StepStatus.STARTED,
            StepStatus.FAILED,
        ]  # nothing left open
    finally:
        adapter.close()
        await journal.close()


async def test_an_interrupted_dry_run_step_runs_again_as_a_dry_run(
    setup: Setup, fake_kube: FakeCluster
) -> None:
    setup.kube.pod("web")
    steps = f"""\
        - name: kill
          action: kubernetes.delete_pod
          params: {{namespace: {setup.kube.namespace}, pod: web}}
"""
    setup.playbook("kill", edge_playbook("kill", steps))
    journal = await _journal(setup)
    adapter = _kube(fake_kube)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        (dead,) = await journal.claim_executions("dead-replica", lease_seconds=0.5)
        params = {"namespace": setup.kube.namespace, "pod": "web"}
        key = f"{dead.execution.id}/kill"
        await journal.record_step_started(
            dead.lease, StepStart(0, "kill", "kubernetes.delete_pod", 1, params, key)
        )
        await asyncio.sleep(0.7)  # the dead replica's lease expires
        (claim,) = await journal.claim_executions("replica-b")
        assert claim.recovered
        runner = ExecutionRunner(journal, Services(kubernetes=adapter), RunnerSettings(dry_run=True), cache)
        state = await runner.run(claim)
        detail = await journal.get_execution(claim.execution.id)
        assert state is ExecutionState.SUCCEEDED, detail.execution.error
        assert [s.status for s in detail.steps if s.status is not StepStatus.STARTED] == [StepStatus.DRY_RUN]
        assert setup.kube.exists(setup.kube.ns_path("pods", "web"))
    finally:
        adapter.close()
        await journal.close()


async def test_an_actions_own_timeout_in_a_step_without_timeout_fails_the_step(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = registry.get_action("log")
    assert declared is not None

    async def times_out(ctx: Any, params: Any) -> Any:
        raise TimeoutError("socket read timed out")  # socket.timeout is this exception

    spec = dataclasses.replace(declared, implementation=times_out)
    monkeypatch.setattr(
        runner_module, "get_action", lambda name: spec if name == "log" else registry.get_action(name)
    )
    setup.playbook("say", edge_playbook("say", "        - {name: say, action: log, params: {message: hi}}\n"))
    journal = await _journal(setup)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        runner = ExecutionRunner(journal, Services(), RunnerSettings(), cache)
        (claim,) = await journal.claim_executions("replica-a")
        assert await runner.run(claim) is ExecutionState.FAILED
        detail = await journal.get_execution(claim.execution.id)
        assert "log timed out: socket read timed out" in (detail.steps[-1].error or "")
    finally:
        await journal.close()


async def test_an_approval_step_whose_rendered_params_break_its_schema_fails(setup: Setup) -> None:
    steps = '        - {name: ask, action: approval, params: {message: "go?", timeout: "${labels.wait}"}}\n'
    setup.playbook("ask", edge_playbook("ask", steps))
    journal = await _journal(setup)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge", "wait": "soon"})
        runner = ExecutionRunner(journal, Services(), RunnerSettings(), cache)
        (claim,) = await journal.claim_executions("replica-a")
        assert await runner.run(claim) is ExecutionState.FAILED
        detail = await journal.get_execution(claim.execution.id)
        assert [s.status for s in detail.steps] == [StepStatus.FAILED]
        assert "invalid params for approval" in (detail.steps[0].error or "")
    finally:
        await journal.close()


async def test_executions_a_claim_in_flight_returns_after_stop_began_are_handed_back(setup: Setup) -> None:
    setup.playbook(
        "nap", edge_playbook("nap", "        - {name: nap, action: sleep, params: {duration: 1s}}\n")
    )
    journal = await _journal(setup)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        held = HeldClaims(journal)
        settings = RunnerSettings(poll_interval=0.1)
        runner = ExecutionRunner(held, Services(), settings, cache)  # type: ignore[arg-type]
        pool = WorkerPool(held, runner, settings)  # type: ignore[arg-type]
        looping = asyncio.create_task(pool.run())
        await held.claiming.wait()
        stopping = asyncio.create_task(pool.stop(deadline=5))
        await asyncio.sleep(0)  # stop() has begun
        held.go.set()
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(looping, 10)
        assert pool.busy == 0
        (execution,) = (await journal.list_executions()).items
        assert execution.state is ExecutionState.PENDING  # for any replica, at once
        assert execution.lease_owner is None
        (again,) = await journal.claim_executions("replica-b")
        assert not again.recovered
    finally:
        await journal.close()


async def test_a_cancel_asked_for_during_a_step_stops_the_next_one_and_says_who_and_why(setup: Setup) -> None:
    steps = """\
        - {name: first, action: sleep, params: {duration: 1s}}
        - {name: second, action: log, params: {message: "must not run"}}
        - {name: third, action: log, params: {message: "nor this"}}
"""
    setup.playbook("two", edge_playbook("two", steps))
    journal = await _journal(setup)
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Edge"})
        # renewals every 10 s: only the step's own write can tell the runner in time
        runner = ExecutionRunner(journal, Services(), RunnerSettings(lease_seconds=30), cache)
        (claim,) = await journal.claim_executions("replica-a", lease_seconds=30)
        running = asyncio.create_task(runner.run(claim))
        while not (await journal.get_execution(claim.execution.id)).steps:
            await asyncio.sleep(0.01)  # "first" has started
        asked = await journal.cancel_execution(claim.execution.id, "alice", "wrong cluster")
        assert asked.state is ExecutionState.RUNNING
        assert asked.error == "cancelled by alice: wrong cluster"  # recorded at once, not only at the end
        assert await asyncio.wait_for(running, 30) is ExecutionState.CANCELLED
        detail = await journal.get_execution(claim.execution.id)
        assert detail.execution.error == "cancelled by alice: wrong cluster"
        records = [(s.name, s.status, s.error) for s in detail.steps]
        assert records == [
            ("first", StepStatus.STARTED, None),
            ("first", StepStatus.SUCCEEDED, None),
            ("second", StepStatus.STARTED, None),
            ("second", StepStatus.SKIPPED, "cancelled before it ran"),
        ]
    finally:
        await journal.close()


HANGING_WEBHOOK = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: hanging-webhook, version: 1}
    spec:
      trigger: {alertname: [Hangs]}
      approval: auto
      steps:
        - name: call
          action: http.request
          timeout: 400ms
          params: {url: "SINK/hook", json: {}}
"""


async def test_a_step_timeout_shorter_than_the_requests_counts_against_the_hosts_breaker(
    setup: Setup,
) -> None:
    from kurative.adapters.http import HttpAdapter
    from kurative.execution.breakers import BreakerPolicy, BreakerSettings

    setup.sink.answer(hang=True)
    setup.playbook("hangs", HANGING_WEBHOOK.replace("SINK", setup.sink.url))
    journal = await _journal(setup)
    policy = BreakerPolicy(BreakerSettings(fail_max=1))
    http = HttpAdapter(breakers=policy.for_target)  # a request's timeout: 10s
    try:
        _, cache = await matched_alert(journal, setup.rules, {"alertname": "Hangs"})
        runner = ExecutionRunner(journal, Services(http=http), RunnerSettings(), cache)
        (claim,) = await journal.claim_executions("replica-a")
        await runner.run(claim)
        detail = await journal.get_execution(claim.execution.id)
    finally:
        await http.aclose()
        await journal.close()
    (failed,) = [s for s in detail.steps if s.status is StepStatus.FAILED]
    assert "no answer within" in str(failed.error)
    assert [(s.state, s.failures) for s in policy.snapshot()] == [("open", 1)]
