"""A cheap HTTP load generator for the ingress benchmarks, run as its own process.

Not a test. ``python tests/benchmarks/loadgen.py --port P --token T --connections 8 --per-post 1
--seconds 5`` opens that many keep-alive HTTP/1.1 connections to 127.0.0.1:P and, on each, posts
Alertmanager webhooks (version 4) of ``--per-post`` alerts one after the other, each answer read whole
before the next request. Request bytes are built before the clock starts and answers are parsed only as
far as the status line and Content-Length, so the client costs little next to the server. Prints one
JSON object: requests, alerts acknowledged (answers 200), non-200 answers, elapsed seconds, and
latency percentiles of one request (write to last byte of the answer) in milliseconds.

It runs for at most ``--seconds`` plus a short warm-up, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

try:  # the client must not be the bottleneck: uvloop when it is there
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

WARMUP_REQUESTS = 20
BODIES_PER_CONNECTION = 64


def make_alert(n: int) -> dict[str, Any]:
    """A realistic alert of about 1 KB, distinct per ``n`` (labels, annotations, fingerprint)."""
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
    return {
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


def webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "kurative",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring:9093",
        "alerts": alerts,
    }


def request_bytes(port: int, token: str, body: bytes, path: str = "/api/v1/alerts") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def bodies(connection: int, per_post: int, count: int, offset: int) -> list[bytes]:
    base = offset + connection * 10_000_000
    return [
        json.dumps(webhook([make_alert(base + i * per_post + j) for j in range(per_post)])).encode()
        for i in range(count)
    ]


async def read_answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer whole; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def run(args: argparse.Namespace) -> dict[str, Any]:
    per_conn = [
        [
            request_bytes(args.port, args.token, b)
            for b in bodies(c, args.per_post, BODIES_PER_CONNECTION, args.offset)
        ]
        for c in range(args.connections)
    ]
    latencies: list[float] = []
    counts = {"requests": 0, "alerts": 0, "errors": 0}
    stop_at = 0.0
    started = asyncio.Event()
    warm = [0]

    async def connection(requests: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            for i in range(WARMUP_REQUESTS):
                writer.write(requests[i % len(requests)])
                await read_answer(reader)
            warm[0] += 1
            await started.wait()
            i = 0
            clock = time.perf_counter
            while (t0 := clock()) < stop_at:
                writer.write(requests[i % len(requests)])
                status = await read_answer(reader)
                latencies.append(clock() - t0)
                counts["requests"] += 1
                if status == 200:
                    counts["alerts"] += args.per_post
                else:
                    counts["errors"] += 1
                i += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection(r)) for r in per_conn]
    # every connection warmed up (or one failed) before the clock starts; bounded
    deadline = time.perf_counter() + 30
    while warm[0] < len(tasks) and not any(t.done() for t in tasks) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    stop_at = t_start + args.seconds
    started.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start  # what the load generator itself took of the machine
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        **counts,
        "elapsed": elapsed,
        "cpu_s": cpu,
        "alerts_per_s": counts["alerts"] / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--per-post", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--offset", type=int, default=0, help="first alert number (distinct fingerprints)")
    args = parser.parse_args()
    result = uvloop.run(run(args)) if uvloop is not None else asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
