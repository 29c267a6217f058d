"""Servers the tests start as processes (Prometheus, Alertmanager): wait for ready, read the log, stop."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log_tail(path: Path, chars: int) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_for(probe: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    """Poll ``probe`` until it gives something true, and return that; raise naming ``what`` if never."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not reached in {within:g}s: {what}")


def wait_ready(
    name: str, url: str, process: subprocess.Popen[bytes], tail: Callable[[], str], timeout: float
) -> None:
    """Poll ``url`` until it answers 200; a process that exits or stays unready raises with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {tail()}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{name} was not ready within {timeout:g}s: {tail()}")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 15 s; nothing when it is gone already."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
