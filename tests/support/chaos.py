"""Chaos with replicas: ``kurative serve`` processes that a thread kills with SIGKILL at random and starts
again on the same port, an Alertmanager whose one receiver sends every notification to all of them, and
what the checks afterwards read: the journal's rows, the HTTP sink's requests, the changes the fake API
server stored, and every place a known secret value could leak to.

    replicas = [Replica(f"r{i}", config, env, log) for ...]
    chaos = Chaos(replicas, min_kills=20, keep_going=lambda: posting)
    chaos.start(); ...; chaos.finish()          # raises what went wrong in the thread
    chaos.kills                                 # one Kill per SIGKILL

Every process is stopped by its PID; nothing here binds anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.support.alertmanager import AlertmanagerServer
from tests.support.fakekube.store import ResourceType, Store
from tests.support.processes import log_tail

READY_TIMEOUT = 60.0


class Replica:
    """One ``kurative serve --config FILE`` on a fixed port; every start appends to the same log."""

    def __init__(self, name: str, config: Path, env: Mapping[str, str], log: Path, port: int) -> None:
        self.name, self.config, self.env, self.log, self.port = name, config, dict(env), log, port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []
        """Exit codes of the runs that ended by themselves (not killed by the chaos, not stopped)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kurative.cli", "serve", "--config", str(self.config)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer,
        ):
            return bool(answer.status == 200)
        return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise AssertionError(f"{self.name} exited with {code}: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} was not ready within {timeout:g}s: {self.log_tail()}")

    def kill(self) -> int:
        """SIGKILL by PID; the PID killed."""
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        return pid

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s; the exit code (None when it was not running)."""
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

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log, chars)


@dataclass(frozen=True)
class Kill:
    at: float
    """Seconds since the chaos started."""
    replica: str
    pid: int


class Chaos(threading.Thread):
    """Kills a random replica with SIGKILL every ``interval`` seconds and starts it again at once.

    A replica is only killed while every other one is running, so that never all are dead. It goes on
    until it has killed ``min_kills`` times and ``keep_going()`` is false. A replica that exits by
    itself (a crash) is recorded in :attr:`crashes` and started again.
    """

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        min_kills: int,
        keep_going: Callable[[], bool],
        interval: tuple[float, float] = (1.5, 3.5),
        seed: int | None = None,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.replicas = list(replicas)
        self.min_kills = min_kills
        self.keep_going = keep_going
        self.interval = interval
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.crashes: list[tuple[str, int]] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._began = time.monotonic()

    def run(self) -> None:
        try:
            self._began = time.monotonic()
            while not self._halt.is_set():
                if len(self.kills) >= self.min_kills and not self.keep_going():
                    return
                if self._halt.wait(self.rng.uniform(*self.interval)):
                    return
                self._restart_crashed()
                victims = [
                    r
                    for r in self.replicas
                    if r.alive() and all(o.alive() for o in self.replicas if o is not r)
                ]
                if not victims:
                    continue
                victim = self.rng.choice(victims)
                pid = victim.kill()
                victim.start()
                self.kills.append(Kill(round(time.monotonic() - self._began, 2), victim.name, pid))
        except BaseException as exc:  # handed to the test by finish()
            self.error = exc

    def _restart_crashed(self) -> None:
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is not None:
                self.crashes.append((replica.name, replica.process.returncode))
                replica.exits.append(replica.process.returncode)
                replica.start()

    def finish(self, timeout: float = 30.0) -> None:
        """Stop killing, wait for the thread, raise what it raised."""
        self._halt.set()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("the chaos thread did not stop")
        if self.error is not None:
            raise self.error


# --- Alertmanager ----------------------------------------------------------------------------------

FANOUT_CONFIG = """\
route:
  receiver: kurative
  group_by: {group_by}
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: kurative
    webhook_configs:
{webhooks}"""

WEBHOOK = """\
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {credentials}
"""


@dataclass
class FanoutAlertmanager(AlertmanagerServer):
    """An Alertmanager whose one receiver has a webhook per replica: every notification goes to all,
    as behind a Service whose clients retry. Started and stopped as :class:`AlertmanagerServer`."""

    webhook_urls: Sequence[str] = ()
    group_wait: str = "1s"
    group_interval: str = "2s"

    def write_config(self) -> None:
        credentials = self.workdir / "kurative-token"
        credentials.write_text(self.token + "\n")
        credentials.chmod(0o600)
        webhooks = "".join(
            WEBHOOK.format(url=json.dumps(url), credentials=json.dumps(str(credentials)))
            for url in self.webhook_urls
        )
        self.config_file.write_text(
            FANOUT_CONFIG.format(
                group_by=json.dumps(list(self.group_by)),
                group_wait=self.group_wait,
                group_interval=self.group_interval,
                repeat_interval=self.repeat_interval,
                webhooks=webhooks,
            )
        )

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts; raises unless Alertmanager accepts them (200)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            if answer.status != 200:
                raise AssertionError(f"Alertmanager answered {answer.status}: {answer.read()[:500]!r}")

    def metrics(self) -> dict[str, float]:
        """Its notification counters for the webhook integration (sent, failed, requests)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        found: dict[str, float] = defaultdict(float)
        for line in text.splitlines():
            if line.startswith("alertmanager_notification") and 'integration="webhook"' in line:
                name = line.split("{", 1)[0]
                found[name] += float(line.rsplit(" ", 1)[1])
        return dict(found)


def alert_bodies(
    count: int, *, batch: int, alertname: str, critical_every: int
) -> list[list[dict[str, Any]]]:
    """``count`` alerts with unique labels, in POSTs of ``batch``; a POST's alerts share the label
    ``batch`` (one Alertmanager group each, as a rule firing for many pods at once)."""
    starts = datetime.now(UTC)
    ends = starts + timedelta(hours=2)  # they must not resolve during the run
    posts: list[list[dict[str, Any]]] = []
    for first in range(0, count, batch):
        posts.append(
            [
                {
                    "labels": {
                        "alertname": alertname,
                        "batch": f"b{first // batch:04d}",
                        "n": f"{n:05d}",
                        "namespace": "chaos",
                        "severity": "critical" if n % critical_every == 0 else "warning",
                    },
                    "annotations": {"summary": f"chaos alert {n}"},
                    "startsAt": starts.isoformat().replace("+00:00", "Z"),
                    "endsAt": ends.isoformat().replace("+00:00", "Z"),
                }
                for n in range(first, min(first + batch, count))
            ]
        )
    return posts


# --- the fake API server ---------------------------------------------------------------------------


class ChangeLog:
    """Every object the fake API server stores from now on, by (kind, namespace, name): a write that
    changes nothing (the same label set again) stores nothing, as on a real server."""

    def __init__(self, store: Store) -> None:
        self.changes: Counter[tuple[str, str, str]] = Counter()
        original = store._store

        def recording(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
            meta = obj["metadata"]
            self.changes[(rt.kind, meta.get("namespace", ""), meta["name"])] += 1
            return original(rt, obj)

        store._store = recording  # type: ignore[method-assign]


# --- reading what happened -------------------------------------------------------------------------


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql.encode(), params).fetchall())


def journal_text(url: str) -> Iterator[tuple[str, str]]:
    """(table, row as text) for every row of every table of the journal."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                b"SELECT table_name FROM information_schema.tables"
                b" WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        for table in tables:
            with conn.cursor() as cursor:
                for (row,) in cursor.execute(f'SELECT t::text FROM "{table}" t'.encode()):
                    yield table, row


def occurrences(secrets: Mapping[str, str], places: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """secret name -> place -> how often its value occurs there (only places where it does)."""
    found: dict[str, dict[str, int]] = {name: {} for name in secrets}
    for place, text in places:
        for name, value in secrets.items():
            if count := text.count(value):
                found[name][place] = found[name].get(place, 0) + count
    return found


def log_summary(texts: Iterable[str]) -> dict[str, Any]:
    """What the replicas' JSON logs say: lines per level, the recovery events, lines that are not JSON
    (a traceback, or a line cut by a kill), and the first few warnings and errors."""
    levels: Counter[str] = Counter()
    events: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    other: list[str] = []
    notable: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                other.append(line[:300])
                continue
            if not isinstance(entry, dict):
                other.append(line[:300])
                continue
            level, event = str(entry.get("level")), str(entry.get("event"))
            levels[level] += 1
            if event in ("lease_lost", "step_recovered", "execution_recovered", "step_checked_before_retry"):
                events[event] += 1
            if event == "execution_started" and entry.get("recovered"):
                events["execution_started_recovered"] += 1
            if event == "step_recovered":
                verdicts[str(entry.get("verdict"))] += 1
            if level in ("warning", "error", "critical") and event not in notable:
                notable[event] = line[:500]
    return {
        "levels": dict(levels),
        "events": dict(events),
        "step_recovered_verdicts": dict(verdicts),
        "not_json": len(other),
        "not_json_first": other[:5],
        "first_warning_or_error_by_event": notable,
    }


@dataclass
class Report:
    """What the chaos run measured; printed and written as JSON."""

    figures: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> str:
        text = json.dumps(self.figures, indent=2, sort_keys=True)
        path.write_text(text + "\n")
        return text
