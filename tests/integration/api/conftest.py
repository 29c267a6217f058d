"""A daemon serving the REST API: in a thread of its own (for the synchronous schemathesis run), or
in-process on the test's loop with the daemon suite's fixtures (fake Kubernetes API, HTTP sink)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kurative.config import Overrides, load_settings
from kurative.daemon import Daemon
from tests.integration.daemon.conftest import (  # noqa: F401
    alert_payload,
    fake_kube,
    kube,
    setup,
    sink,
    start_daemon,
)
from tests.integration.journal.conftest import journal_url  # noqa: F401
from tests.support.postgres import PostgresServer, free_port, postgres_server  # noqa: F401

TOKENS = {"alice": "alice-t0ken-for-api-tests", "bob": "bob-t0ken-for-api-tests"}
"""Bearer tokens by the name the config gives them: the name is who approved."""

WAITS_FOR_APPROVAL = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: restart-web, version: 1}
    spec:
      trigger: {alertname: [WebDown]}
      approval: required
      steps:
        - name: note
          action: log
          params: {message: "restarting ${labels.pod}"}
"""

BROKEN = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: broken, version: 1}
    spec:
      trigger: {alertname: [Broken], when: "labels.x == ]"}
      steps:
        - {name: note, action: log, params: {message: hi}}
"""


def auth_config() -> dict[str, object]:
    """``auth`` and ``secrets`` sections naming two tokens alice and bob, read from the environment."""
    return {
        "auth": {"bearerTokens": [{"secretRef": f"{name}-token", "name": name} for name in TOKENS]},
        "secrets": {f"{name}-token": {"env": f"TEST_{name.upper()}_TOKEN"} for name in TOKENS},
    }


def token_env() -> dict[str, str]:
    return {f"TEST_{name.upper()}_TOKEN": token for name, token in TOKENS.items()}


@dataclass
class Served:
    url: str
    folder: Path

    def headers(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served_journal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('journal') / 'journal.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"api_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, served_journal: str) -> Iterator[Served]:
    """``kurative serve`` on each backend in a thread with its own event loop; one execution waits
    for approval and one playbook file does not load, so that every route has something to show."""
    folder = tmp_path_factory.mktemp("api")
    rules = folder / "rules"
    rules.mkdir()
    (rules / "restart.yaml").write_text(textwrap.dedent(WAITS_FOR_APPROVAL))
    (rules / "broken.yaml").write_text(textwrap.dedent(BROKEN))
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "journal": {"url": served_journal, "migrate": True},
        "playbooks": {"paths": ["rules"]},
        "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
        "logging": {"format": "json", "level": "warning"},
        **auth_config(),
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    settings = load_settings(Overrides(config=str(folder / "config.yaml")), token_env())
    started = threading.Event()
    box: dict[str, object] = {}

    async def run() -> None:
        daemon = Daemon(settings, environ=token_env())
        box["daemon"], box["loop"] = daemon, asyncio.get_running_loop()
        task = asyncio.create_task(daemon.run())
        await asyncio.wait([task, asyncio.create_task(daemon.ready.wait())], return_when="FIRST_COMPLETED")
        started.set()
        await task

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by the fixture below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=main, name="daemon", daemon=True)
    thread.start()
    assert started.wait(30), "the daemon did not start in 30 s"
    daemon = box.get("daemon")
    assert isinstance(daemon, Daemon), box.get("error")
    assert daemon.url is not None, box.get("error")
    served = Served(daemon.url, folder)
    alert = alert_payload({"labels": {"alertname": "WebDown", "pod": "web-1"}})
    answer = httpx.post(f"{served.url}/api/v1/alerts", json=alert, headers=served.headers(), timeout=30)
    assert answer.status_code == 200, answer.text
    with httpx.Client(base_url=served.url, headers=served.headers(), timeout=30) as client:
        for _ in range(300):
            if client.get("/api/v1/executions", params={"state": "awaiting_approval"}).json()["items"]:
                break
            threading.Event().wait(0.1)
        else:
            raise AssertionError("no execution waits for approval after 30 s")
    try:
        yield served
    finally:
        loop = box["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(daemon.request_stop)
        thread.join(30)
        assert not thread.is_alive(), "the daemon did not stop in 30 s"
