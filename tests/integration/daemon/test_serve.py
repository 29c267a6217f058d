"""``kurative serve`` in-process: an alert over HTTP becomes an execution whose steps act on the
(fake) Kubernetes API and a real webhook sink, every step journaled; approvals, dry-run and stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from kurative.journal import Decision, ExecutionState, StepStatus
from tests.integration.daemon.conftest import WEBHOOK_KEY, Setup, StartDaemon, alert_payload
from tests.integration.kube.helpers import APPS

pytestmark = pytest.mark.timeout(120)

SCALE_AND_NOTIFY = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: scale-and-notify, version: 1}
    spec:
      trigger: {alertname: [TestAlert]}
      approval: auto
      steps:
        - name: scale
          action: kubernetes.scale
          params:
            {namespace: "${labels.namespace}", kind: Deployment, name: "${labels.deployment}", replicas: 4}
        - name: read
          action: kubernetes.get
          params: {namespace: "${labels.namespace}", kind: Deployment, name: "${labels.deployment}"}
        - name: notify
          action: http.request
          params:
            url: {secretRef: webhook}
            json: {text: "scaled ${labels.deployment} to ${steps.read.output.object.spec.replicas}"}
"""


async def test_an_alert_becomes_an_execution_that_acts_and_is_journaled(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.kube.deployment("web", replicas=2)
    setup.playbook("scale", SCALE_AND_NOTIFY)
    labels = {"alertname": "TestAlert", "namespace": setup.kube.namespace, "deployment": "web"}
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        answer = await client.post("/api/v1/alerts", json=alert_payload({"labels": labels}))
        assert answer.status_code == 200, answer.text
        (execution,) = await running.settle(1)
        assert execution.state is ExecutionState.SUCCEEDED, execution.error
        detail = await running.journal.get_execution(execution.id)
        finals = [s for s in detail.steps if s.status is not StepStatus.STARTED]
        assert [(s.name, s.status) for s in finals] == [
            ("scale", StepStatus.SUCCEEDED),
            ("read", StepStatus.SUCCEEDED),
            ("notify", StepStatus.SUCCEEDED),
        ]
        assert len(detail.steps) == 6  # a started and a final record per step
        deployment = setup.kube.get(setup.kube.ns_path("deployments", "web", group=APPS))
        assert deployment["spec"]["replicas"] == 4
        (hook,) = setup.sink.requests
        assert hook.json() == {"text": "scaled web to 4"}
        assert hook.idempotency_key == f"{execution.id}/notify"
        # the secret URL's key is nowhere in the journal
        assert WEBHOOK_KEY not in repr(detail)
        # a repeat of the same notification is the same firing episode: no second execution
        again = await client.post("/api/v1/alerts", json=alert_payload({"labels": labels}))
        assert again.status_code == 200
        assert len(await running.settle(1)) == 1


async def test_without_a_token_nothing_is_committed(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.playbook("scale", SCALE_AND_NOTIFY)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        client.headers.pop("Authorization")
        answer = await client.post(
            "/api/v1/alerts", json=alert_payload({"labels": {"alertname": "TestAlert"}})
        )
        assert answer.status_code == 401
        assert (await client.get("/readyz")).status_code == 200
        assert await running.journal.unmatched_alerts() == ()
        assert await running.executions() == []


HIGH_RISK = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: drain-node, version: 1}
    spec:
      trigger: {alertname: [NodeBroken], status: firing}
      steps:
        - name: drain
          action: kubernetes.cordon
          params: {node: "${labels.node}"}
        - name: check
          action: approval
          params: {message: "cordoned ${labels.node}; go on?"}
        - name: note
          action: log
          params: {message: "approved by ${steps.check.output.by}"}
"""


async def test_an_approval_step_waits_and_a_resolved_alert_cancels_the_waiting_execution(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.kube.node("node-a")
    setup.kube.node("node-b")
    setup.playbook("drain", HIGH_RISK)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        for node in ("node-a", "node-b"):
            labels = {"alertname": "NodeBroken", "node": node}
            assert (
                await client.post("/api/v1/alerts", json=alert_payload({"labels": labels}))
            ).status_code == 200

        async def waiting() -> list[str]:
            return [e.id for e in await running.executions() if e.state is ExecutionState.AWAITING_APPROVAL]

        import asyncio

        async with asyncio.timeout(30):
            while len(await waiting()) < 2:
                await asyncio.sleep(0.1)
        by_node = {}
        for execution in await running.executions():
            detail = await running.journal.get_execution(execution.id)
            alert = await running.journal.get_alert(execution.alert_id)
            by_node[alert.labels["node"]] = execution.id
            assert [s.status for s in detail.steps][:2] == [StepStatus.STARTED, StepStatus.SUCCEEDED]
        await running.journal.record_approval(by_node["node-a"], Decision.APPROVED, "alice", "looks fine")
        resolved = alert_payload({"labels": {"alertname": "NodeBroken", "node": "node-b"}}, status="resolved")
        assert (await client.post("/api/v1/alerts", json=resolved)).status_code == 200
        finished = {e.id: e for e in await running.settle(2)}
        assert finished[by_node["node-a"]].state is ExecutionState.SUCCEEDED
        assert finished[by_node["node-b"]].state is ExecutionState.CANCELLED
        detail = await running.journal.get_execution(by_node["node-a"])
        check = [s for s in detail.steps if s.name == "check" and s.status is StepStatus.SUCCEEDED]
        assert check[0].output == {"decision": "approved", "by": "alice", "reason": "looks fine"}


async def test_global_dry_run_changes_nothing(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.kube.deployment("web", replicas=2)
    setup.playbook("scale", SCALE_AND_NOTIFY)
    labels = {"alertname": "TestAlert", "namespace": setup.kube.namespace, "deployment": "web"}
    async with (
        start_daemon(setup.settings(safety={"dryRun": True}), setup.env) as running,
        running.client() as client,
    ):
        assert (
            await client.post("/api/v1/alerts", json=alert_payload({"labels": labels}))
        ).status_code == 200
        (execution,) = await running.settle(1)
        assert execution.dry_run
        detail = await running.journal.get_execution(execution.id)
        finals = {s.name: s.status for s in detail.steps if s.status is not StepStatus.STARTED}
        assert finals == {
            "scale": StepStatus.DRY_RUN,
            "read": StepStatus.DRY_RUN,
            "notify": StepStatus.DRY_RUN,
        }
    deployment = setup.kube.get(setup.kube.ns_path("deployments", "web", group=APPS))
    assert deployment["spec"]["replicas"] == 2
    assert setup.sink.requests == []


TIMED = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: ask-briefly, version: 1}
    spec:
      trigger: {alertname: [AskBriefly]}
      approval: auto
      steps:
        - name: ask
          action: approval
          params: {message: "go?", timeout: 1s}
        - name: act
          action: log
          params: {message: "never without a decision"}
        - name: report
          action: log
          always: true
          params: {message: "ask ended ${steps.ask.status}"}
"""


async def test_an_approval_step_without_a_decision_fails_at_its_timeout_and_always_steps_run(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.playbook("ask", TIMED)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "AskBriefly"}})
        (execution,) = await running.settle(1, within=30)
        assert execution.state is ExecutionState.FAILED
        assert "no decision within 1s" in (execution.error or "")
        detail = await running.journal.get_execution(execution.id)
        finals = {s.name: s for s in detail.steps if s.status is not StepStatus.STARTED}
        assert finals["ask"].status is StepStatus.FAILED
        assert finals["act"].status is StepStatus.SKIPPED
        assert finals["report"].status is StepStatus.SUCCEEDED
        assert finals["report"].output == {"message": "ask ended failed"}


BIG = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: big-params, version: 1}
    spec:
      trigger: {alertname: [Big]}
      approval: auto
      vars: {twice: "${annotations.big}${annotations.big}"}
      steps:
        - name: say
          action: log
          params: {message: "${vars.twice}${vars.twice}${annotations.big}"}
        - name: after
          action: log
          always: true
          params: {message: "after"}
"""


async def test_a_step_too_large_to_journal_fails_instead_of_crash_looping(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.playbook("big", BIG)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "Big"}, "annotations": {"big": "x" * 250_000}})
        (execution,) = await running.settle(1, within=30)
        assert execution.state is ExecutionState.FAILED
        assert "cannot be journalled" in (execution.error or "")
        detail = await running.journal.get_execution(execution.id)
        finals = {s.name: s.status for s in detail.steps if s.status is not StepStatus.STARTED}
        assert finals == {"say": StepStatus.FAILED, "after": StepStatus.SUCCEEDED}


FLAKY = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: keep-trying, version: 1}
    spec:
      trigger: {alertname: [KeepTrying]}
      approval: auto
      steps:
        - name: call
          action: http.request
          params: {url: "SINK/busy", json: {}}
          retry: {attempts: 50, backoff: 100ms}
"""


async def test_cancel_stops_a_step_between_its_retries(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.sink.answer(503, path="/busy")
    setup.playbook("flaky", FLAKY.replace("SINK", setup.sink.url))
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "KeepTrying"}})
        async with asyncio.timeout(30):
            while len(setup.sink.requests) < 2:
                await asyncio.sleep(0.05)
        (execution,) = await running.executions()
        await running.journal.cancel_execution(execution.id, "alice", "stop hammering it")
        at_cancel = len(setup.sink.requests)
        (done,) = await running.settle(1, within=30)
        assert done.state is ExecutionState.CANCELLED
        # at most the attempt already under way when the cancel came; none after it was seen
        assert len(setup.sink.requests) <= at_cancel + 1


def test_serve_refuses_to_start_without_its_tls_files(setup: Setup) -> None:
    setup.playbook("scale", SCALE_AND_NOTIFY)
    tls = {"certFile": "no.pem", "keyFile": "no.key"}
    config = setup.config(listen={"host": "127.0.0.1", "port": 9, "tls": tls})
    done = subprocess.run(
        [sys.executable, "-m", "kurative.cli", "serve", "--config", str(config)],
        env={**os.environ, **setup.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "listen.tls.certFile" in done.stderr
    assert '"event": "ready"' not in done.stderr
