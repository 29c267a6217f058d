"""The backup and restore drill: ``pg_dump`` of a busy journal, restored into a new PostgreSQL server.

``kurative serve`` (a process) runs on a throwaway PostgreSQL while alerts keep arriving: slow
executions (a sleep, a Kubernetes rollout restart on the fake API server, a webhook that takes its time),
executions waiting for an approval, and quick ones that finish at once. ``pg_dump`` takes its snapshot
(one transaction: consistent) in the middle of that; the daemon is then killed with SIGKILL and the dump
restored into a second, new cluster, where another ``kurative serve --migrate`` starts.

What must hold on the restored journal: ``--migrate`` is a no-op on a migrated database; every
execution the dump saw pending or running finishes (an open step goes through recovery as after a
crash); executions awaiting approval still await it and can be approved (by the CLI); alerts the dump
holds are deduplicated when Alertmanager sends them again; a step the dump saw finished is never
repeated. What a restore cannot give is measured, not assumed: work done after the snapshot is not in
it, so it runs again from where the snapshot saw it (a webhook with the same Idempotency-Key, a
Kubernetes step whose stamp is already on the object), and an alert acknowledged after the snapshot is
unknown to the restored journal (docs/operations.md, "Known limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from kurative.alerts import fingerprint
from kurative.journal import ExecutionState, Journal, StepStatus, open_journal
from tests.integration.kube.helpers import APPS, Kube, kube_in_namespace
from tests.support.debian import require_debian_tool
from tests.support.fakekube import FakeCluster, fake_cluster
from tests.support.http_sink import HttpSink
from tests.support.postgres import free_port, require_binaries, start_postgres

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgres, pytest.mark.kube]

T = TypeVar("T")
TOKEN = "drill-bearer-t0ken"
SLOW_ALERTS = 16
GATED_ALERTS = 6
QUICK_PER_POST = 2
POST_EVERY = 0.1  # quick alerts: 20 a second while the drill runs

SLOW = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: slow, version: 1}
spec:
  trigger: {alertname: [DrillSlow]}
  approval: auto
  steps:
    - name: wait
      action: sleep
      params: {duration: 2s}
    - name: restart
      action: kubernetes.rollout_restart
      params: {namespace: "${labels.namespace}", kind: Deployment, name: "${labels.deployment}"}
    - name: hook
      action: http.request
      params: {url: "${vars.sink}/slow", json: {pod: "${labels.pod}"}, timeout: 30s}
    - name: after
      action: http.request
      params: {url: "${vars.sink}/after", json: {pod: "${labels.pod}"}}
  vars: {sink: "SINK"}
"""

GATED = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: gated, version: 1}
spec:
  trigger: {alertname: [DrillGated]}
  approval: required
  steps:
    - name: act
      action: http.request
      params: {url: "${vars.sink}/gated", json: {pod: "${labels.pod}"}}
  vars: {sink: "SINK"}
"""

QUICK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: quick, version: 1}
spec:
  trigger: {alertname: [DrillQuick]}
  approval: auto
  steps:
    - name: notify
      action: http.request
      params: {url: "${vars.sink}/quick", json: {pod: "${labels.pod}"}}
  vars: {sink: "SINK"}
"""


def pg_client(bindir: Path, name: str) -> Path:
    """``pg_dump`` / ``pg_restore`` of the server's own major version (a newer pg_dump can dump an older
    server, an older one refuses a newer server): next to initdb, as Debian installs them."""

    def find() -> Path | None:
        found = bindir / name
        return found if found.exists() else None

    located: Path = require_debian_tool(find, f"postgresql-client-{bindir.parent.name}", name)
    return located


def major(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1].split(".")[0]


class Serve:
    """One ``kurative serve`` process, stopped by its PID."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kurative.cli", "serve", *self.args],
                env={**os.environ, "DRILL_AM_TOKEN": TOKEN, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@contextlib.contextmanager
def serving(args: list[str], log: Path) -> Iterator[Serve]:
    process = Serve(args, log)
    try:
        yield process
    finally:
        process.kill()


async def wait_for(probe: Callable[[], Awaitable[T]], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached within {within:g}s")


async def ready(url: str, serve: Serve, within: float = 60.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:

        async def probe() -> bool:
            assert serve.process is not None
            if serve.process.poll() is not None:
                raise AssertionError(f"kurative serve exited: {serve.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/readyz")).status_code == 200
            return False

        await wait_for(probe, within, f"kurative serve at {url} ready")


def alert(alertname: str, pod: str, namespace: str, **labels: str) -> dict[str, Any]:
    every = {"alertname": alertname, "pod": pod, "namespace": namespace, **labels}
    return {
        "status": "firing",
        "labels": every,
        "annotations": {},
        "startsAt": "2026-12-01T08:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint(every),
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="Drill"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "kurative",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@dataclass
class Load:
    """Alerts posted at a steady rate until stopped; remembers each one acknowledged (HTTP 200)."""

    url: str
    namespace: str
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # by fingerprint
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    refused: int = 0

    async def post(self, client: httpx.AsyncClient, *alerts: dict[str, Any]) -> bool:
        try:
            answer = await client.post(f"{self.url}/api/v1/alerts", json=notification(*alerts))
        except httpx.HTTPError:
            self.refused += 1
            return False
        if answer.status_code != 200:
            self.refused += 1
            return False
        for one in alerts:
            self.acked[one["fingerprint"]] = one
        return True

    async def run(self, client: httpx.AsyncClient) -> None:
        tick = 0
        while not self.stop.is_set():
            batch = [alert("DrillQuick", f"q{tick}-{i}", self.namespace) for i in range(QUICK_PER_POST)]
            if tick % 4 == 0 and tick // 4 < SLOW_ALERTS:
                n = tick // 4
                batch.append(alert("DrillSlow", f"s{n}", self.namespace, deployment=f"web-{n}"))
            await self.post(client, *batch)
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POST_EVERY)


def schema_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute("SELECT version, name, applied_at FROM schema_version ORDER BY version"))


async def all_executions(journal: Journal) -> list[Any]:
    page = await journal.list_executions(limit=500)
    assert page.next_cursor is None, "the drill keeps below one page of executions"
    return list(page.items)


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture
def kube(fake: FakeCluster) -> Iterator[Kube]:
    yield from kube_in_namespace(fake, "drill")


def write_config(folder: Path, journal_url: str, port: int, *, migrate: bool) -> Path:
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"bearerTokens": [{"secretRef": "am-token"}]},
        "journal": {"url": journal_url, "migrate": migrate},
        "playbooks": {"paths": ["rules"]},
        "runner": {"workers": 32, "lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
        "clusters": {"kubeconfig": str(folder / "kubeconfig")},
        "secrets": {"am-token": {"env": "DRILL_AM_TOKEN"}},
        "logging": {"format": "json", "level": "info"},
    }
    path = folder / f"config-{port}.yaml"
    path.write_text(json.dumps(config))
    return path


async def test_a_dump_taken_under_load_restores_into_a_new_server_and_resumes(
    tmp_path: Path, fake: FakeCluster, kube: Kube, sink: HttpSink
) -> None:
    bindir = require_binaries()
    pg_dump, pg_restore = pg_client(bindir, "pg_dump"), pg_client(bindir, "pg_restore")
    assert major(pg_dump) == major(bindir / "postgres")
    fake.kubeconfig(tmp_path / "kubeconfig")
    (tmp_path / "rules").mkdir()
    for name, body in (("slow", SLOW), ("gated", GATED), ("quick", QUICK)):
        (tmp_path / "rules" / f"{name}.yaml").write_text(body.replace("SINK", sink.url))
    for n in range(SLOW_ALERTS):
        kube.deployment(f"web-{n}", replicas=1)
    sink.answer(200, delay=1.5, path="/slow")  # the webhook the dump is likely to catch open
    figures: dict[str, Any] = {}

    with start_postgres() as first, start_postgres() as second:
        source = first.create_database("journal")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = write_config(tmp_path, source, port, migrate=True)
        dump = tmp_path / "journal.dump"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with serving(["--config", str(config)], tmp_path / "serve-1.log") as serve:
            serve.start()
            await ready(url, serve)
            async with httpx.AsyncClient(timeout=30, headers=headers) as client:
                load = Load(url, kube.namespace)
                gated = [alert("DrillGated", f"g{n}", kube.namespace) for n in range(GATED_ALERTS)]
                assert await load.post(client, *gated)
                poster = asyncio.create_task(load.run(client))
                journal = await open_journal(source)
                try:

                    async def busy() -> bool:
                        items = await all_executions(journal)
                        states = Counter(e.state for e in items if e.playbook_name == "slow")
                        return states[ExecutionState.RUNNING] >= 4 and states[ExecutionState.SUCCEEDED] >= 2

                    await wait_for(busy, 60, "slow executions both running and finished")
                finally:
                    await journal.close()
                dumped = await asyncio.to_thread(
                    subprocess.run,
                    [str(pg_dump), "--format=custom", "--file", str(dump), "--dbname", source],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert dumped.returncode == 0, dumped.stderr
                await asyncio.sleep(1.5)  # the first server goes on working past the snapshot
                load.stop.set()
                await poster
                serve.kill()
        figures["dump_bytes"] = dump.stat().st_size
        first_phase = list(sink.requests)
        generations_before = {
            n: kube.get(kube.ns_path("deployments", f"web-{n}", group=APPS))["metadata"]["generation"]
            for n in range(SLOW_ALERTS)
        }

        target = second.create_database("journal")
        restored = subprocess.run(
            [
                str(pg_restore),
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--dbname",
                target,
                str(dump),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr
        schema_before = schema_rows(target)
        assert schema_before, "the dump holds the schema_version table"

        # What the snapshot holds, read before anything runs on it.
        journal = await open_journal(target)
        try:
            at_dump = {e.id: e for e in await all_executions(journal)}
            details = {e: await journal.get_execution(e) for e in at_dump}
            stored = {i: await journal.get_alert(e.alert_id) for i, e in at_dump.items()}
            alerts_at_dump = {a.fingerprint for a in stored.values()}
            matched_at_dump = set(alerts_at_dump)
            unmatched_at_dump = {a.fingerprint for a in await journal.unmatched_alerts()}
            alerts_at_dump |= unmatched_at_dump
        finally:
            await journal.close()
        finished_steps = {
            s.idempotency_key for d in details.values() for s in d.steps if s.status is StepStatus.SUCCEEDED
        }
        open_steps = {s.idempotency_key: s for d in details.values() for s in d.open_steps()}
        states_at_dump = Counter(e.state.value for e in at_dump.values())
        figures.update(
            alerts_acked=len(load.acked) + 0,
            alerts_in_dump=len(alerts_at_dump),
            executions_in_dump=len(at_dump),
            states_at_dump=dict(states_at_dump),
            open_steps_at_dump=sorted(k or "" for k in open_steps),
        )
        awaiting = {i for i, e in at_dump.items() if e.state is ExecutionState.AWAITING_APPROVAL}
        assert len(awaiting) == GATED_ALERTS
        unfinished = {i for i, e in at_dump.items() if not e.state.finished and i not in awaiting}
        assert unfinished, "the dump caught executions in flight"

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = write_config(tmp_path, target, port, migrate=False)
        args = ["--config", str(config), "--journal", target, "--migrate"]
        with serving(args, tmp_path / "serve-2.log") as serve:
            serve.start()
            await ready(url, serve)
            # already migrated: --migrate applied nothing
            assert schema_rows(target) == schema_before
            journal = await open_journal(target)
            try:

                async def resumed() -> list[Any]:
                    items = await all_executions(journal)
                    rest = [e for e in items if e.id not in awaiting]
                    done = all(e.state.finished for e in rest) and not await journal.unmatched_alerts()
                    return items if done else []

                after = {e.id: e for e in await wait_for(resumed, 90, "restored executions finished")}
                for i in unfinished:
                    assert after[i].state is ExecutionState.SUCCEEDED, (i, after[i].error)
                assert {
                    i for i, e in after.items() if e.state is ExecutionState.AWAITING_APPROVAL
                } == awaiting

                # approvals on the restored journal: one by the CLI, the rest by the journal API
                first_gated, *others = sorted(awaiting)
                approved = subprocess.run(
                    [sys.executable, "-m", "kurative.cli", "executions", "approve", "--journal", target,
                     first_gated, "--as", "drill", "--reason", "restored"],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert approved.returncode == 0, approved.stderr
                from kurative.journal import Decision

                for execution_id in others:
                    await journal.record_approval(execution_id, Decision.APPROVED, "drill", "restored")

                async def all_done() -> list[Any]:
                    items = await all_executions(journal)
                    return items if all(e.state.finished for e in items) else []

                settled = await wait_for(all_done, 60, "approved executions finished")
                assert {e.state for e in settled} == {ExecutionState.SUCCEEDED}, Counter(
                    (e.state.value, e.error) for e in settled
                )
                final = [await journal.get_execution(e.id) for e in settled]
                recovered = sorted(
                    s.idempotency_key or ""
                    for d in final
                    for s in d.steps
                    if isinstance(s.output, dict) and s.output.get("recovered")
                )
                assert {e.state for e in settled if e.id in awaiting} == {ExecutionState.SUCCEEDED}
                count = len(settled)

                # Alertmanager sends again what the dump holds: nothing new (same fingerprint, startsAt)
                async with httpx.AsyncClient(timeout=30, headers=headers) as client:
                    again = Load(url, kube.namespace)
                    in_dump = [a for f, a in load.acked.items() if f in alerts_at_dump]
                    for start in range(0, len(in_dump), 50):
                        assert await again.post(client, *in_dump[start : start + 50])
                    await wait_for(lambda: _no_unmatched(journal), 30, "re-sent alerts matched")
                    assert len(await all_executions(journal)) == count
                    # ... while one the dump missed (acknowledged after the snapshot) is new to it
                    lost = [a for f, a in load.acked.items() if f not in alerts_at_dump]
                    figures["alerts_acked_after_dump"] = len(lost)
                    if lost:
                        assert await again.post(client, *lost)
                        grown = await wait_for(
                            lambda: _at_least(journal, count + len(lost)), 30, "missed alerts matched"
                        )
                        figures["executions_from_resent_missed_alerts"] = len(grown) - count
                        handled = await wait_for(all_done, 60, "re-sent missed alerts handled")
                        assert {e.state for e in handled} == {ExecutionState.SUCCEEDED}
            finally:
                await journal.close()
            assert serve.terminate() == 0
        log = (tmp_path / "serve-2.log").read_text(errors="replace")
        assert TOKEN not in log

    # Effects: each webhook the dump saw succeed was sent once, in the first life only.
    keys = Counter(r.idempotency_key for r in sink.requests)
    first_keys = Counter(r.idempotency_key for r in first_phase)
    for key in finished_steps:
        if key and key.rsplit("/", 1)[1] in {"hook", "after", "notify", "act"}:
            assert keys[key] == 1, key
    # Sent again with the same key (the receiver can tell): steps open at the dump or run after it.
    repeated_same_key = sorted(k for k, n in keys.items() if n > 1 and k)
    figures["webhooks_repeated_with_same_key"] = len(repeated_same_key)
    figures["webhooks_open_at_dump_repeated"] = sum(1 for k in repeated_same_key if k in open_steps)
    # Sent again under a new key (a new execution for an alert the dump missed): the receiver cannot
    # tell; counted per pod of the quick playbook.
    pods = Counter(r.json()["pod"] for r in sink.requests if r.path == "/quick")
    figures["webhooks_duplicated_under_new_key"] = sum(n - 1 for n in pods.values() if n > 1)
    assert all(first_keys[k] >= 1 for k in repeated_same_key)
    # Kubernetes: one restart per slow alert is generation 2 (created at 1)
    generations = {
        n: kube.get(kube.ns_path("deployments", f"web-{n}", group=APPS))["metadata"]["generation"]
        for n in range(SLOW_ALERTS)
    }
    doubled = sorted(n for n, g in generations.items() if g > 2)
    figures["kube_restarts_doubled"] = doubled
    # Each restart that ran after the snapshot ran again on the restored journal and found its stamp:
    # no Deployment of an execution the dump holds rolled twice. One whose alert the dump does not
    # hold, or holds not matched yet, is a new execution there (a new id, a new stamp): that restart
    # is repeated.
    slow = {a["labels"]["deployment"]: f for f, a in load.acked.items() if "deployment" in a["labels"]}
    figures["slow_alerts_acked"] = len(slow)
    figures["alerts_unmatched_at_dump"] = len(unmatched_at_dump)
    unknown = {int(d.split("-")[1]) for d, f in slow.items() if f not in matched_at_dump}
    assert set(doubled) <= {n for n in unknown if generations_before[n] > 1}
    for n in range(SLOW_ALERTS):
        if n not in doubled:
            assert generations[n] == (2 if f"web-{n}" in slow else 1), (n, generations)
    # restarted by the first life after its snapshot: the dump saw the step not finished
    restart_done_at_dump = {
        stored[i].labels["deployment"]
        for i, d in details.items()
        if any(s.name == "restart" and s.status is StepStatus.SUCCEEDED for s in d.steps)
    }
    after_snapshot = sorted(
        n for n in range(SLOW_ALERTS) if generations_before[n] > 1 and f"web-{n}" not in restart_done_at_dump
    )
    figures["kube_restarts_after_dump_in_first_life"] = after_snapshot
    figures["kube_restart_open_at_dump"] = sorted(k for k in open_steps if k and k.endswith("/restart"))
    figures["recovered_steps"] = recovered
    print("drill figures:", json.dumps(figures, sort_keys=True))
    Path(os.environ.get("KURATIVE_DRILL_FIGURES", os.devnull)).write_text(json.dumps(figures))


async def _no_unmatched(journal: Journal) -> bool:
    return not await journal.unmatched_alerts()


async def _at_least(journal: Journal, count: int) -> list[Any]:
    items = await all_executions(journal)
    return items if len(items) >= count and not await journal.unmatched_alerts() else []
