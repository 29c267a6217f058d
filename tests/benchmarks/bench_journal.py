"""Journal throughput: alerts committed per second with 8 concurrent writers, and step-record latency.

Not a test: run it with ``.venv/bin/python tests/benchmarks/bench_journal.py [--journal URL]``.
Without ``--journal`` it starts a throwaway PostgreSQL with fsync on (durable commits, as production
runs), creates a fresh database and migrates it. Phases, each for ``--seconds``:

1. baseline: group commit off, ``--writers`` tasks each committing 1 alert per call, as a naive
   ingress would (one transaction, one WAL flush per alert);
2. group commit: the same writers, the same 1 alert per call, with the journal's group commit on
   (concurrent calls share a transaction); printed as a ratio against the baseline of this run;
3. batches: the writers commit 100 alerts per call (one Alertmanager webhook group per call);
4. steps: one leased execution records ``--steps`` step start + finish pairs, one after the other;
   p50 and p99 of one pair (two durable commits), and of each record alone; on PostgreSQL against a
   baseline of two bare autocommit INSERTs on a plain connection (the floor any durable journal pays).

Alerts are realistic (~1 KB: labels, annotations, timestamps). The last line is one JSON object.
Targets from the issue: >= 4,500 alerts/s with 8 writers; step records p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kurative.journal import (
    ExecutionRequest,
    ExecutionState,
    IncomingAlert,
    Journal,
    StepFinish,
    StepStart,
    StepStatus,
    open_journal,
)

TARGET_ALERTS_PER_S = 4500
TARGET_STEP_P99_MS = 5.0


def make_alert(n: int) -> IncomingAlert:
    labels = {
        "alertname": "KubePodCrashLooping",
        "severity": "critical",
        "namespace": f"team-{n % 50}",
        "pod": f"web-{n}-7d9f8c6b5-x2x9q",
        "container": "web",
        "job": "kube-state-metrics",
        "cluster": "prod-eu-1",
        "prometheus": "monitoring/k8s",
    }
    payload = {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "summary": "Pod is crash looping.",
            "description": f"Pod {labels['namespace']}/{labels['pod']} ({labels['container']}) is in "
            "waiting state (reason: CrashLoopBackOff) for more than 15 minutes.",
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
        },
        "startsAt": "2026-11-26T06:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=max_over_time%28kube_pod_container_"
        "status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1",
        "fingerprint": f"{n:016x}",
    }
    return IncomingAlert(f"{n:016x}", "firing", labels, payload, "alertmanager")


async def measure_ingest(
    url: str, *, writers: int, per_call: int, seconds: float, group_commit: bool
) -> float:
    options = {"max_size": writers + 2} if url.startswith("postgres") else {}
    journal = await open_journal(url, group_commit=group_commit, **options)
    # senders are not what we measure: build their alerts up front, distinct per writer
    pool = [[make_alert(w * 1_000_000 + i) for i in range(max(per_call, 500))] for w in range(writers)]
    stop_at = 0.0

    async def writer(offset: int) -> int:
        mine = pool[offset]
        done = 0
        while time.perf_counter() < stop_at:
            start = done % len(mine)
            batch = mine[start : start + per_call] if per_call > 1 else [mine[start]]
            await journal.commit_alerts(batch)
            done += len(batch)
        return done

    try:
        # warm up connections and prepared statements
        await asyncio.gather(*(journal.commit_alerts([make_alert(i)]) for i in range(writers * 2)))
        started = time.perf_counter()
        stop_at = started + seconds
        totals = await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - started
    finally:
        await journal.close()
    return sum(totals) / elapsed


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1] * 1000, 3)


async def measure_raw_pairs(url: str, count: int) -> dict[str, float]:
    """Baseline: two bare autocommit INSERTs (two durable commits) on one plain connection."""
    import psycopg

    pairs: list[float] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body jsonb)")
        for i in range(count + 50):
            t0 = time.perf_counter()
            await conn.execute("INSERT INTO bench_raw (body) VALUES (%s::jsonb)", ('{"step": "started"}',))
            await conn.execute("INSERT INTO bench_raw (body) VALUES (%s::jsonb)", ('{"step": "finished"}',))
            if i >= 50:
                pairs.append(time.perf_counter() - t0)
        await conn.execute("DROP TABLE bench_raw")
    return {"raw_pair_ms_p50": _pct(pairs, 50), "raw_pair_ms_p99": _pct(pairs, 99)}


async def measure_steps(url: str, count: int) -> dict[str, float]:
    journal: Journal = await open_journal(url)
    try:
        (alert_id,) = await journal.commit_alerts([make_alert(0)])
        await journal.create_executions(alert_id, [ExecutionRequest("bench", 1, "sha256:bench", None)])
        claims = await journal.claim_executions("bench-runner", limit=1, lease_seconds=3600)
        lease = claims[0].lease
        pairs: list[float] = []
        starts: list[float] = []
        finishes: list[float] = []
        params = {"namespace": "shop", "kind": "Deployment", "name": "web"}
        for i in range(count + 50):
            t0 = time.perf_counter()
            await journal.record_step_started(
                lease,
                StepStart(
                    i, f"step-{i}", "kubernetes.rollout_restart", 1, params, f"{lease.execution_id}/{i}"
                ),
            )
            t1 = time.perf_counter()
            await journal.record_step_finished(
                lease, StepFinish(i, f"step-{i}", StepStatus.SUCCEEDED, 1, output={"restartedAt": "now"})
            )
            t2 = time.perf_counter()
            if i >= 50:  # warm-up excluded
                pairs.append(t2 - t0)
                starts.append(t1 - t0)
                finishes.append(t2 - t1)
        await journal.release_execution(lease, ExecutionState.SUCCEEDED)
    finally:
        await journal.close()

    return {
        "step_pair_ms_p50": _pct(pairs, 50),
        "step_pair_ms_p99": _pct(pairs, 99),
        "step_start_ms_p99": _pct(starts, 99),
        "step_finish_ms_p99": _pct(finishes, 99),
    }


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    baseline = await measure_ingest(
        url, writers=args.writers, per_call=1, seconds=args.seconds, group_commit=False
    )
    print(
        f"baseline (no group commit), {args.writers} writers x 1 alert/call: {baseline:,.0f} alerts/s",
        flush=True,
    )
    grouped = await measure_ingest(
        url, writers=args.writers, per_call=1, seconds=args.seconds, group_commit=True
    )
    print(
        f"group commit, {args.writers} writers x 1 alert/call: {grouped:,.0f} alerts/s "
        f"({grouped / baseline:.2f}x baseline)",
        flush=True,
    )
    batched = await measure_ingest(
        url, writers=args.writers, per_call=100, seconds=args.seconds, group_commit=True
    )
    print(f"batches, {args.writers} writers x 100 alerts/call: {batched:,.0f} alerts/s", flush=True)
    steps: dict[str, Any] = await measure_steps(url, args.steps)
    if url.startswith("postgres"):
        raw = await measure_raw_pairs(url, args.steps)
        steps.update(raw)
        steps["step_pair_p50_ratio_to_raw"] = round(steps["step_pair_ms_p50"] / raw["raw_pair_ms_p50"], 2)
        print(
            f"baseline: two bare INSERT commits p50 {raw['raw_pair_ms_p50']:.2f} ms, "
            f"p99 {raw['raw_pair_ms_p99']:.2f} ms",
            flush=True,
        )
    print(
        f"step start+finish: p50 {steps['step_pair_ms_p50']:.2f} ms, p99 {steps['step_pair_ms_p99']:.2f} ms "
        f"(start p99 {steps['step_start_ms_p99']:.2f} ms, finish p99 {steps['step_finish_ms_p99']:.2f} ms)",
        flush=True,
    )
    return {
        "benchmark": "journal",
        "backend": url.split(":", 1)[0],
        "writers": args.writers,
        "seconds_per_phase": args.seconds,
        "alerts_per_s_baseline": round(baseline),
        "alerts_per_s_group_commit": round(grouped),
        "group_commit_ratio": round(grouped / baseline, 2),
        "alerts_per_s_batches_of_100": round(batched),
        **steps,
        "target_alerts_per_s": TARGET_ALERTS_PER_S,
        "target_met_alerts": grouped >= TARGET_ALERTS_PER_S,
        "target_step_p99_ms": TARGET_STEP_P99_MS,
        "target_met_steps": steps["step_pair_ms_p99"] < TARGET_STEP_P99_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--journal", metavar="URL", help="benchmark this journal (default: a throwaway PostgreSQL)"
    )
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each ingest phase")
    parser.add_argument("--steps", type=int, default=2000, help="step start+finish pairs to time")
    args = parser.parse_args()

    if args.journal:
        url: str = args.journal
        asyncio.run(_migrate(url))
        summary = asyncio.run(run(url, args))
        summary["fsync"] = "as configured"
    else:
        from tests.support.postgres import find_binaries, start_postgres

        bindir = find_binaries()
        if bindir is None:
            sys.exit("PostgreSQL binaries not found: install postgresql, or pass --journal URL")
        with start_postgres(fsync=True, bindir=bindir) as server:
            url = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
            asyncio.run(_migrate(url))
            summary = asyncio.run(run(url, args))
        summary["fsync"] = True
    print(json.dumps(summary))


async def _migrate(url: str) -> None:
    journal = await open_journal(url, migrate=True)
    await journal.close()


if __name__ == "__main__":
    main()
