"""Long outages under load, with the durations the reliability issue names (parameters: set
``KURATIVE_PG_OUTAGE_SECONDS``, ``KURATIVE_API_ERROR_SECONDS``, ``KURATIVE_API_HANG_SECONDS``).

tests/integration/daemon/test_outages.py covers the mechanics with short outages and a test client
as the sender; here the sender is a real Alertmanager, and the outages last:

- PostgreSQL stopped for 30 s while Alertmanager delivers a stream of alerts to the daemon: the
  ingress answers 503, Alertmanager retries, the journal breaker opens and closes again, and every
  alert Alertmanager was given ends with exactly one execution whose webhook took effect once;
- the Kubernetes API server answering 500 for 60 s and then hanging for 10 s while alerts keep
  arriving: the breaker opens, executions are parked (not failed) for the whole outage, and all
  finish after recovery with one change per Deployment.

Each test prints its row (test, load, faults injected, lost, duplicated, recovered, time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from kurative.config import Overrides, Settings, load_settings
from kurative.daemon import Daemon
from kurative.errors import JournalUnavailable
from kurative.execution.runner import BREAKER_MARK
from kurative.journal import Execution, ExecutionState, Journal, StepStatus, open_journal
from tests.integration.daemon.conftest import TOKEN, WEBHOOK_KEY, alert_payload
from tests.integration.kube.helpers import APPS, Kube
from tests.support.alertmanager import AlertmanagerServer, start_alertmanager
from tests.support.fakekube import FakeCluster
from tests.support.http_sink import HttpSink
from tests.support.postgres import PostgresServer, free_port, start_postgres

PG_OUTAGE_SECONDS = float(os.environ.get("KURATIVE_PG_OUTAGE_SECONDS", "30"))
API_ERROR_SECONDS = float(os.environ.get("KURATIVE_API_ERROR_SECONDS", "60"))
API_HANG_SECONDS = float(os.environ.get("KURATIVE_API_HANG_SECONDS", "10"))

pytestmark = pytest.mark.timeout(120 + 2 * (PG_OUTAGE_SECONDS + API_ERROR_SECONDS + API_HANG_SECONDS))

LogEvents = list[Any]


def print_row(request: pytest.FixtureRequest, row: dict[str, Any]) -> None:
    """One line of figures, to the terminal past the output capture."""
    line = " | ".join(f"{key}: {value}" for key, value in row.items())
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(line)


def write_config(folder: Path, journal_url: str, kubeconfig: Path, **extra: Any) -> Settings:
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "auth": {"bearerTokens": [{"secretRef": "am-token"}]},
        "journal": {"url": journal_url, "migrate": True, "wait": "10s", "timeout": "2s"},
        "playbooks": {"paths": ["rules"]},
        "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "3s"},
        "clusters": {"kubeconfig": str(kubeconfig), "timeout": "1s"},
        "secrets": {"am-token": {"env": "TEST_AM_TOKEN"}, "webhook": {"env": "TEST_WEBHOOK_URL"}},
        "logging": {"format": "json", "level": "info"},
        **extra,
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))
    return load_settings(Overrides(config=str(path)), {})


def playbook(folder: Path, body: str) -> None:
    rules = folder / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "playbook.yaml").write_text(textwrap.dedent(body))


@dataclass
class Running:
    daemon: Daemon
    journal: Journal

    @property
    def url(self) -> str:
        assert self.daemon.url is not None
        return self.daemon.url

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})

    async def executions(self) -> list[Execution]:
        found: list[Execution] = []
        cursor: str | None = None
        while True:
            page = await self.journal.list_executions(limit=500, cursor=cursor)
            found += page.items
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def settle(self, count: int, *, within: float) -> list[Execution]:
        found: list[Execution] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    found = await self.executions()
                    if len(found) >= count and all(e.state.finished for e in found):
                        return found
                    await asyncio.sleep(0.2)
        states = Counter(e.state.value for e in found)
        raise AssertionError(f"{count} executions not all finished within {within:g}s: {len(found)} {states}")


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings, env: dict[str, str]) -> AsyncIterator[Running]:
    daemon = Daemon(settings, environ=env)
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready in done, "the daemon did not get ready in 30 s"
    journal = await open_journal(settings.journal.url)
    try:
        yield Running(daemon, journal)
    finally:
        await journal.close()
        daemon.request_stop()
        await asyncio.wait_for(task, 60)


def transitions(logs: LogEvents, target: str) -> list[tuple[str, str]]:
    return [
        (e["old"], e["new"])
        for e in list(logs)
        if e.get("event") == "breaker_state_changed" and target in (e.get("target"), e.get("breaker"))
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``, in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


# -- PostgreSQL stopped while a real Alertmanager delivers -------------------------------------------

NOTIFY = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: notify, version: 1}
    spec:
      trigger: {alertname: [PgOutageLoad]}
      approval: auto
      steps:
        - name: notify
          action: http.request
          retry: {attempts: 5, backoff: 200ms}
          params: {method: POST, url: {secretRef: webhook}, json: {text: "alert ${labels.n}"}}
"""

BATCH = 3
"""Alerts given to Alertmanager every half second, before, during and after the outage."""


def give_alerts(am: AlertmanagerServer, first: int, count: int) -> None:
    """POST new alerts to Alertmanager's API v2 (what Prometheus does)."""
    body = json.dumps(
        [{"labels": {"alertname": "PgOutageLoad", "n": str(n)}} for n in range(first, first + count)]
    ).encode()
    request = urllib.request.Request(
        f"{am.url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def am_metrics(am: AlertmanagerServer) -> str:
    with urllib.request.urlopen(f"{am.url}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


@pytest.mark.postgres
async def test_postgres_stopped_while_alertmanager_delivers_loses_nothing_and_repeats_nothing(
    own_postgres: PostgresServer,
    tmp_path: Path,
    sink: HttpSink,
    fake_kube: FakeCluster,
    request: pytest.FixtureRequest,
) -> None:
    url = own_postgres.create_database("kurative")
    kubeconfig = fake_kube.kubeconfig(tmp_path / "kubeconfig")
    playbook(tmp_path, NOTIFY)
    env = {"TEST_AM_TOKEN": TOKEN, "TEST_WEBHOOK_URL": f"{sink.url}/hooks/{WEBHOOK_KEY}"}
    settings = write_config(
        tmp_path, url, kubeconfig, breakers={"overrides": {"journal": {"failMax": 3, "resetTimeout": "1s"}}}
    )
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        async with running_daemon(settings, env) as running, running.client() as client:
            with start_alertmanager(f"{running.url}/api/v1/alerts", token=TOKEN, repeat_interval="1h") as am:
                given = 0
                readiness: list[int] = []

                async def give(seconds: float) -> None:
                    nonlocal given
                    until = time.monotonic() + seconds
                    while time.monotonic() < until:
                        await asyncio.to_thread(give_alerts, am, given, BATCH)
                        given += BATCH
                        await asyncio.sleep(0.5)

                await give(5)
                await asyncio.to_thread(own_postgres.stop, "immediate")
                stopped_at = time.monotonic()
                outage = asyncio.create_task(give(PG_OUTAGE_SECONDS))
                while not outage.done():
                    readiness.append((await client.get("/readyz")).status_code)
                    await asyncio.sleep(1)
                await outage
                await asyncio.to_thread(own_postgres.start)
                back_at = time.monotonic()
                outage_seconds = back_at - stopped_at
                await give(5)
                executions = await running.settle(given, within=120)
                recovered = time.monotonic() - back_at
                ours = (await client.get("/metrics")).text
                theirs = am_metrics(am)
                by_alert = Counter(
                    [(await running.journal.get_alert(e.alert_id)).labels["n"] for e in executions]
                )
    failed_notifications = metric(theirs, "alertmanager_notifications_failed_total", integration="webhook")
    rejected = metric(ours, "kurative_alerts_rejected_total")
    states = Counter(e.state for e in executions)
    keys = Counter(r.idempotency_key for r in sink.requests)
    wanted = {f"{e.id}/notify" for e in executions}
    lost = len({str(n) for n in range(given)} - set(by_alert)) + len(wanted - set(keys))
    duplicated = sum(n - 1 for n in by_alert.values()) + len(set(keys) - wanted)
    seen = transitions(logs, "journal")
    print_row(
        request,
        {
            "test": "PostgreSQL stopped, real Alertmanager",
            "load": f"{given} alerts over {time.monotonic() - started:.0f}s",
            "faults": f"PostgreSQL down {outage_seconds:.0f}s",
            "kurative": f"{rejected:.0f} alerts answered 503, readyz {Counter(readiness)}, "
            f"journal breaker {seen.count(('closed', 'open'))} opens, "
            f"{seen.count(('half-open', 'open'))} failed probes",
            "alertmanager": f"{failed_notifications:.0f} failed notifications retried",
            "lost": lost,
            "duplicated": duplicated,
            "repeated keys": sum(n - 1 for n in keys.values()),
            "recovered": f"all {len(executions)} executions finished {recovered:.1f}s after the restart",
        },
    )
    assert lost == 0
    assert duplicated == 0
    assert states == {ExecutionState.SUCCEEDED: given}, [e.error for e in executions][:5]
    assert failed_notifications >= 1  # Alertmanager met the 503s and retried
    assert rejected >= 1
    assert 503 in readiness
    assert seen[0] == ("closed", "open"), seen
    assert seen[-1] == ("half-open", "closed"), seen


# -- the API server fails for a minute, then hangs ----------------------------------------------------

RESTART = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: restart-through-outage, version: 1}
    spec:
      trigger: {alertname: [KubeLongOutage]}
      approval: auto
      steps:
        - name: restart
          action: kubernetes.rollout_restart
          retry: {attempts: ATTEMPTS, backoff: 200ms}
          params: {namespace: "NAMESPACE", kind: Deployment, name: "${labels.deployment}"}
"""

DEPLOYMENTS = 12
FAIL_MAX = 3
RESET_TIMEOUT = min(10.0, API_HANG_SECONDS / 2)
"""At least one half-open probe meets the hang."""
PROBES = math.ceil((API_ERROR_SECONDS + API_HANG_SECONDS) / RESET_TIMEOUT) + 1
ATTEMPTS = FAIL_MAX + PROBES + 1
"""A parked attempt is not counted, but the failMax failures that open the breaker and every failed
half-open probe count against the step that made them: one execution may meet all of them, so it
needs more attempts than that to ride out the outage (a known limit, see the module's report)."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.mark.kube
async def test_api_server_failing_then_hanging_parks_every_execution_and_all_finish_once(
    tmp_path: Path, kube: Kube, fake_kube: FakeCluster, sink: HttpSink, request: pytest.FixtureRequest
) -> None:
    """500s for API_ERROR_SECONDS, then no answer for API_HANG_SECONDS, alerts arriving throughout:
    no execution fails (an open breaker parks it, and the parking is not counted against its
    attempts), every Deployment is restarted exactly once after recovery."""
    names = [f"web-{n}" for n in range(DEPLOYMENTS)]
    for name in names:
        kube.deployment(name, replicas=1)
    kubeconfig = fake_kube.kubeconfig(tmp_path / "kubeconfig")
    playbook(tmp_path, RESTART.replace("NAMESPACE", kube.namespace).replace("ATTEMPTS", str(ATTEMPTS)))
    env = {"TEST_AM_TOKEN": TOKEN, "TEST_WEBHOOK_URL": f"{sink.url}/hooks/{WEBHOOK_KEY}"}
    settings = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'journal.sqlite'}",
        kubeconfig,
        breakers={"overrides": {"kubernetes/": {"failMax": FAIL_MAX, "resetTimeout": f"{RESET_TIMEOUT:g}s"}}},
    )
    target = "kubernetes/default"
    started = time.monotonic()
    try:
        with structlog.testing.capture_logs() as logs:
            async with running_daemon(settings, env) as running, running.client() as client:
                errors = fake_kube.outage(500)
                spacing = (API_ERROR_SECONDS + API_HANG_SECONDS) / DEPLOYMENTS
                hang = None
                for name in names:
                    answer = await client.post(
                        "/api/v1/alerts",
                        json=alert_payload({"labels": {"alertname": "KubeLongOutage", "deployment": name}}),
                    )
                    assert answer.status_code == 200, answer.text
                    await asyncio.sleep(spacing)
                    if hang is None and time.monotonic() - started >= API_ERROR_SECONDS:
                        finished = [e for e in await running.executions() if e.state.finished]
                        assert finished == [], [e.error for e in finished]
                        hang = fake_kube.outage(hang=True)
                        hung_at = time.monotonic()
                if hang is None:
                    hang = fake_kube.outage(hang=True)
                    hung_at = time.monotonic()
                await asyncio.sleep(max(0.0, API_HANG_SECONDS - (time.monotonic() - hung_at)))
                during = await running.executions()
                assert len(during) == DEPLOYMENTS
                assert not any(e.state.finished for e in during), [e.error for e in during]
                fake_kube.recover()
                back_at = time.monotonic()
                executions = await running.settle(DEPLOYMENTS, within=60)
                recovered = time.monotonic() - back_at
                counted = [
                    sum(
                        1
                        for r in (await running.journal.get_execution(e.id)).steps
                        if r.status is StepStatus.FAILED and not (r.output or {}).get(BREAKER_MARK)
                    )
                    for e in executions
                ]
    finally:
        fake_kube.recover()
    lost = duplicated = 0
    for name in names:
        obj = kube.get(kube.ns_path("deployments", name, group=APPS))
        annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
        lost += RESTARTED_AT not in annotations
        duplicated += obj["metadata"]["generation"] > 2
    seen = transitions(logs, target)
    parks = sum(e.attempt - 1 for e in executions)
    print_row(
        request,
        {
            "test": "API server 500 then hang",
            "load": f"{DEPLOYMENTS} alerts over {API_ERROR_SECONDS + API_HANG_SECONDS:.0f}s",
            "faults": f"500 for {API_ERROR_SECONDS:.0f}s ({errors.seen} requests), "
            f"hang for {API_HANG_SECONDS:.0f}s ({hang.seen} requests)",
            "kurative": f"breaker opened {seen.count(('closed', 'open'))}x, "
            f"{seen.count(('half-open', 'open'))} failed probes, {parks} parks, "
            f"at most {max(counted)} counted failures of {ATTEMPTS} attempts in one execution",
            "lost": lost,
            "duplicated": duplicated,
            "recovered": f"all {len(executions)} finished {recovered:.1f}s after recovery",
            "time": f"{time.monotonic() - started:.0f}s",
        },
    )
    assert {e.state for e in executions} == {ExecutionState.SUCCEEDED}, [e.error for e in executions]
    assert (lost, duplicated) == (0, 0)
    assert seen[0] == ("closed", "open"), seen
    assert seen[-1] == ("half-open", "closed"), seen
    assert seen.count(("half-open", "open")) >= 2, seen  # probes met the 500s and the hang
    assert hang.seen >= 1
    assert parks >= DEPLOYMENTS  # each execution was parked at least once, none failed


@pytest.mark.postgres
async def test_the_journal_reconnects_soon_after_postgresql_returns_from_a_long_outage(
    own_postgres: PostgresServer,
) -> None:
    """Regression: the pool's background reconnection doubled its delay for up to 60 s (1, 2, 4, 8,
    16, 29 s), so after a 30 s outage the daemon stayed unavailable for up to 25 s more with the
    database back; its chain now gives up after a few seconds and the next operation starts afresh."""
    url = own_postgres.create_database("reconnect")
    journal = await open_journal(url, migrate=True, timeout=2.0)
    try:
        await journal.now()
        await asyncio.to_thread(own_postgres.stop, "immediate")
        outage_until = time.monotonic() + 16
        failures = 0
        while time.monotonic() < outage_until:
            with contextlib.suppress(JournalUnavailable):
                await journal.now()
                raise AssertionError("the journal answered while PostgreSQL was stopped")
            failures += 1
            await asyncio.sleep(0.5)
        await asyncio.to_thread(own_postgres.start)
        back_at = time.monotonic()
        async with asyncio.timeout(8):  # the old chain would next try about 15 s after the restart
            while True:
                try:
                    await journal.now()
                    break
                except JournalUnavailable:
                    await asyncio.sleep(0.2)
        print(f"journal answered {time.monotonic() - back_at:.1f}s after PostgreSQL returned")
        assert failures >= 1
    finally:
        await journal.close()
