"""The reads the REST API serves, the same on both backends: executions by alert name and time, and
the alert inbox with its matched state, paged by cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kurative.errors import RecordRejected
from kurative.journal import ExecutionFilter, ExecutionState, Journal
from kurative.journal.encoding import encode_cursor
from tests.integration.journal.helpers import alert, request

pytestmark = pytest.mark.timeout(60)


async def test_executions_filter_by_alertname_and_time(journal: Journal) -> None:
    (crash,) = await journal.commit_alerts([alert("fp-crash")])
    (disk,) = await journal.commit_alerts([alert("fp-disk", alertname="DiskFull")])
    (c,) = await journal.create_executions(crash, [request("restart", key=None)])
    (d,) = await journal.create_executions(disk, [request("clean", key=None)])

    by_name = await journal.list_executions(ExecutionFilter(alertname="DiskFull"))
    assert [e.id for e in by_name.items] == [d.execution_id]
    assert (await journal.list_executions(ExecutionFilter(alertname="Nothing"))).items == ()

    created = by_name.items[0].created_at
    since = await journal.list_executions(ExecutionFilter(created_after=created - timedelta(hours=1)))
    assert {e.id for e in since.items} == {c.execution_id, d.execution_id}
    until = await journal.list_executions(ExecutionFilter(created_before=created - timedelta(hours=1)))
    assert until.items == ()


async def test_inbox_pages_newest_first_with_matched_state(journal: Journal) -> None:
    ids = [(await journal.commit_alerts([alert(f"fp-{i}")]))[0] for i in range(5)]
    (disk,) = await journal.commit_alerts([alert("fp-disk", alertname="DiskFull")])
    await journal.match_alerts([(ids[0], [request(key=None)])], "ruleset-1")

    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page = await journal.list_alerts(limit=4, cursor=cursor)
        sizes.append(len(page.items))
        seen.extend(entry.alert.id for entry in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [4, 2]
    assert seen == [disk, *reversed(ids)]

    everything = {entry.alert.id: entry for entry in (await journal.list_alerts(limit=10)).items}
    assert everything[ids[0]].ruleset == "ruleset-1"
    assert everything[ids[0]].matched_at is not None
    assert everything[ids[1]].matched_at is None
    assert everything[ids[1]].ruleset is None

    by_name = await journal.list_alerts(alertname="DiskFull")
    assert [entry.alert.id for entry in by_name.items] == [disk]
    assert by_name.items[0].alert.labels["alertname"] == "DiskFull"
    by_fingerprint = await journal.list_alerts(fingerprint="fp-3")
    assert [entry.alert.id for entry in by_fingerprint.items] == [ids[3]]


async def test_cursors_are_not_interchangeable(journal: Journal) -> None:
    (a,) = await journal.commit_alerts([alert("fp-a")])
    (b,) = await journal.commit_alerts([alert("fp-b")])
    for alert_id in (a, b):
        await journal.create_executions(alert_id, [request(key=None)])
    execution_cursor = (await journal.list_executions(limit=1)).next_cursor
    alert_cursor = (await journal.list_alerts(limit=1)).next_cursor
    assert execution_cursor is not None
    assert alert_cursor is not None
    with pytest.raises(RecordRejected, match="invalid cursor"):
        await journal.list_alerts(cursor=execution_cursor)
    with pytest.raises(RecordRejected, match="invalid cursor"):
        await journal.list_executions(cursor=alert_cursor)
    with pytest.raises(RecordRejected, match="invalid cursor"):
        await journal.list_alerts(cursor="YTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk")  # a beyond any integer
    with pytest.raises(RecordRejected, match="limit"):
        await journal.list_alerts(limit=0)


async def test_a_cursor_beyond_any_integer_is_refused_not_a_crash(journal: Journal) -> None:
    """It used to reach the database: SQLite raised OverflowError, an internal error for the API."""
    huge = encode_cursor(10**20)
    with pytest.raises(RecordRejected, match="invalid cursor"):
        await journal.list_executions(cursor=huge)
    with pytest.raises(RecordRejected, match="invalid cursor"):
        await journal.list_executions(cursor=encode_cursor(-5))


async def test_unfinished_executions_are_counted_by_state(journal: Journal) -> None:
    empty = await journal.count_unfinished()
    assert dict(empty) == {
        ExecutionState.PENDING: 0,
        ExecutionState.AWAITING_APPROVAL: 0,
        ExecutionState.RUNNING: 0,
    }
    (first,) = await journal.commit_alerts([alert("fp-count-1")])
    (second,) = await journal.commit_alerts([alert("fp-count-2")])
    await journal.create_executions(first, [request("a", key=None), request("b", key=None)])
    await journal.create_executions(second, [request("c", key=None, approval=True)])
    (claim,) = await journal.claim_executions("replica-a", limit=1, lease_seconds=30)
    counts = await journal.count_unfinished()
    assert counts[ExecutionState.PENDING] == 1
    assert counts[ExecutionState.RUNNING] == 1
    assert counts[ExecutionState.AWAITING_APPROVAL] == 1
    await journal.release_execution(claim.lease, ExecutionState.SUCCEEDED)
    assert (await journal.count_unfinished())[ExecutionState.RUNNING] == 0
