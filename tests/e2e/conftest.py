"""The end-to-end stack: real Prometheus → real Alertmanager → ``kurative serve`` as a process on a
throwaway PostgreSQL, acting on a Kubernetes API server (the fake one and the real kube-apiserver) and
calling a real HTTP sink.

Every server binds 127.0.0.1 on a free port and is stopped by its PID. Without the Debian packages
(``prometheus``, ``prometheus-alertmanager``, PostgreSQL) or the cached kube-apiserver the tests skip
and say why; with ``CI`` set they install or build what is missing and fail rather than skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.integration.kube.helpers import Kube, kube_in_namespace  # noqa: E402
from tests.support.alertmanager import AlertmanagerServer, start_alertmanager  # noqa: E402
from tests.support.fakekube import FakeCluster, fake_cluster  # noqa: E402
from tests.support.http_sink import HttpSink, http_sink  # noqa: E402
from tests.support.kube_fixtures import real_kube  # noqa: E402, F401
from tests.support.postgres import PostgresServer, free_port, postgres_server  # noqa: E402, F401

TOKEN = "alertmanager-e2e-t0ken"
WEBHOOK_KEY = "e2e-hook-secret-7731"
READY_TIMEOUT = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session", params=["fake", pytest.param("real", marks=pytest.mark.realkube)])
def kube_cluster(request: pytest.FixtureRequest) -> Any:
    """The Kubernetes API server the playbooks act on: the fake one or the real kube-apiserver."""
    return request.getfixturevalue(f"{request.param}_kube")


@pytest.fixture
def kube(kube_cluster: Any, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """An admin helper to arrange and inspect the cluster, with a fresh namespace."""
    yield from kube_in_namespace(kube_cluster, request.node.name)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with http_sink() as server:
        yield server


@pytest.fixture
def journal_url(postgres_server: PostgresServer) -> Iterator[str]:  # noqa: F811
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


class KurativeProcess:
    """``kurative serve --config FILE`` as a child process; stopped by its PID."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, url: str) -> None:
        self.config, self.env, self.log, self.url = config, env, log, url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kurative.cli", "serve", "--config", str(self.config)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"kurative serve exited with {self.process.returncode}: {self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"kurative serve was not ready within {READY_TIMEOUT:g}s: {self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop; the exit code (None if it never ran)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Stack:
    """kurative serve (PostgreSQL journal) behind a real Alertmanager, with the sink and the cluster."""

    folder: Path
    journal_url: str
    kube: Kube
    sink: HttpSink
    env: dict[str, str]
    stops: contextlib.ExitStack
    serve: KurativeProcess | None = None
    alertmanager: AlertmanagerServer | None = None

    def start(self, alertmanager_token: str | None = TOKEN, group_by: Sequence[str] = ("...",)) -> None:
        """Start ``kurative serve`` on the playbooks written so far, then an Alertmanager sending to it
        with ``alertmanager_token`` as its bearer token (None: no Alertmanager), grouping by
        ``group_by`` (``...``: every label, one alert per notification)."""
        port = free_port()
        config = {
            "apiVersion": "kurative/v1",
            "kind": "Config",
            "listen": {"host": "127.0.0.1", "port": port},
            "auth": {"bearerTokens": [{"secretRef": "am-token"}]},
            "journal": {"url": self.journal_url, "migrate": True},
            "playbooks": {"paths": ["rules"]},
            "runner": {"lease": "5s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
            "clusters": {"kubeconfig": str(self.folder / "kubeconfig")},
            "secrets": {"am-token": {"env": "E2E_AM_TOKEN"}, "webhook": {"env": "E2E_WEBHOOK_URL"}},
            "logging": {"format": "json", "level": "info"},
        }
        path = self.folder / "config.yaml"
        path.write_text(json.dumps(config))
        self.serve = KurativeProcess(path, self.env, self.folder / "serve.log", f"http://127.0.0.1:{port}")
        self.stops.callback(self.serve.stop)
        self.serve.start()
        if alertmanager_token is None:
            return
        self.alertmanager = self.stops.enter_context(
            start_alertmanager(f"{self.serve.url}/api/v1/alerts", token=alertmanager_token, group_by=group_by)
        )

    @property
    def rules(self) -> Path:
        return self.folder / "rules"

    def playbook(self, name: str, body: str) -> None:
        self.rules.mkdir(exist_ok=True)
        (self.rules / f"{name}.yaml").write_text(textwrap.dedent(body))

    def kurative(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``kurative`` CLI as a subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "kurative.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **self.env},
        )

    def kurative_json(self, *args: str) -> Any:
        done = self.kurative(*args, "--journal", self.journal_url, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the journal database directly (what the daemon committed)."""
        with psycopg.connect(self.journal_url, autocommit=True) as conn:
            return list(conn.execute(sql.encode(), params).fetchall())

    def executions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.kurative_json("executions", "list")
        return found

    def wait(self, probe: Any, what: str, within: float = 60.0) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.2)
        serve = self.serve.log_tail() if self.serve else ""
        am = self.alertmanager.log_tail() if self.alertmanager else ""
        raise AssertionError(
            f"{what}: not reached in {within:g}s\n--- kurative\n{serve}\n--- alertmanager\n{am}"
        )


@pytest.fixture
def stack(tmp_path: Path, journal_url: str, kube: Kube, sink: HttpSink, kube_cluster: Any) -> Iterator[Stack]:
    """The parts around the daemon; the test writes its playbooks, then calls ``stack.start()``."""
    kube_cluster.kubeconfig(tmp_path / "kubeconfig")
    env = {"E2E_AM_TOKEN": TOKEN, "E2E_WEBHOOK_URL": f"{sink.url}/hooks/{WEBHOOK_KEY}"}
    with contextlib.ExitStack() as stops:
        yield Stack(tmp_path, journal_url, kube, sink, env, stops)
