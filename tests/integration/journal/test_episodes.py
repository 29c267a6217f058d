"""Firing episodes in the journal: an alert sent without ``startsAt`` joins its fingerprint's open
episode, so that a script's repeats share one default dedupe key and run once (both backends)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kurative.alerts import Alert, parse_notification
from kurative.journal import (
    CreationStatus,
    ExecutionRequest,
    ExecutionState,
    IncomingAlert,
    Journal,
    open_journal,
)
from kurative.journal.episodes import commit_and_join
from kurative.journal.schema import load_migrations
from kurative.matching.planning import default_dedupe_key

from .helpers import alert, raw_sql

STARTS = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def startless(fingerprint: str = "fp-1", status: str = "firing") -> IncomingAlert:
    sent = alert(fingerprint, status)
    payload = {k: v for k, v in sent.payload.items() if k != "startsAt"}
    return IncomingAlert(sent.fingerprint, sent.status, sent.labels, payload, "prometheus")


async def starts(journal: Journal, alerts: list[IncomingAlert]) -> list[datetime | None]:
    return [(await journal.get_alert(i)).starts_at for i in await journal.commit_alerts(alerts)]


async def test_repeats_without_starts_at_join_the_open_episode(journal: Journal) -> None:
    (first,) = await starts(journal, [startless()])
    assert first is not None
    await asyncio.sleep(0.01)
    again = await starts(journal, [startless(), startless("fp-2"), startless()])
    assert again[0] == again[2] == first  # one episode, whatever the batch
    assert again[1] is not None
    assert again[1] > first
    concurrent = await asyncio.gather(*(starts(journal, [startless()]) for _ in range(5)))
    assert {s for (s,) in concurrent} == {first}

    # a resolved notification joins the episode and closes it: the next firing opens a new one
    (resolved,) = await starts(journal, [startless(status="resolved")])
    assert resolved == first
    await asyncio.sleep(0.01)
    (reopened,) = await starts(journal, [startless()])
    assert reopened is not None
    assert reopened > first


async def test_a_resolution_sent_again_without_starts_at_joins_the_episode_it_closed(
    journal: Journal,
) -> None:
    """So that a ``status: resolved`` playbook it starts runs once (the default dedupe key holds the
    start), while the next firing still opens a new episode."""
    (first,) = await starts(journal, [startless()])
    repeats = [await starts(journal, [startless(status="resolved")]) for _ in range(3)]
    assert repeats == [[first]] * 3
    await asyncio.sleep(0.01)
    (reopened,) = await starts(journal, [startless()])
    assert reopened is not None
    assert first is not None
    assert reopened > first
    (lonely,) = await starts(journal, [startless("fp-9", status="resolved")])  # nothing before it
    assert lonely is not None
    assert lonely > first


async def test_a_sent_starts_at_is_kept_and_becomes_the_open_episode(journal: Journal) -> None:
    assert await starts(journal, [alert()]) == [STARTS]  # the helper's alert starts at 06:00
    ids = await journal.commit_alerts([startless(), alert("fp-1", "resolved"), startless()])
    stored = [await journal.get_alert(i) for i in ids]
    assert [s.starts_at for s in stored[:2]] == [STARTS, STARTS]
    assert stored[2].starts_at == stored[2].received_at  # closed: a new episode starts at receipt


async def test_a_scripted_repeat_without_starts_at_runs_once(journal: Journal) -> None:
    """What the daemon does: parse, commit, plan the default key, create; a repeat is a duplicate."""
    body = [{"labels": {"alertname": "DiskFull", "instance": "db-1"}}]  # no startsAt, as scripts send
    outcomes = []
    for minutes in (0, 5, 240):
        notification = parse_notification(body, STARTS + timedelta(minutes=minutes))
        ((alert_id, joined),) = await commit_and_join(journal, notification.alerts, "prometheus")
        assert not joined.starts_at_given
        request = ExecutionRequest("disk", 1, "sha256:disk", default_dedupe_key(joined), None)
        (outcome,) = await journal.create_executions(alert_id, [request])
        outcomes.append(outcome)
    assert [o.status for o in outcomes] == [
        CreationStatus.CREATED,
        CreationStatus.DEDUPLICATED,
        CreationStatus.DEDUPLICATED,
    ]
    assert outcomes[1].execution_id == outcomes[2].execution_id == outcomes[0].execution_id


async def test_an_alert_with_its_own_start_is_handed_back_unchanged(journal: Journal) -> None:
    sent = Alert.make({"alertname": "DiskFull"}, starts_at=STARTS)
    ((_, joined),) = await commit_and_join(journal, [sent], "alertmanager")
    assert joined is sent


async def test_an_episode_outlives_pruned_repeats_while_its_execution_is_kept(
    journal: Journal, journal_url: str, backend: str
) -> None:
    (held,) = await journal.commit_alerts([startless()])
    (outcome,) = await journal.create_executions(held, [ExecutionRequest("p", 1, "h", "k", None)])
    assert outcome.status is CreationStatus.CREATED
    repeats = await journal.commit_alerts([startless(), startless()])
    await journal.match_alerts([(r, []) for r in repeats], "ruleset-1")  # repeats, matched by nothing new
    shift = "86400 * 2" if backend == "sqlite" else "interval '2 days'"
    raw_sql(journal_url, f"UPDATE alerts SET received_at = received_at - {shift}")

    # the older repeat goes; the execution's alert stays, and so does the newest alert of the
    # fingerprint, which says whether the episode is open
    assert (await journal.prune(86400.0)).alerts == 1
    (repeat,) = await starts(journal, [startless()])
    assert repeat == (await journal.get_alert(held)).starts_at  # so the next repeat still joins


async def test_a_closed_episode_stays_closed_when_prune_keeps_its_first_alert(
    journal: Journal, journal_url: str, backend: str
) -> None:
    """The resolution that closed a start-less episode is the fingerprint's last word while the
    episode's first alert is kept (its execution runs on): prune keeps it, or the next firing would
    join the closed episode and be deduplicated against the old execution."""
    (held,) = await journal.commit_alerts([startless()])
    (outcome,) = await journal.create_executions(held, [ExecutionRequest("p", 1, "h", "k", None)])
    assert outcome.status is CreationStatus.CREATED
    (resolved,) = await journal.commit_alerts([startless(status="resolved")])
    await journal.match_alerts([(resolved, [])], "ruleset-1")
    shift = "86400 * 2" if backend == "sqlite" else "interval '2 days'"
    raw_sql(journal_url, f"UPDATE alerts SET received_at = received_at - {shift}")
    assert (await journal.prune(86400.0)).alerts == 0
    (again,) = await starts(journal, [startless()])
    assert again != (await journal.get_alert(held)).starts_at  # a new episode
    await journal.cancel_execution(outcome.execution_id or "", "test")


async def test_alerts_stored_before_migration_2_have_no_episode_start(journal_url: str, backend: str) -> None:
    journal = await open_journal(journal_url, check_schema=False)
    try:
        initial = load_migrations("sqlite" if backend == "sqlite" else "postgresql")[:1]
        assert await journal._apply_migrations(initial) == (1,)  # type: ignore[attr-defined]
        received = "1.0" if backend == "sqlite" else "now()"
        raw_sql(
            journal_url,
            "INSERT INTO alerts (id, fingerprint, status, labels, payload, source, received_at) "
            f"VALUES ('old', 'fp-1', 'firing', '{{}}', '{{}}', 'am', {received})",
        )
        latest = len(load_migrations("sqlite" if backend == "sqlite" else "postgresql"))
        assert (await journal.migrate()).applied == tuple(range(2, latest + 1))
        assert (await journal.get_alert("old")).starts_at is None
        (fresh,) = await starts(journal, [startless()])
        assert fresh is not None
    finally:
        await journal.close()


async def test_within_one_batch_the_alert_committed_last_decides_whether_the_episode_is_open(
    journal: Journal,
) -> None:
    await starts(journal, [startless()])
    await asyncio.sleep(0.01)
    # one batch: the alert resolves, then fires again (a flap; two posts merged by group commit)
    batch = await starts(journal, [startless(status="resolved"), startless()])
    await asyncio.sleep(0.01)
    (repeat,) = await starts(journal, [startless()])
    assert repeat == batch[1]  # the re-opened episode is open: the repeat joins it


async def test_a_clock_stepping_back_does_not_reopen_a_resolved_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest alert of a fingerprint is the one committed last, whatever the clock said: after
    an NTP step back, a resolution committed after a firing alert still closes its episode. (SQLite
    reads the host clock; PostgreSQL orders by its own sequence in the same way.)"""
    import kurative.journal.sqlite as backend

    clock = [1_800_000_000.0]
    monkeypatch.setattr(backend, "_now", lambda: clock[0])
    journal = await open_journal(f"sqlite:///{tmp_path / 'journal.db'}", migrate=True)
    try:
        (first,) = await starts(journal, [startless()])
        clock[0] -= 2.0  # the host clock steps back
        assert await starts(journal, [startless(status="resolved")]) == [first]
        clock[0] += 60.0
        (again,) = await starts(journal, [startless()])
        assert again != first
    finally:
        await journal.close()


async def test_a_new_episode_after_the_clock_stepped_back_keeps_its_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its start (its receipt) is earlier than the resolution of the episode before it: that
    resolution, inserted before it, does not cancel its approval."""
    import kurative.journal.sqlite as backend

    clock = [1_800_000_000.0]
    monkeypatch.setattr(backend, "_now", lambda: clock[0])
    journal = await open_journal(f"sqlite:///{tmp_path / 'journal.db'}", migrate=True)
    approval = ExecutionRequest("approve-me", 1, "sha256:a", None, None, requires_approval=True)
    try:
        (first,) = await journal.commit_alerts([startless()])
        await journal.match_alerts([(first, [approval])], "r")
        clock[0] += 60
        (resolved,) = await journal.commit_alerts([startless(status="resolved")])
        assert len((await journal.match_alerts([(resolved, [])], "r")).cancelled) == 1
        clock[0] -= 3600  # the host clock steps back an hour
        (again,) = await journal.commit_alerts([startless()])  # a new episode
        result = await journal.match_alerts([(again, [approval])], "r")
        ((outcome,),) = result.outcomes
        assert result.cancelled == ()
        execution = (await journal.get_execution(outcome.execution_id or "")).execution
        assert execution.state is ExecutionState.AWAITING_APPROVAL
    finally:
        await journal.close()
