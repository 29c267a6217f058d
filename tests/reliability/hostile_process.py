"""``kurative serve`` as a real process for the hostile-input tests: its config, its log, its RSS and
open files read from /proc, stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port

TOKEN = "hostile-ingress-t0ken-5e2b9c"

LOG_PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: note, version: 1}
spec:
  trigger: {alertname: [Hostile]}
  approval: auto
  steps:
    - name: note
      action: log
      params: {message: "hostile ${labels.pod}"}
"""


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path
    baseline_peak_kib: int = 0
    """The peak RSS when the test began (set by a fixture)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return _status_field(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_field(self.pid, "VmHWM")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


def write_config(folder: Path, **listen: Any) -> tuple[Path, int]:
    port = free_port()
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": port, **listen},
        "auth": {"bearerTokens": [{"secretRef": "token", "name": "ops"}]},
        "journal": {"url": f"sqlite:///{folder / 'journal.sqlite'}", "migrate": True},
        "playbooks": {"paths": ["rules"]},
        "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
        "secrets": {"token": {"env": "HOSTILE_TOKEN"}},
        "logging": {"format": "json", "level": "info"},
    }
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "note.yaml").write_text(LOG_PLAYBOOK)
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))
    return path, port


@contextlib.contextmanager
def serve(
    folder: Path, env: dict[str, str] | None = None, open_files: int | None = None, **listen: Any
) -> Iterator[Process]:
    """``kurative serve`` on a config in ``folder`` (with ``open_files`` as its soft and hard
    RLIMIT_NOFILE); SIGTERM (then SIGKILL) by PID at the end."""
    config, port = write_config(folder, **listen)
    log = folder / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            _limited([sys.executable, "-m", "kurative.cli", "serve", "--config", str(config)], open_files),
            env={**os.environ, "HOSTILE_TOKEN": TOKEN, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    scheme = "https" if "tls" in listen else "http"
    served = Process(process, f"{scheme}://127.0.0.1:{port}", port, log)
    try:
        wait_ready(served)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _limited(command: list[str], open_files: int | None) -> list[str]:
    """``command`` started by a Python that first sets RLIMIT_NOFILE to ``open_files``."""
    if open_files is None:
        return command
    start = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files}, {open_files})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", start, *command]


_UNVERIFIED = ssl._create_unverified_context()  # a test certificate: readiness only, on 127.0.0.1


def wait_ready(served: Process, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not served.alive():
            raise AssertionError(f"kurative serve exited: {served.log_text()[-3000:]}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{served.url}/readyz", timeout=2, context=_UNVERIFIED) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"kurative serve was not ready in {within:g}s: {served.log_text()[-3000:]}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
