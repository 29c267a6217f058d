"""kurative's fingerprints against a real Alertmanager, for the same alerts sent both routes.

Alertmanager drops labels with empty values (``removeEmptyLabels`` in its ``POST /api/v2/alerts``
handler) and its Go JSON decoder turns a lone surrogate into U+FFFD before it fingerprints an alert.
Here the same alerts go to a real Alertmanager (whose webhook then reaches a local receiver) and
straight to kurative's parser, as Prometheus would send them: the fingerprints must agree.

Needs Debian's ``prometheus-alertmanager``; skips without it, except in CI, where it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kurative.alerts import parse_json
from tests.support.postgres import free_port

pytestmark = pytest.mark.e2e

# Written by hand, so that the surrogate escapes reach Alertmanager as a sender writes them.
ALERTS = (
    '[{"labels": {"alertname": "EmptyLabel", "instance": "x:9100", "pod": ""}},'
    ' {"labels": {"alertname": "Surrogate\\ud800", "b": "1"}},'
    ' {"labels": {"alertname": "Inside", "s": "a\\udfffb", "empty": ""}, "annotations": {"note": ""}}]'
)


def require_alertmanager() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    if not os.environ.get("CI"):
        pytest.skip("prometheus-alertmanager not found; apt-get install prometheus-alertmanager or set CI=1")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "prometheus-alertmanager"],
    ):
        subprocess.run(command, capture_output=True, env=env, check=True, timeout=600)
    found = shutil.which("prometheus-alertmanager")
    assert found, "prometheus-alertmanager was installed but is not on PATH"
    return found


class Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[int, list[bytes]]]:
    handler = type("Handler", (Receiver,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.bodies
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_receiver: tuple[int, list[bytes]]) -> Iterator[str]:
    binary = require_alertmanager()
    receiver_port, _ = webhook_receiver
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        json.dumps(
            {
                "route": {
                    "receiver": "kurative",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                },
                "receivers": [
                    {"name": "kurative", "webhook_configs": [{"url": f"http://127.0.0.1:{receiver_port}/"}]}
                ],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            f"--web.external-url={url}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, "Alertmanager")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.mark.timeout(120)
def test_fingerprints_agree_with_alertmanager_by_either_route(
    alertmanager: str, webhook_receiver: tuple[int, list[bytes]]
) -> None:
    _, bodies = webhook_receiver
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts", data=ALERTS.encode(), headers={"Content-Type": "application/json"}
    )
    assert urllib.request.urlopen(request, timeout=10).status == 200

    direct = {a.labels["alertname"]: a for a in parse_json(ALERTS).alerts}  # as Prometheus sends them
    stored = json.loads(urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=10).read())
    assert {a["labels"]["alertname"]: a["fingerprint"] for a in stored} == {
        name: alert.fingerprint for name, alert in direct.items()
    }

    wait_for(lambda: len(bodies) >= 3, "a webhook per alert group")
    via_webhook = {a.labels["alertname"]: a for body in bodies for a in parse_json(body).alerts}
    assert set(via_webhook) == set(direct)
    for name, alert in direct.items():
        assert via_webhook[name].fingerprint == alert.fingerprint, name
        assert dict(via_webhook[name].labels) == dict(alert.labels), name
    assert dict(direct["Inside"].annotations) == {"note": ""}  # annotations keep empty values
