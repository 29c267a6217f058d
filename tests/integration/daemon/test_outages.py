"""The daemon through outages of what it depends on: a Kubernetes API server that fails and then hangs
(breakers open, executions are parked, not failed, and all finish once it recovers), PostgreSQL
stopped under a stream of alerts (503 with Retry-After, never a 200 for an uncommitted alert, nothing
acknowledged lost), and a webhook host whose name does not resolve (a clear temporary error, retried
as configured, with the other executions unaffected)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from kurative.execution.runner import BREAKER_MARK
from kurative.journal import ExecutionState, StepRecord, StepStatus
from tests.integration.daemon.conftest import (
    TOKEN,
    WEBHOOK_KEY,
    Running,
    Setup,
    StartDaemon,
    alert_payload,
)
from tests.integration.kube.helpers import APPS, Kube
from tests.support.fakekube import FakeCluster
from tests.support.http_sink import HttpSink
from tests.support.postgres import PostgresServer, start_postgres

pytestmark = pytest.mark.timeout(180)

LogEvents = list[MutableMapping[str, Any]]


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    """These tests are about the daemon's other dependencies: the SQLite journal is enough."""
    return f"sqlite:///{tmp_path / 'journal.sqlite'}"


@pytest.fixture
def logs() -> Iterator[LogEvents]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def wait_for(what: str, check: Any, within: float = 30.0) -> None:
    """Poll ``check()`` (sync or async) until it is true."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {within:g}s") from None


def transitions(logs: LogEvents, target: str) -> list[tuple[str, str]]:
    return [
        (e["old"], e["new"])
        for e in list(logs)
        if e.get("event") == "breaker_state_changed" and target in (e.get("target"), e.get("breaker"))
    ]


async def step_records(running: Running, execution_id: str) -> list[StepRecord]:
    return list((await running.journal.get_execution(execution_id)).steps)


def parked(records: list[StepRecord]) -> list[StepRecord]:
    return [r for r in records if r.status is StepStatus.FAILED and (r.output or {}).get(BREAKER_MARK)]


def counted(records: list[StepRecord]) -> list[StepRecord]:
    return [r for r in records if r.status is StepStatus.FAILED and not (r.output or {}).get(BREAKER_MARK)]


# -- 1. the Kubernetes API server fails, then hangs, then recovers ------------------------------------

ATTEMPTS = 4

SCALE = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: scale-through-outage, version: 1}}
    spec:
      trigger: {{alertname: [KubeOutage]}}
      approval: auto
      steps:
        - name: scale
          action: kubernetes.scale
          retry: {{attempts: {ATTEMPTS}, backoff: 100ms}}
          params:
            namespace: "${{labels.namespace}}"
            kind: Deployment
            name: "${{labels.deployment}}"
            replicas: 3
"""

FAIL_MAX = 3
DEPLOYMENTS = [f"web-{i}" for i in range(6)]


async def test_the_kubernetes_breaker_parks_executions_through_errors_and_a_hang_and_all_finish(
    setup: Setup, start_daemon: StartDaemon, fake_kube: FakeCluster, logs: LogEvents
) -> None:
    """500s open the breaker after failMax failures; the half-open probe fails on a 500, then on the
    hang (the read timeout); meanwhile every execution that meets the open breaker is parked, not
    failed, and the parking is not counted against ``retry.attempts``: with K failed probes no
    execution can count more than 1 + K real failures (< ATTEMPTS), while every execution that
    tripped the breaker meets it open at least ATTEMPTS - 1 times (so counting it would fail it)."""
    for name in DEPLOYMENTS:
        setup.kube.deployment(name, replicas=1)
    setup.playbook("scale", SCALE)
    target = "kubernetes/default"  # steps name no cluster: the kubeconfig's current context
    settings = setup.settings(
        breakers={"overrides": {"kubernetes/": {"failMax": FAIL_MAX, "resetTimeout": "1s"}}},
        clusters={"kubeconfig": str(setup.kube_config), "timeout": "1s"},
    )
    assert settings.kubernetes.read_timeout == 1.0
    outage = fake_kube.outage(500)
    try:
        async with start_daemon(settings, setup.env) as running, running.client() as client:
            for name in DEPLOYMENTS:
                labels = {"alertname": "KubeOutage", "namespace": setup.kube.namespace, "deployment": name}
                await setup.post(client, {"labels": labels})
            # 500s: the breaker opens after failMax failures, then a probe meets a 500 and reopens it
            await wait_for("the breaker opens", lambda: ("closed", "open") in transitions(logs, target))
            await wait_for(
                "a half-open probe fails on a 500",
                lambda: ("half-open", "open") in transitions(logs, target),
            )
            # the API server now accepts connections but never answers: the probe times out. The
            # fault changes at once (before the journal is read), so that no second probe meets a 500
            before = len(transitions(logs, target))
            hang = fake_kube.outage(hang=True)
            assert outage.seen >= FAIL_MAX
            executions = await running.executions()
            assert len(executions) == len(DEPLOYMENTS)
            assert not any(e.state.finished for e in executions), [e.error for e in executions]
            await wait_for(
                "a half-open probe times out on the hang",
                lambda: ("half-open", "open") in transitions(logs, target)[before:],
            )
            fake_kube.recover()  # at once again; none finished during the hang (all succeed below)
            assert hang.seen >= 1
            finished = await running.settle(len(DEPLOYMENTS), within=60)
            assert {e.state for e in finished} == {ExecutionState.SUCCEEDED}, [e.error for e in finished]
            records = {e.id: await step_records(running, e.id) for e in finished}
    finally:
        fake_kube.recover()

    for name in DEPLOYMENTS:
        assert setup.kube.get(setup.kube.ns_path("deployments", name, group=APPS))["spec"]["replicas"] == 3
    seen = transitions(logs, target)
    assert seen[0] == ("closed", "open")
    assert seen.count(("open", "half-open")) >= 3
    assert seen[-2:] == [("open", "half-open"), ("half-open", "closed")]
    probes_failed = seen.count(("half-open", "open"))
    assert probes_failed == 2, seen
    # a step that meets the open breaker is parked: journaled as a failed attempt marked breaker_open
    # (or, before the retry of an attempt that may have acted, parked by the check that would ask)
    for r in records.values():
        for record in parked(r):
            assert f"circuit breaker for {target} is open" in (record.error or ""), record
    # real failures (500s, the timeout) stay within the bound; the open breaker never counted
    assert all(len(counted(r)) <= 1 + probes_failed for r in records.values())
    tripped = [execution for execution, r in records.items() if counted(r)]
    assert tripped
    errors = {record.error for r in records.values() for record in counted(r)}
    assert any("HTTP 500" in (e or "") for e in errors), errors
    # the probe that met the hang (one call: half-open admits a single trial at a time) is a step's
    # attempt, counted with "did not answer", or the check before a retry, which parks; either way
    # the hang reopened the breaker (waited for above) and held no worker past the read timeout
    assert all("did not answer" in (e or "") or "HTTP 500" in (e or "") for e in errors), errors
    # a parked execution goes back to pending with a delay until the half-open probe
    releases = [
        e for e in list(logs) if e.get("event") == "execution_released" and e.get("state") == "pending"
    ]
    assert releases
    assert all(0 < (e.get("delay") or 0) <= 1.0 for e in releases), releases
    # every park hands the execution back to the workers: claims beyond the first are parks
    parks = {e.id: e.attempt - 1 for e in finished}
    assert all(parks[execution] >= 1 for execution in records), parks
    # counting the parking against retry.attempts would have failed at least one execution
    assert any(len(counted(records[e])) + parks[e] >= ATTEMPTS for e in tripped), (parks, records)


# -- 3. a webhook host whose name does not resolve ------------------------------------------------------

NOWHERE = "http://kurative-nowhere.invalid/hooks/alert"

UNRESOLVABLE = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: notify-nowhere, version: 1}}
    spec:
      trigger: {{alertname: [NotifyNowhere]}}
      approval: auto
      steps:
        - name: notify
          action: http.request
          retry: {{attempts: 3, backoff: 100ms}}
          params: {{method: POST, url: "{NOWHERE}", json: {{text: "${{labels.alertname}}"}}}}
"""

REACHABLE = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: notify-sink, version: 1}
    spec:
      trigger: {alertname: [NotifySink]}
      approval: auto
      steps:
        - name: notify
          action: http.request
          params: {method: POST, url: {secretRef: webhook}, json: {text: "${labels.n}"}}
"""


async def test_a_webhook_host_that_does_not_resolve_fails_clearly_after_its_retries_and_blocks_nothing(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    """One worker only: if the unresolvable host held it, the other executions would never run."""
    setup.playbook("nowhere", UNRESOLVABLE)
    setup.playbook("sink", REACHABLE)
    settings = setup.settings(runner={"workers": 1, "lease": "3s", "pollInterval": "200ms"})
    async with start_daemon(settings, setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "NotifyNowhere"}})
        for n in range(3):
            await setup.post(client, {"labels": {"alertname": "NotifySink", "n": str(n)}})
        finished = await running.settle(4)
        by_playbook: dict[str, list[Any]] = {}
        for execution in finished:
            by_playbook.setdefault(execution.playbook_name, []).append(execution)
        (nowhere,) = by_playbook["notify-nowhere"]
        assert nowhere.state is ExecutionState.FAILED
        records = await step_records(running, nowhere.id)
    assert {e.state for e in by_playbook["notify-sink"]} == {ExecutionState.SUCCEEDED}
    assert sorted(r.json()["text"] for r in setup.sink.requests) == ["0", "1", "2"]
    # a temporary error: retried as configured (three attempts), then failed with a clear message
    failures = counted(records)
    assert [r.attempt for r in failures] == [1, 2, 3]
    assert [bool((r.output or {}).get("retry")) for r in failures] == [True, True, False]
    assert not parked(records)
    message = failures[-1].error or ""
    assert "kurative-nowhere.invalid" in message
    assert "cannot connect" in message
    assert message in (nowhere.error or "")


# -- 2. PostgreSQL stopped under a stream of alerts ---------------------------------------------------

LOGGED = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: note-alert, version: 1}
    spec:
      trigger: {alertname: [PgOutage]}
      approval: auto
      steps:
        - name: note
          action: log
          params: {message: "alert ${labels.n} handled"}
"""

OUTAGE_SECONDS = 10.0
MAX_TRIES = 200
"""How many times a sender tries one alert before it gives up (Alertmanager also gives up, later)."""


class Sender:
    """Posts alert after alert as Alertmanager would: each until it is acknowledged with a 200,
    waiting out a 503 for its Retry-After (capped at one second here, to keep the test short)."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self.client = client
        self.name = name
        self.acknowledged: list[str] = []
        self.statuses: list[int] = []
        self.unavailable: list[httpx.Response] = []
        self.sending = True

    async def run(self) -> None:
        n = 0
        while self.sending:
            label = f"{self.name}-{n}"
            payload = alert_payload({"labels": {"alertname": "PgOutage", "n": label}})
            for _ in range(MAX_TRIES):
                answer = await self.client.post("/api/v1/alerts", json=payload)
                self.statuses.append(answer.status_code)
                if answer.status_code == 200:
                    self.acknowledged.append(label)
                    break
                if answer.status_code != 503:
                    return  # the test fails on it: only 200 and 503 are right here
                self.unavailable.append(answer)
                await asyncio.sleep(min(float(answer.headers.get("Retry-After", "1")), 1.0))
            n += 1
            await asyncio.sleep(0.02)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started again while the daemon uses it."""
    with start_postgres() as server:
        yield server


@pytest.mark.postgres
async def test_postgres_stopped_under_load_answers_503_and_loses_no_acknowledged_alert(
    own_postgres: PostgresServer,
    tmp_path: Path,
    kube: Kube,
    sink: HttpSink,
    fake_kube: FakeCluster,
    start_daemon: StartDaemon,
    logs: LogEvents,
) -> None:
    fake_kube.kubeconfig(tmp_path / "kubeconfig")
    url = own_postgres.create_database("kurative")
    env = {"TEST_AM_TOKEN": TOKEN, "TEST_WEBHOOK_URL": f"{sink.url}/hooks/{WEBHOOK_KEY}"}
    setup = Setup(tmp_path, url, kube, sink, env)
    setup.playbook("note", LOGGED)
    settings = setup.settings(breakers={"overrides": {"journal": {"failMax": 3, "resetTimeout": "1s"}}})
    async with start_daemon(settings, setup.env) as running, running.client() as client:
        senders = [Sender(client, name) for name in ("a", "b")]
        sending = [asyncio.create_task(s.run()) for s in senders]
        try:
            await wait_for("alerts are acknowledged", lambda: all(len(s.acknowledged) >= 5 for s in senders))
            before = sum(len(s.acknowledged) for s in senders)
            await asyncio.to_thread(own_postgres.stop, "immediate")
            # while the journal cannot commit: 503 with Retry-After, and /readyz says not ready
            await wait_for("a 503 during the outage", lambda: all(s.unavailable for s in senders))
            stopped_at = asyncio.get_running_loop().time()
            readiness = await client.get("/readyz")
            assert readiness.status_code == 503, readiness.text
            assert any("journal" in reason for reason in readiness.json()["reasons"])
            acknowledged_at_stop = sum(len(s.acknowledged) for s in senders)
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (asyncio.get_running_loop().time() - stopped_at)))
            # nothing was acknowledged while nothing could be committed (bar what was in flight)
            assert sum(len(s.acknowledged) for s in senders) <= acknowledged_at_stop + len(senders)
            # the daemon keeps serving: alive, not ready, the senders still being answered
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            assert not any(task.done() for task in sending)
            await asyncio.to_thread(own_postgres.start)
            during = sum(len(s.acknowledged) for s in senders)
            await wait_for(
                "alerts are acknowledged again",
                lambda: (
                    all(len(s.acknowledged) >= 5 for s in senders)
                    and sum(len(s.acknowledged) for s in senders) >= during + 10
                ),
                within=60,
            )
            await wait_for("/readyz is 200 again", lambda: _ready(client), within=30)
        finally:
            for sender in senders:
                sender.sending = False
            await asyncio.wait_for(asyncio.gather(*sending), 60)
        statuses = {code for s in senders for code in s.statuses}
        assert statuses == {200, 503}, statuses
        for answer in (a for s in senders for a in s.unavailable):
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.headers["content-type"].startswith("application/problem+json")
        acknowledged = {label for s in senders for label in s.acknowledged}
        assert len(acknowledged) > before
        # every acknowledged alert is in the journal and got its execution, once
        finished = await running.settle(len(acknowledged), within=60)
        handled: list[str] = []
        for execution in finished:
            assert execution.state is ExecutionState.SUCCEEDED, execution.error
            handled.append((await running.journal.get_alert(execution.alert_id)).labels["n"])
        assert sorted(handled) == sorted(acknowledged)
        assert (await client.get("/readyz")).status_code == 200
    # the commits that failed opened the journal's breaker; a probe closed it once PostgreSQL was back
    seen = transitions(logs, "journal")
    assert seen[0] == ("closed", "open"), seen
    assert seen[-1] == ("half-open", "closed"), seen
    assert any(e.get("event") == "alerts_not_committed" for e in list(logs))


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
