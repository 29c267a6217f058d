"""Matching that survives a crash: the inbox knows which alerts are matched, and matching is one
transaction per batch, so a second pass (after a crash, or on another replica) never creates twice."""

from __future__ import annotations

import asyncio
import dataclasses

from kurative.journal import CreationStatus, ExecutionState, IncomingAlert, Journal, open_journal

from .helpers import alert, request


async def test_unmatched_alerts_are_listed_oldest_first_until_matched(journal: Journal) -> None:
    ids = [(await journal.commit_alerts([alert(f"fp-{i}")]))[0] for i in range(3)]
    assert [a.id for a in await journal.unmatched_alerts()] == ids
    assert [a.id for a in await journal.unmatched_alerts(limit=2)] == ids[:2]
    result = await journal.match_alerts([(ids[0], [request("restart", key="k0")]), (ids[1], [])], "ruleset-1")
    (created,), () = result.outcomes
    assert created.status is CreationStatus.CREATED
    assert [a.id for a in await journal.unmatched_alerts()] == [ids[2]]


async def test_matching_an_alert_twice_creates_nothing_the_second_time(journal: Journal) -> None:
    (alert_id,) = await journal.commit_alerts([alert()])
    first = await journal.match_alerts([(alert_id, [request(key=None)])], "ruleset-1")
    again = await journal.match_alerts([(alert_id, [request(key=None)])], "ruleset-1")
    assert [o.status for o in first.outcomes[0]] == [CreationStatus.CREATED]
    assert again.outcomes == ((),)
    assert len((await journal.list_executions()).items) == 1


async def test_a_resolved_alert_cancels_its_waiting_approvals_in_the_matching_transaction(
    journal: Journal,
) -> None:
    (firing,) = await journal.commit_alerts([alert("fp-1")])
    (other,) = await journal.commit_alerts([alert("fp-2")])
    waiting = await journal.match_alerts(
        [(firing, [request(key="a", approval=True)]), (other, [request(key="b", approval=True)])], "r"
    )
    (resolved,) = await journal.commit_alerts([alert("fp-1", status="resolved")])
    result = await journal.match_alerts([(resolved, [])], "r")
    cancelled_id = waiting.outcomes[0][0].execution_id
    assert result.cancelled == (cancelled_id,)
    detail = await journal.get_execution(cancelled_id or "")
    assert detail.execution.state is ExecutionState.CANCELLED
    assert detail.execution.error == "the alert resolved"
    kept = await journal.get_execution(waiting.outcomes[1][0].execution_id or "")
    assert kept.execution.state is ExecutionState.AWAITING_APPROVAL


def _episode(status: str, starts_at: str) -> IncomingAlert:
    sent = alert("fp-1", status=status)
    return dataclasses.replace(sent, payload={**sent.payload, "startsAt": starts_at})


async def test_a_late_resolved_notification_cancels_only_its_own_episodes_approvals(journal: Journal) -> None:
    (first,) = await journal.commit_alerts([_episode("firing", "2026-11-26T06:00:00Z")])
    (older,) = (await journal.match_alerts([(first, [request(key="a", approval=True)])], "r")).outcomes[0]
    (second,) = await journal.commit_alerts([_episode("firing", "2026-11-26T07:00:00Z")])  # it fired again
    (newer,) = (await journal.match_alerts([(second, [request(key="b", approval=True)])], "r")).outcomes[0]
    # the first episode's resolved notification, sent again late (Alertmanager retries)
    (late,) = await journal.commit_alerts([_episode("resolved", "2026-11-26T06:00:00Z")])
    assert (await journal.match_alerts([(late, [])], "r")).cancelled == (older.execution_id,)
    waiting = await journal.get_execution(newer.execution_id or "")
    assert waiting.execution.state is ExecutionState.AWAITING_APPROVAL
    (resolved,) = await journal.commit_alerts([_episode("resolved", "2026-11-26T07:00:00Z")])
    assert (await journal.match_alerts([(resolved, [])], "r")).cancelled == (newer.execution_id,)


async def test_unmatched_alerts_of_one_commit_come_in_commit_order(journal: Journal) -> None:
    """One commit's alerts share their time of receipt: their order is the order given, not their ids'."""
    ids = await journal.commit_alerts([alert(f"fp-{i}") for i in range(30)])
    assert [a.id for a in await journal.unmatched_alerts()] == list(ids)


async def test_a_playbook_that_a_resolution_starts_keeps_waiting_for_its_approval(journal: Journal) -> None:
    (resolved,) = await journal.commit_alerts([alert("fp-1", status="resolved")])
    result = await journal.match_alerts([(resolved, [request(key="on-resolve", approval=True)])], "r")
    ((created,),) = result.outcomes
    assert result.cancelled == ()
    (again,) = await journal.commit_alerts([alert("fp-1", status="resolved")])  # the notification repeated
    assert (await journal.match_alerts([(again, [])], "r")).cancelled == ()
    waiting = await journal.get_execution(created.execution_id or "")
    assert waiting.execution.state is ExecutionState.AWAITING_APPROVAL


async def test_a_firing_alert_matched_after_its_resolution_has_its_approvals_cancelled_at_once(
    journal: Journal,
) -> None:
    """Committed together, or matched in the other order (a late retry of the firing notification):
    an approval of an episode that resolved already would wait for ever."""
    firing, resolved = await journal.commit_alerts([alert("fp-1"), alert("fp-1", status="resolved")])
    assert (await journal.match_alerts([(resolved, [])], "r")).cancelled == ()
    result = await journal.match_alerts(
        [(firing, [request("restart", key="a", approval=True), request("note", key="b")])], "r"
    )
    ((approval, plain),) = result.outcomes
    assert approval.status is CreationStatus.CREATED
    assert result.cancelled == (approval.execution_id,)
    cancelled = (await journal.get_execution(approval.execution_id or "")).execution
    assert cancelled.state is ExecutionState.CANCELLED
    assert cancelled.error == "the alert resolved"
    assert (await journal.get_execution(plain.execution_id or "")).execution.state is ExecutionState.PENDING
    # the next episode (a later start) is not the one that resolved: its approval waits
    (later,) = await journal.commit_alerts([_episode("firing", "2026-11-26T07:00:00Z")])
    result = await journal.match_alerts([(later, [request(key="c", approval=True)])], "r")
    assert result.cancelled == ()


async def test_replicas_matching_the_same_batch_create_each_execution_once(journal_url: str) -> None:
    a = await open_journal(journal_url, migrate=True)
    b = await open_journal(journal_url)
    try:
        ids = await a.commit_alerts([alert(f"fp-{i}") for i in range(20)])
        batch = [(i, [request(key=None)]) for i in ids]
        results = await asyncio.gather(*(j.match_alerts(batch, "r") for j in (a, b, a, b)))
        created = [o for r in results for per_alert in r.outcomes for o in per_alert]
        assert len(created) == 20
        assert len((await a.list_executions(limit=100)).items) == 20
        assert await b.unmatched_alerts() == ()
    finally:
        await a.close()
        await b.close()
