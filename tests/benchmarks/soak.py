"""Soak: ``kurative serve`` (a process) at a steady alert rate for a long time; does it grow?

Not a test: ``.venv/bin/python tests/benchmarks/soak.py [--minutes 30] [--rate 50] [--interval 60]``.
It starts a throwaway PostgreSQL with fsync on (``--backend sqlite`` for the embedded journal, or
``--journal URL``), a real HTTP sink for the webhooks, and ``kurative serve`` on one playbook (a
``log`` step, then an ``http.request`` to the sink), and posts distinct alerts at ``--rate`` a second
(one POST every 100 ms; every tenth alert repeats an earlier one, which the dedupe absorbs). Every
``--interval`` seconds it samples the daemon's resident memory (VmRSS in /proc/PID/status), its open
file descriptors (/proc/PID/fd), its threads, and the journal's backlog of unfinished executions.

It reports the curve and the growth: first against last sample, and a least-squares slope per hour
over the samples after the first (the first minute holds the warm-up: imports, pools, caches) and over
the second half of the run (the steady state: a leak shows there as a slope that does not fall to 0).
The baseline, as for the other benchmarks in the same run: the daemon's RSS and descriptors when it is
ready and idle, before the first alert. The last line is one JSON object. The journal is never pruned
during the run (retention 30 d): the daemon must not grow with the size of its journal.

Measured on the shared 2-core development machine (load average 8 to 16 from other suites), 10
minutes at 50/s on PostgreSQL, default 16 workers: 28,760 alerts acknowledged (47.9/s), no refused
POST; RSS 62.2 MB idle, 78.2 after one minute, 83.5 after two, 84.4 from minute 5 to the end (slope
over the second half 0 MB/h); descriptors 20 idle, 29 under load, 33 from minute 9; 4 threads
throughout. The backlog of unfinished executions grew to 6,362 (the daemon ran about 40 executions/s
with that little CPU) and drained 111 s after the last alert; the daemon exited 0 on SIGTERM.
30 minutes, same machine and load: 88,250 alerts (49.0/s acknowledged), RSS 62.3 idle, 84.4 at minute
5, 84.7 at 30 (second-half slope 0.0 MB/h), descriptors 21 idle, 33 from minute 7 (second-half slope
0/h), 4 threads; the backlog grew steadily to 37,803 (about 26 executions/s done, no slowdown as the
journal grew past 80,000 executions). One minute with the machine quiet (load 2.5): 16 workers kept up
with 50/s, backlog at most 1, RSS 77 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from kurative.journal import ExecutionState, open_journal
from tests.support.http_sink import HttpSink, http_sink
from tests.support.postgres import free_port, require_binaries, start_postgres

TOKEN = "soak-bearer-token"
POST_EVERY = 0.1

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: soak, version: 1}
spec:
  trigger: {alertname: [SoakAlert]}
  approval: auto
  steps:
    - name: note
      action: log
      params: {message: "soak ${labels.pod}"}
    - name: notify
      action: http.request
      params: {url: "SINK/hook", json: {pod: "${labels.pod}"}}
"""


def sample(pid: int) -> dict[str, float]:
    """VmRSS (MB), open descriptors and threads of ``pid`` from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields["VmRSS"].split()[0])
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value), per hour; None with fewer than two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return round(cov / var * 3600, 2)


def alert(n: int) -> dict[str, Any]:
    labels = {"alertname": "SoakAlert", "severity": "warning", "namespace": f"team-{n % 20}", "pod": f"p{n}"}
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"soak alert {n}"},
        "startsAt": "2026-12-01T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": f"{n:016x}",
    }


def body(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SoakAlert"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "kurative",
        "groupLabels": {"alertname": "SoakAlert"},
        "commonLabels": {"alertname": "SoakAlert"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


class Counts:
    def __init__(self) -> None:
        self.sent = self.acked = self.errors = self.posts = 0


async def send(url: str, rate: float, stop: asyncio.Event, counts: Counts) -> None:
    """``rate`` alerts a second, one POST per 100 ms, on a fixed schedule (a slow answer is not
    made up for with a burst: the next POST waits for its slot)."""
    per_post = max(1, round(rate * POST_EVERY))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    n = 0
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while not stop.is_set():
            batch = []
            for _ in range(per_post):
                batch.append(alert(n - 5 if n % 10 == 9 else n))  # every tenth: a repeat
                n += 1
            counts.posts += 1
            counts.sent += len(batch)
            try:
                answer = await client.post("/api/v1/alerts", json=body(batch))
                if answer.status_code == 200:
                    counts.acked += len(batch)
                else:
                    counts.errors += 1
            except httpx.HTTPError:
                counts.errors += 1
            delay = start + counts.posts * POST_EVERY - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


async def ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"kurative serve exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("kurative serve did not get ready in 60 s")


async def backlog(journal_url: str) -> int:
    journal = await open_journal(journal_url)
    try:
        counts = await journal.count_unfinished()
    finally:
        await journal.close()
    return sum(n for state, n in counts.items() if state is not ExecutionState.AWAITING_APPROVAL)


async def soak(args: argparse.Namespace, journal_url: str, folder: Path, sink: HttpSink) -> dict[str, Any]:
    sink_url = sink.url
    (folder / "rules").mkdir()
    (folder / "rules" / "soak.yaml").write_text(PLAYBOOK.replace("SINK", sink_url))
    port = free_port()
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"bearerTokens": [{"secretRef": "token"}]},
        "journal": {"url": journal_url, "migrate": True},
        "playbooks": {"paths": ["rules"]},
        "runner": {"workers": args.workers},
        "secrets": {"token": {"env": "SOAK_TOKEN"}},
        "logging": {"format": "json", "level": "info"},
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    log = folder / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kurative.cli", "serve", "--config", str(folder / "config.yaml")],
            env={**os.environ, "SOAK_TOKEN": TOKEN},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await ready(url, process, log)
        idle = sample(process.pid)
        print(f"idle: {idle}", flush=True)
        counts = Counts()
        stop = asyncio.Event()
        sender = asyncio.create_task(send(url, args.rate, stop, counts))
        samples: list[dict[str, Any]] = []
        received = 0
        start = time.monotonic()
        end = start + args.minutes * 60
        next_at = start
        while True:
            now = time.monotonic()
            if now >= next_at:
                point = {
                    "t": round(now - start, 1),
                    **sample(process.pid),
                    "backlog": await backlog(journal_url),
                    "acked": counts.acked,
                    "errors": counts.errors,
                }
                samples.append(point)
                received += len(sink.requests)
                sink.clear()  # the sink keeps what it receives: count it, do not hoard it
                print(json.dumps(point), flush=True)
                next_at += args.interval
            if now >= end or sender.done() or process.poll() is not None:
                break
            await asyncio.sleep(min(1.0, max(0.0, min(next_at, end) - now)))
        stop.set()
        await sender
        if process.poll() is not None:
            raise SystemExit(f"kurative serve died during the soak: {log.read_text()[-3000:]}")
        final = {"t": round(time.monotonic() - start, 1), **sample(process.pid)}
        drained_in = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = await backlog(journal_url)
            if left == 0:
                drained_in = round(time.monotonic() - start - final["t"], 1)
                break
            await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    if final["t"] - samples[-1]["t"] >= 1:
        samples.append({**final, "backlog": None, "acked": counts.acked, "errors": counts.errors})
    after_warmup = samples[1:] if len(samples) > 2 else samples
    second_half = [s for s in samples if s["t"] >= final["t"] / 2]
    first, last = samples[0], samples[-1]
    return {
        "benchmark": "soak",
        "minutes": args.minutes,
        "rate": args.rate,
        "interval_s": args.interval,
        "workers": args.workers,
        "alerts_sent": counts.sent,
        "alerts_acked": counts.acked,
        "post_errors": counts.errors,
        "achieved_rate": round(counts.acked / max(final["t"], 1e-9), 1),
        "baseline_idle_rss_mb": idle["rss_mb"],
        "baseline_idle_fds": idle["fds"],
        "rss_first_mb": first["rss_mb"],
        "rss_last_mb": last["rss_mb"],
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
        "rss_slope_mb_per_h": slope_per_hour([(s["t"], s["rss_mb"]) for s in after_warmup]),
        "rss_slope_second_half_mb_per_h": slope_per_hour([(s["t"], s["rss_mb"]) for s in second_half]),
        "fds_first": first["fds"],
        "fds_last": last["fds"],
        "fds_growth": last["fds"] - first["fds"],
        "fds_slope_per_h": slope_per_hour([(s["t"], s["fds"]) for s in after_warmup]),
        "fds_slope_second_half_per_h": slope_per_hour([(s["t"], s["fds"]) for s in second_half]),
        "threads_last": last["threads"],
        "backlog_max": max(s["backlog"] for s in samples if s["backlog"] is not None),
        "drained_after_s": drained_in,
        "exit_code": exit_code,
        "sink_requests": received + len(sink.requests),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to post (default: 30)")
    parser.add_argument("--rate", type=float, default=50.0, help="alerts a second (default: 50)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default: 60)")
    parser.add_argument(
        "--workers", type=int, default=16, help="runner.workers of the daemon (default: 16, as in production)"
    )
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--journal", metavar="URL", help="an existing journal instead of a throwaway one")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.interval <= 0 or not 1 <= args.workers <= 1024:
        parser.error("--minutes, --rate and --interval must be positive, --workers from 1 to 1024")
    with (
        tempfile.TemporaryDirectory(prefix="kurative-soak-") as tmp,
        http_sink() as sink,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        if args.journal:
            url = args.journal
        elif args.backend == "sqlite":
            url = f"sqlite:///{folder / 'journal.db'}"
        else:
            server = stack.enter_context(start_postgres(fsync=True, bindir=require_binaries()))
            url = server.create_database("soak")
        figures = asyncio.run(soak(args, url, folder, sink))
    figures["backend"] = url.split(":", 1)[0]
    print(
        f"soak {figures['minutes']} min at {figures['rate']:g}/s ({figures['achieved_rate']}/s acked): "
        f"RSS {figures['rss_first_mb']} -> {figures['rss_last_mb']} MB "
        f"({figures['rss_slope_mb_per_h']} MB/h), fds {figures['fds_first']} -> {figures['fds_last']} "
        f"({figures['fds_slope_per_h']}/h), backlog max {figures['backlog_max']}",
        flush=True,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
