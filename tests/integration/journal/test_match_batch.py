"""One matching batch creates what matching its alerts one by one would: a dedupe key claimed by an
earlier alert of the batch deduplicates a later one, an alert listed twice is matched once, and a
batch with limits or a resolved alert gives the same outcomes (both backends)."""

from __future__ import annotations

import asyncio

import pytest

from kurative.journal import CreationStatus, ExecutionState, Journal, LimitRequest

from .helpers import alert, request

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("limited", [False, True], ids=["plain", "with-a-limit"])
async def test_a_batch_dedupes_within_itself_and_matches_a_repeated_alert_once(
    journal: Journal, limited: bool
) -> None:
    ids = await journal.commit_alerts([alert(f"fp-{i}") for i in range(4)])
    limits = (LimitRequest("shop", 10, 3600, "labels.namespace"),) if limited else ()
    batch = [
        (ids[0], [request("restart", key="same", limits=limits), request("notify", key=None)]),
        (ids[1], [request("restart", key="same", limits=limits)]),
        (ids[0], [request("restart", key="other", limits=limits)]),  # listed twice
        (ids[2], []),
        (ids[3], [request("restart", key="third", limits=limits, approval=True)]),
    ]
    result = await journal.match_alerts(batch, "r")
    first, second, repeated, nothing, third = result.outcomes
    assert [o.status for o in first] == [CreationStatus.CREATED, CreationStatus.CREATED]
    (dedupe,) = second
    assert dedupe.status is CreationStatus.DEDUPLICATED
    assert dedupe.execution_id == first[0].execution_id
    assert repeated == ()
    assert nothing == ()
    (waiting,) = third
    assert waiting.status is CreationStatus.CREATED
    assert await journal.unmatched_alerts() == ()
    executions = {e.id: e for e in (await journal.list_executions(limit=10)).items}
    assert set(executions) == {first[0].execution_id, first[1].execution_id, waiting.execution_id}
    assert executions[waiting.execution_id or ""].state is ExecutionState.AWAITING_APPROVAL
    assert executions[first[0].execution_id or ""].state is ExecutionState.PENDING
    assert executions[first[0].execution_id or ""].alert_fingerprint == "fp-0"
    assert executions[first[0].execution_id or ""].dedupe_key == "same"


async def test_a_batch_of_distinct_keys_claims_them_as_one_by_one(journal: Journal) -> None:
    """Every key of the batch its own: a key held from before deduplicates, an expired one is taken
    over, the others create, and the executions are stored in the batch's order."""
    ids = await journal.commit_alerts([alert(f"fp-{i}") for i in range(7)])
    before = await journal.match_alerts(
        [(ids[0], [request("restart", key="held")]), (ids[1], [request("restart", key="gone", window=0.05)])],
        "r",
    )
    held, gone = (outcomes[0].execution_id for outcomes in before.outcomes)
    await asyncio.sleep(0.2)  # "gone" expires
    batch = [(ids[i], [request("restart", key=f"k{i}")]) for i in range(2, 5)]
    batch += [(ids[5], [request("restart", key="held")]), (ids[6], [request("restart", key="gone")])]
    result = await journal.match_alerts(batch, "r")
    *fresh, again, taken_over = (outcomes[0] for outcomes in result.outcomes)
    assert [o.status for o in fresh] == [CreationStatus.CREATED] * 3
    assert (again.status, again.execution_id) == (CreationStatus.DEDUPLICATED, held)
    assert taken_over.status is CreationStatus.CREATED
    assert taken_over.execution_id not in (gone, None)
    newest_first = [e.id for e in (await journal.list_executions(limit=4)).items]
    assert newest_first == [taken_over.execution_id, *(o.execution_id for o in reversed(fresh))]
