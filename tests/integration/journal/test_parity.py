"""Dedupe and limits are written three times: in Python for ``kurative test``
(:mod:`kurative.matching.admission`) and in the SQL of each journal backend. One table of cases runs
through all three, on a frozen clock, so that they cannot disagree — least of all at the boundary of a
window, where they once did.

The clock: the Python store takes the time as an argument; the SQLite journal reads the host clock
through ``kurative.journal.sqlite._now``; PostgreSQL reads ``now()``, which this database resolves to
a function over a one-row table (``search_path = public, pg_catalog`` puts it before the built-in),
so that the journal's own SQL runs unchanged against a clock the test sets.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kurative.alerts import Alert
from kurative.journal import CreationStatus, ExecutionRequest, Journal, LimitRequest, open_journal
from kurative.journal import sqlite as sqlite_journal
from kurative.matching.admission import MemoryAdmissionStore, admit
from kurative.matching.planning import LimitKey, Plan
from kurative.playbooks.models import Playbook
from tests.support.postgres import PostgresServer

from .helpers import alert, raw_sql

BASE = 1_900_000_000.0  # 2030-03-17, whole seconds: every offset below is exact in a float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One matched alert at ``at`` seconds: a dedupe key, its window, at most one limit, the verdict."""

    at: float
    key: str
    expect: str  # run | duplicate | limited
    window: float | None = None
    limit: tuple[int, float] | None = None  # (max, per), counted per playbook for the value "shop"


CASES: dict[str, tuple[Attempt, ...]] = {
    "a key without a window runs once": (
        Attempt(0, "k", "run"),
        Attempt(10**6, "k", "duplicate"),
        Attempt(10**6, "other", "run"),
    ),
    "a key is free again exactly one window after its run": (
        Attempt(0, "k", "run", window=600),
        Attempt(599.5, "k", "duplicate", window=600),
        Attempt(600, "k", "run", window=600),
        Attempt(1199, "k", "duplicate", window=600),
        Attempt(1200, "k", "run", window=600),
    ),
    "a run exactly `per` ago no longer counts against the limit": (
        Attempt(0, "a", "run", limit=(1, 3600)),
        Attempt(3599.5, "b", "limited", limit=(1, 3600)),
        Attempt(3600, "c", "run", limit=(1, 3600)),
        Attempt(3601, "d", "limited", limit=(1, 3600)),
    ),
    "the limit counts the runs of the last `per`, a sliding window": (
        Attempt(0, "a", "run", limit=(2, 60)),
        Attempt(30, "b", "run", limit=(2, 60)),
        Attempt(59.5, "c", "limited", limit=(2, 60)),
        Attempt(60, "d", "run", limit=(2, 60)),
        Attempt(89.5, "e", "limited", limit=(2, 60)),
        Attempt(90, "f", "run", limit=(2, 60)),
    ),
    "a duplicate is not limited and a limited attempt keeps its key free": (
        Attempt(0, "a", "run", limit=(1, 100)),
        Attempt(50, "a", "duplicate", limit=(1, 100)),
        Attempt(60, "b", "limited", limit=(1, 100)),
        Attempt(100, "b", "run", limit=(1, 100)),
    ),
    "a limited attempt does not count as a run": (
        Attempt(0, "a", "run", limit=(1, 100)),
        Attempt(99, "b", "limited", limit=(1, 100)),
        Attempt(100, "c", "run", limit=(1, 100)),
        Attempt(150, "d", "limited", limit=(1, 100)),
        Attempt(200, "e", "run", limit=(1, 100)),
    ),
}

_VERDICTS = {
    CreationStatus.CREATED: "run",
    CreationStatus.DEDUPLICATED: "duplicate",
    CreationStatus.RATE_LIMITED: "limited",
}


class Clock:
    """The frozen time of both journals; ``set`` moves it to ``BASE + offset``."""

    def __init__(self, pg_url: str) -> None:
        self.now = BASE
        self.pg_url = pg_url

    def set(self, offset: float) -> None:
        self.now = BASE + offset
        raw_sql(self.pg_url, "UPDATE test_clock SET t = to_timestamp(%s)", (self.now,))


def _frozen_postgres(server: PostgresServer, name: str) -> str:
    url = server.create_database(name)
    raw_sql(url, "CREATE TABLE test_clock (t timestamptz NOT NULL)")
    raw_sql(url, "INSERT INTO test_clock VALUES (to_timestamp(%s))", (BASE,))
    raw_sql(
        url,
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql STABLE AS 'SELECT t FROM test_clock'",
    )
    raw_sql(url, f"ALTER DATABASE {name} SET search_path = public, pg_catalog")
    return url


@pytest.fixture
def clock(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    name = f"parity_{uuid.uuid4().hex[:12]}"
    frozen = Clock(_frozen_postgres(postgres_server, name))
    monkeypatch.setattr(sqlite_journal, "_now", lambda: frozen.now)
    yield frozen
    postgres_server.drop_database(name)


@pytest.fixture
async def journals(clock: Clock, tmp_path: Path) -> AsyncIterator[dict[str, Journal]]:
    # migrated on the frozen clock, so that the schema's `DEFAULT now()` reads it too
    opened = {
        "sqlite": await open_journal(f"sqlite:///{tmp_path / 'parity.sqlite'}", migrate=True),
        "postgresql": await open_journal(clock.pg_url, migrate=True),
    }
    try:
        yield opened
    finally:
        for journal in opened.values():
            await journal.close()


def _plan(playbook: Playbook, attempt: Attempt) -> Plan:
    limits = () if attempt.limit is None else (LimitKey("labels.namespace", "shop", *attempt.limit),)
    subject = Alert.make({"alertname": "Parity", "namespace": "shop"})
    return Plan(playbook, subject, attempt.key, attempt.window, limits, ())


def _request(playbook: str, attempt: Attempt) -> ExecutionRequest:
    limits = () if attempt.limit is None else (LimitRequest("shop", *attempt.limit, name="labels.namespace"),)
    return ExecutionRequest(
        playbook_name=playbook,
        playbook_version=1,
        playbook_hash=f"sha256:{playbook}",
        dedupe_key=attempt.key,
        dedupe_window=attempt.window,
        limits=limits,
    )


@pytest.mark.postgres
async def test_admission_and_both_journals_decide_every_case_alike(
    clock: Clock, journals: dict[str, Journal]
) -> None:
    alert_ids = {name: (await j.commit_alerts([alert()]))[0] for name, j in journals.items()}
    seen: dict[str, dict[str, list[str]]] = {}
    for number, (case, attempts) in enumerate(CASES.items()):
        playbook = Playbook(name=f"case-{number}", version=1, steps=())
        store = MemoryAdmissionStore()
        verdicts: dict[str, list[str]] = {"expected": [a.expect for a in attempts], "admission": []}
        verdicts.update({name: [] for name in journals})
        for attempt in attempts:
            clock.set(attempt.at)
            for journal in journals.values():
                assert (await journal.now()).timestamp() == BASE + attempt.at  # the clock is frozen
            verdicts["admission"].append(admit(_plan(playbook, attempt), store, BASE + attempt.at).decision)
            for name, journal in journals.items():
                (outcome,) = await journal.create_executions(
                    alert_ids[name], [_request(playbook.name, attempt)]
                )
                verdicts[name].append(_VERDICTS[outcome.status])
        seen[case] = verdicts
    disagreements = {
        case: verdicts
        for case, verdicts in seen.items()
        if any(v != verdicts["expected"] for v in verdicts.values())
    }
    assert not disagreements
