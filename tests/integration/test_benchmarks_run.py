"""The benchmark scripts still run: each on tiny parameters, its last line one JSON object.

Nothing here looks at a figure (times are never asserted); it keeps the scripts from rotting as the
daemon changes. PostgreSQL runs skip without its binaries, except under CI, where they are installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import require_binaries

pytestmark = pytest.mark.timeout(240)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ROOT = BENCHMARKS.parents[1]


def run(script: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def test_bench_startup_runs() -> None:
    summary = run("bench_startup.py", "--playbooks", "5", "--runs", "1", "--rss-playbooks", "5")
    assert summary["benchmark"] == "startup"
    assert summary["vm_rss_mb"] > 0


def test_bench_ingest_runs_on_sqlite() -> None:
    summary = run("bench_ingest.py", "--backend", "sqlite", "--seconds", "0.5")
    assert summary["backend"] == "sqlite"
    assert summary["http_errors_1"] == 0
    assert summary["http_errors_100"] == 0
    assert summary["http_alerts_per_s_1"] > 0


def test_bench_ingest_runs_on_postgresql() -> None:
    require_binaries()
    summary = run("bench_ingest.py", "--backend", "postgresql", "--seconds", "0.5")
    assert summary["backend"] == "postgresql"
    assert summary["http_errors_1"] == 0
    assert "target_met" in summary


def test_bench_pipeline_runs() -> None:
    require_binaries()
    summary = run("bench_pipeline.py", "--alerts", "40", "--timeout", "120")
    assert summary["benchmark"] == "pipeline"
    assert summary["alerts"] == 40
    assert summary["executions_per_s"] > 0


def test_bench_reload_runs() -> None:
    summary = run("bench_reload.py", "--changes", "3", "--sizes", "10")
    assert summary["benchmark"] == "reload"
    assert summary["file_10_p50_ms"] > 0
    assert summary["configmap_10_p50_ms"] > 0


def test_soak_runs() -> None:
    require_binaries()
    summary = run("soak.py", "--minutes", "0.1", "--interval", "2", "--rate", "20")
    assert summary["benchmark"] == "soak"
    assert summary["alerts_acked"] > 0
    assert summary["post_errors"] == 0
    assert summary["exit_code"] == 0
    assert summary["samples"][0]["rss_mb"] > 0
