"""Small builders shared by the journal tests: alerts, requests, and a way to reach a running execution."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from kurative.journal import (
    Claim,
    CreationStatus,
    ExecutionRequest,
    IncomingAlert,
    Journal,
    LimitRequest,
)

T = TypeVar("T")


def alert(fingerprint: str = "fp-1", status: str = "firing", **labels: str) -> IncomingAlert:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop", **labels}
    payload = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "pod is crash looping"},
        "startsAt": "2026-11-26T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return IncomingAlert(fingerprint, status, labels, payload, "alertmanager")


def request(
    playbook: str = "restart",
    *,
    key: str | None = "shop/pod-1",
    window: float | None = None,
    limits: tuple[LimitRequest, ...] = (),
    approval: bool = False,
    version: int = 1,
) -> ExecutionRequest:
    return ExecutionRequest(
        playbook_name=playbook,
        playbook_version=version,
        playbook_hash=f"sha256:{playbook}{version}",
        dedupe_key=key,
        dedupe_window=window,
        limits=limits,
        requires_approval=approval,
    )


async def new_execution(journal: Journal, *, key: str | None = None, approval: bool = False) -> str:
    (alert_id,) = await journal.commit_alerts([alert()])
    (outcome,) = await journal.create_executions(alert_id, [request(key=key, approval=approval)])
    assert outcome.status is CreationStatus.CREATED
    assert outcome.execution_id is not None
    return outcome.execution_id


async def running(journal: Journal, owner: str = "replica-a", lease: float = 30.0) -> Claim:
    """A freshly created execution, claimed by ``owner``."""
    execution_id = await new_execution(journal)
    claims = await journal.claim_executions(owner, limit=10, lease_seconds=lease)
    (claim,) = [c for c in claims if c.execution.id == execution_id]
    return claim


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0) -> T:
    """Poll ``probe`` until it returns something; fail after ``within`` seconds (a generous bound)."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.02)


def raw_sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL behind the journal's back (to inspect it, or to plant a fault)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(sql.encode(), params)
        return cur.fetchall() if cur.description else []
