"""The daemon with real parts around it: a journal of each backend, the fake Kubernetes API server,
a real HTTP sink for webhooks; settings built the way ``kurative serve`` builds them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kurative.alerts import parse_notification
from kurative.config import Overrides, Settings, load_settings
from kurative.daemon import Daemon
from kurative.execution.matcher import ActiveRuleset, requests_for
from kurative.execution.runner import PlaybookCache
from kurative.journal import Execution, ExecutionState, Journal, open_journal
from kurative.journal.inbox import inbox_record
from kurative.linting.rulesets import load_ruleset
from tests.integration.journal.conftest import journal_url  # noqa: F401
from tests.integration.kube.helpers import Kube, kube_in_namespace
from tests.support.fakekube import FakeCluster, fake_cluster
from tests.support.http_sink import HttpSink, http_sink
from tests.support.postgres import free_port, postgres_server  # noqa: F401

TOKEN = "alertmanager-t0ken-for-tests"
WEBHOOK_KEY = "hooks-secret-key-0042"


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture
def kube(fake_kube: FakeCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    yield from kube_in_namespace(fake_kube, request.node.name)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with http_sink() as server:
        yield server


@dataclass
class Setup:
    """A config file, a rules folder and the environment holding the secrets."""

    folder: Path
    journal_url: str
    kube: Kube
    sink: HttpSink
    env: dict[str, str]

    @property
    def rules(self) -> Path:
        return self.folder / "rules"

    def playbook(self, name: str, body: str) -> None:
        self.rules.mkdir(exist_ok=True)
        (self.rules / f"{name}.yaml").write_text(textwrap.dedent(body))

    def config(self, **extra: Any) -> Path:
        config = {
            "apiVersion": "kurative/v1",
            "kind": "Config",
            "listen": {"host": "127.0.0.1", "port": free_port()},
            "auth": {"bearerTokens": [{"secretRef": "am-token"}]},
            "journal": {"url": self.journal_url, "migrate": True},
            "playbooks": {"paths": ["rules"]},
            "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
            "clusters": {"kubeconfig": str(self.kube_config)},
            "secrets": {
                "am-token": {"env": "TEST_AM_TOKEN"},
                "webhook": {"env": "TEST_WEBHOOK_URL"},
            },
            "logging": {"format": "json", "level": "debug"},
            **extra,
        }
        path = self.folder / "config.yaml"
        path.write_text(json.dumps(config))
        return path

    @property
    def kube_config(self) -> Path:
        return self.folder / "kubeconfig"

    def settings(self, **extra: Any) -> Settings:
        return load_settings(Overrides(config=str(self.config(**extra))), self.env)

    async def post(self, client: httpx.AsyncClient, *alerts: dict[str, Any], status: str = "firing") -> None:
        answer = await client.post("/api/v1/alerts", json=alert_payload(*alerts, status=status))
        assert answer.status_code == 200, answer.text


@pytest.fixture
def setup(tmp_path: Path, journal_url: str, kube: Kube, sink: HttpSink, fake_kube: FakeCluster) -> Setup:  # noqa: F811
    fake_kube.kubeconfig(tmp_path / "kubeconfig")
    env = {"TEST_AM_TOKEN": TOKEN, "TEST_WEBHOOK_URL": f"{sink.url}/hooks/{WEBHOOK_KEY}"}
    return Setup(tmp_path, journal_url, kube, sink, env)


@dataclass
class Running:
    daemon: Daemon
    journal: Journal

    def client(self) -> httpx.AsyncClient:
        assert self.daemon.url is not None
        return httpx.AsyncClient(
            base_url=self.daemon.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        )

    async def executions(self) -> list[Execution]:
        return list((await self.journal.list_executions(limit=500)).items)

    async def settle(self, count: int, *, within: float = 30.0) -> list[Execution]:
        """Wait until ``count`` executions exist and all of them are finished."""
        async with asyncio.timeout(within):
            while True:
                found = await self.executions()
                if len(found) >= count and all(e.state.finished for e in found):
                    return found
                await asyncio.sleep(0.1)


StartDaemon = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


async def matched_alert(journal: Journal, rules: Path, labels: dict[str, str]) -> tuple[str, PlaybookCache]:
    """Commit one alert with ``labels`` and match it against the playbooks under ``rules``, as the
    ingress and the matcher would; return its id and a cache holding those playbooks."""
    loaded = load_ruleset([str(rules)])
    notification = parse_notification(alert_payload({"labels": labels}))
    (alert_id,) = await journal.commit_alerts([inbox_record(notification.alerts[0], "alertmanager")])
    (stored,) = await journal.unmatched_alerts()
    requests = requests_for(stored, ActiveRuleset(loaded.ruleset, loaded.version), dry_run=False)
    await journal.match_alerts([(alert_id, requests)], loaded.version)
    cache = PlaybookCache(journal)
    for compiled in loaded.ruleset.playbooks:
        cache.remember(compiled.playbook)
    return alert_id, cache


def edge_playbook(name: str, steps: str) -> str:
    """A playbook ``name`` that an ``Edge`` alert starts, without approval, running ``steps`` (YAML
    list items indented by eight spaces)."""
    return f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: {name}, version: 1}}
    spec:
      trigger: {{alertname: [Edge]}}
      approval: auto
      steps:
{steps}"""


class HeldClaims:
    """A journal whose claims wait until let go."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.claiming = asyncio.Event()
        self.go = asyncio.Event()

    async def claim_executions(self, *args: Any, **kwargs: Any) -> Any:
        self.claiming.set()
        await self.go.wait()
        return await self._journal.claim_executions(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)


@pytest.fixture
def start_daemon() -> StartDaemon:
    @contextlib.asynccontextmanager
    async def start(settings: Settings, environ: dict[str, str]) -> AsyncIterator[Running]:
        daemon = Daemon(settings, environ=environ)
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
            await asyncio.wait_for(task, 30)

    return start


def alert_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="TestAlert"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "kurative",
        "groupLabels": {"alertname": "TestAlert"},
        "commonLabels": {"alertname": "TestAlert"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "annotations": {},
                "startsAt": "2026-12-01T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                **alert,
            }
            for alert in alerts
        ],
    }


__all__ = ["ExecutionState", "Running", "Setup", "StartDaemon", "alert_payload"]
