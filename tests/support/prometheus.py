"""A real Prometheus for tests: Debian's ``prometheus`` on 127.0.0.1, a free port, stopped by PID.

    with start_prometheus() as server:       # or the ``prometheus_server`` session fixture
        server.url                           # http://127.0.0.1:PORT

It scrapes itself every second (so ``up`` has a series soon after start) and keeps its TSDB in a
temporary directory. Given alerting ``rules`` (a rule file's YAML) and Alertmanager URLs it evaluates
them every second and sends what fires with ``--rules.alert.resend-delay=1s`` (without it the first
alert takes about a minute):

    with start_prometheus(rules=RULES, alertmanagers=[am.url]) as server: ...
 Without the binary the caller skips, except with ``CI`` set: then
:func:`require_prometheus` installs the package with apt-get, or fails.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.debian import require_debian_tool
from tests.support.postgres import free_port
from tests.support.processes import log_tail, stop_process, wait_ready

START_TIMEOUT = 60.0
CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
ALERTING = """\
rule_files: ["rules.yml"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: {targets}
"""


def find_prometheus() -> str | None:
    return shutil.which("prometheus")


def require_prometheus() -> str:
    return require_debian_tool(find_prometheus, "prometheus", "the prometheus binary")


@dataclass
class PrometheusServer:
    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    rules: str = ""
    """An alerting/recording rule file (YAML text), evaluated every second."""
    alertmanagers: Sequence[str] = ()
    """Alertmanager URLs (http://host:port) that firing alerts are sent to."""
    alertmanager_token: str = ""
    """A bearer token for them, given to Prometheus in a ``credentials_file``."""
    scrape: Sequence[str] = ()
    """More targets (host:port) scraped every second as job ``kurative`` on ``/metrics``."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logfile(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self) -> None:
        config = self.workdir / "prometheus.yml"
        text = CONFIG.format(port=self.port)
        if self.scrape:
            targets = json.dumps(list(self.scrape))
            text += f"  - job_name: kurative\n    static_configs:\n      - targets: {targets}\n"
        flags = []
        if self.rules:
            (self.workdir / "rules.yml").write_text(self.rules)
            targets = [urllib.parse.urlsplit(url).netloc for url in self.alertmanagers]
            text += ALERTING.format(targets=json.dumps(targets))
            if self.alertmanager_token:
                token = self.workdir / "alertmanager-token"
                token.write_text(self.alertmanager_token + "\n")
                text += f"      authorization: {{credentials_file: {json.dumps(str(token))}}}\n"
            flags.append("--rules.alert.resend-delay=1s")
        config.write_text(text)
        with self.logfile.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--web.external-url={self.url}",  # in generatorURL, instead of the host name
                    "--log.level=warn",
                    *flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        atexit.register(self.stop)
        wait_ready("prometheus", f"{self.url}/-/ready", self.process, self.log_tail, START_TIMEOUT)

    def reload_rules(self, rules: str, *, applied: str, timeout: float = 30.0) -> None:
        """Replace the rule file and have Prometheus reload it (SIGHUP), until its rules API shows
        ``applied`` (a piece of the new rules). Alerts of rules that keep their name carry over."""
        assert self.process is not None, "started"
        assert self.rules, "started with rules"
        (self.workdir / "rules.yml").write_text(rules)
        self.rules = rules
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=5) as answer:
                if applied in json.dumps(json.load(answer)["data"], ensure_ascii=False):
                    return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus did not reload its rules within {timeout:g}s: {self.log_tail()}")

    def query(self, expr: str) -> Any:
        """The ``data.result`` of an instant query (for waiting on series in tests)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)["data"]["result"]

    def wait_for_series(self, expr: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.query(expr)
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no series for {expr} within {timeout:g}s")

    def log_tail(self, chars: int = 2000) -> str:
        return log_tail(self.logfile, chars)

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)


@contextlib.contextmanager
def start_prometheus(
    rules: str = "",
    alertmanagers: Sequence[str] = (),
    alertmanager_token: str = "",
    scrape: Sequence[str] = (),
) -> Iterator[PrometheusServer]:
    binary = require_prometheus()
    with tempfile.TemporaryDirectory(prefix="kurative-prometheus-") as workdir:
        server = PrometheusServer(
            binary,
            Path(workdir),
            rules=rules,
            alertmanagers=alertmanagers,
            alertmanager_token=alertmanager_token,
            scrape=scrape,
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """One real Prometheus for the whole session."""
    with start_prometheus() as server:
        yield server
