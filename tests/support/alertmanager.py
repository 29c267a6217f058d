"""A real Alertmanager for tests: Debian's ``prometheus-alertmanager`` on 127.0.0.1, stopped by PID.

    with start_alertmanager(webhook_url, token="s3cret") as am:
        am.url                                    # http://127.0.0.1:PORT (Prometheus alerts here)
        am.add_alert(alertname="NodeDown", node="a")              # amtool alert add
        am.add_alert(alertname="NodeDown", node="a", end=True)    # resolved: --end=<now>

It sends every group to one webhook receiver (``send_resolved: true``, the bearer token read from a
``credentials_file`` as the README recommends), with ``group_wait`` and ``group_interval`` of 1 s and a
short ``repeat_interval``, so a test sees the first notification within seconds and repeats of it soon
after. Clustering is off (``--cluster.listen-address=``), otherwise it binds 9094 on every interface.
Without the binaries the caller skips, except with ``CI`` set: then :func:`require_alertmanager`
installs the package with apt-get, or fails.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.debian import require_debian_tool
from tests.support.postgres import free_port
from tests.support.processes import log_tail, stop_process, wait_ready

START_TIMEOUT = 30.0
AMTOOL_TIMEOUT = 30.0
CONFIG = """\
route:
  receiver: kurative
  group_by: {group_by}
  group_wait: 1s
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: kurative
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {credentials}
"""


@dataclass(frozen=True)
class Binaries:
    alertmanager: str
    amtool: str


def find_binaries() -> Binaries | None:
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    amtool = shutil.which("amtool")
    return Binaries(alertmanager, amtool) if alertmanager and amtool else None


def require_alertmanager() -> Binaries:
    return require_debian_tool(
        find_binaries,
        "prometheus-alertmanager",
        "the Alertmanager binaries (prometheus-alertmanager, amtool)",
    )


@dataclass
class AlertmanagerServer:
    """One Alertmanager under ``workdir`` whose only receiver is the webhook at ``webhook_url``."""

    binaries: Binaries
    workdir: Path
    webhook_url: str
    token: str
    group_by: Sequence[str] = ("...",)
    """``...`` groups by every label: one alert per notification, the simplest to reason about."""
    repeat_interval: str = "2s"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logfile(self) -> Path:
        return self.workdir / "alertmanager.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "alertmanager.yml"

    def write_config(self) -> None:
        credentials = self.workdir / "kurative-token"
        credentials.write_text(self.token + "\n")
        credentials.chmod(0o600)
        self.config_file.write_text(
            CONFIG.format(
                group_by=json.dumps(list(self.group_by)),
                repeat_interval=self.repeat_interval,
                url=json.dumps(self.webhook_url),
                credentials=json.dumps(str(credentials)),
            )
        )

    def start(self) -> None:
        self.write_config()
        check = self.amtool("check-config", str(self.config_file), with_url=False)
        if check.returncode != 0:
            raise RuntimeError(f"amtool check-config refused the config: {check.stdout}{check.stderr}")
        with self.logfile.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binaries.alertmanager,
                    f"--config.file={self.config_file}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--web.external-url={self.url}",
                    "--cluster.listen-address=",
                    "--log.level=debug",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        atexit.register(self.stop)
        wait_ready("alertmanager", f"{self.url}/-/ready", self.process, self.log_tail, START_TIMEOUT)

    def amtool(self, *args: str, with_url: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.binaries.amtool]
        if with_url:
            command.append(f"--alertmanager.url={self.url}")
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=AMTOOL_TIMEOUT, check=False
        )

    def add_alert(
        self, *, end: bool = False, annotations: dict[str, str] | None = None, **labels: str
    ) -> None:
        """``amtool alert add`` with these labels; ``end=True`` ends it now (a resolved notification)."""
        args = ["alert", "add", *(f"{k}={v}" for k, v in labels.items())]
        for key, value in (annotations or {}).items():
            args.append(f"--annotation={key}={value}")
        if end:
            args.append(f"--end={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
        done = self.amtool(*args)
        if done.returncode != 0:
            raise AssertionError(f"amtool {' '.join(args)} failed: {done.stdout}{done.stderr}")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (API v2), for waiting on what Prometheus sent."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as answer:
            found: list[dict[str, Any]] = json.load(answer)
            return found

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.logfile, chars)

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)


@contextlib.contextmanager
def start_alertmanager(
    webhook_url: str, *, token: str, repeat_interval: str = "2s", group_by: Sequence[str] = ("...",)
) -> Iterator[AlertmanagerServer]:
    """A started Alertmanager sending to ``webhook_url`` with ``token``; stopped and removed on exit."""
    binaries = require_alertmanager()
    with tempfile.TemporaryDirectory(prefix="kurative-alertmanager-") as workdir:
        server = AlertmanagerServer(
            binaries, Path(workdir), webhook_url, token, group_by=group_by, repeat_interval=repeat_interval
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
            atexit.unregister(server.stop)
