"""Two replicas on one journal: racing on the same alert, on one limit budget, and on claims.

Each replica is its own Journal (its own connection pool or SQLite connection) on the same database,
as two kurative pods would be; the operations are started together so that they really overlap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from kurative.journal import CreationStatus, IncomingAlert, Journal, LimitRequest, open_journal
from tests.support.postgres import PostgresServer

from .helpers import alert, eventually, request, running


@pytest.fixture
async def replicas(journal_url: str) -> AsyncIterator[tuple[Journal, Journal]]:
    first = await open_journal(journal_url, migrate=True)
    second = await open_journal(journal_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_replicas_racing_on_one_alert_create_exactly_one_execution(
    replicas: tuple[Journal, Journal],
) -> None:
    a, b = replicas
    # Alertmanager in HA sends the same notification to both replicas
    (at_a,) = await a.commit_alerts([alert()])
    (at_b,) = await b.commit_alerts([alert()])
    for episode in range(15):
        req = request(key=f"shop/pod-1@{episode}")
        outcomes = await asyncio.gather(
            *(a.create_executions(at_a, [req]) for _ in range(3)),
            *(b.create_executions(at_b, [req]) for _ in range(3)),
        )
        flat = [o for batch in outcomes for o in batch]
        statuses = Counter(o.status for o in flat)
        assert statuses == {CreationStatus.CREATED: 1, CreationStatus.DEDUPLICATED: 5}, episode
        assert len({o.execution_id for o in flat}) == 1
    page = await a.list_executions(limit=100)
    assert len(page.items) == 15


async def test_replicas_racing_on_one_limit_stay_within_it(replicas: tuple[Journal, Journal]) -> None:
    a, b = replicas
    (at_a,) = await a.commit_alerts([alert()])
    (at_b,) = await b.commit_alerts([alert()])
    limit = LimitRequest("shop", 5, 3600.0, "labels.namespace")
    outcomes = await asyncio.gather(
        *(
            (a if i % 2 else b).create_executions(
                at_a if i % 2 else at_b, [request(key=f"pod-{i}", limits=(limit,))]
            )
            for i in range(24)
        )
    )
    statuses = Counter(batch[0].status for batch in outcomes)
    assert statuses == {CreationStatus.CREATED: 5, CreationStatus.RATE_LIMITED: 19}


async def test_replicas_claim_each_execution_exactly_once(replicas: tuple[Journal, Journal]) -> None:
    a, b = replicas
    (alert_id,) = await a.commit_alerts([alert()])
    outcomes = await a.create_executions(alert_id, [request(f"pb-{i}", key=None) for i in range(30)])
    created = {o.execution_id for o in outcomes}

    async def worker(journal: Journal, name: str) -> list[str]:
        mine: list[str] = []
        while True:
            claims = await journal.claim_executions(name, limit=2, lease_seconds=60)
            if not claims:
                return mine
            mine.extend(c.execution.id for c in claims)

    results = await asyncio.gather(
        *(worker(j, f"{n}-{w}") for n, j in (("a", a), ("b", b)) for w in range(3))
    )
    claimed = [execution_id for result in results for execution_id in result]
    assert len(claimed) == len(set(claimed)) == 30
    assert set(claimed) == created


@pytest.mark.postgres
async def test_leases_use_the_database_clock_not_the_replicas(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.create_database(f"skew_{uuid.uuid4().hex[:8]}")
    honest = await open_journal(url, migrate=True)
    skewed = await open_journal(url)
    try:
        # this replica's wall clock runs an hour ahead (a bad NTP setup); it claims with a short lease
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
        claim = await running(skewed, owner="skewed", lease=3)
        monkeypatch.undo()
        assert await honest.claim_executions("honest") == ()
        # had the lease been computed on the skewed clock it would last an hour; it lasts 3 s
        (taken,) = await eventually(lambda: honest.claim_executions("honest"))
        assert taken.execution.id == claim.execution.id
        assert taken.recovered
    finally:
        await honest.close()
        await skewed.close()


async def test_replicas_committing_one_start_less_alert_open_one_episode(
    replicas: tuple[Journal, Journal],
) -> None:
    # a script posts the same alert, without startsAt, to both replicas at once, again and again
    a, b = replicas
    sent = alert("fp-script")
    startless = IncomingAlert(
        sent.fingerprint, "firing", sent.labels, {"labels": dict(sent.labels)}, "prometheus"
    )
    rounds = await asyncio.gather(*(j.commit_alerts([startless]) for _ in range(10) for j in (a, b)))
    starts = {(await a.get_alert(alert_id)).starts_at for (alert_id,) in rounds}
    assert len(starts) == 1
    assert None not in starts


@pytest.mark.postgres
async def test_a_resolution_matched_while_another_replica_creates_its_approval_cancels_it(
    postgres_server: PostgresServer,
) -> None:
    """Replica A matches a firing alert (held up on its dedupe key) while replica B matches the
    resolved notification: neither may miss the other's work, the approval ends cancelled."""
    import psycopg

    name = f"resolve_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    a = await open_journal(url, migrate=True)
    b = await open_journal(url)
    blocker = await psycopg.AsyncConnection.connect(url)
    try:
        (firing,) = await a.commit_alerts([alert("fp-1")])
        await blocker.execute(
            "INSERT INTO dedupe_keys (playbook_name, dedupe_key, execution_id) VALUES ('restart', 'k', 'x')"
        )
        matching = asyncio.create_task(a.match_alerts([(firing, [request(key="k", approval=True)])], "r"))
        await asyncio.sleep(0.3)
        assert not matching.done()  # its dedupe claim waits for the blocker
        (resolved,) = await b.commit_alerts([alert("fp-1", status="resolved")])
        resolving = asyncio.create_task(b.match_alerts([(resolved, [])], "r"))
        await asyncio.sleep(0.3)
        await blocker.rollback()
        first, second = await asyncio.wait_for(asyncio.gather(matching, resolving), 30)
        ((outcome,),) = first.outcomes
        assert outcome.status is CreationStatus.CREATED
        assert (*first.cancelled, *second.cancelled) == (outcome.execution_id,)
        execution = (await a.get_execution(outcome.execution_id or "")).execution
        assert execution.state.value == "cancelled"
    finally:
        await blocker.close()
        await a.close()
        await b.close()
        postgres_server.drop_database(name)
