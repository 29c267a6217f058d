"""Concurrent step records and releases of several executions (PostgreSQL commits them in one shared
transaction): each caller gets its own outcome, a conflict or a lost lease goes to its own caller
only, and every other record of the group is durable."""

from __future__ import annotations

import asyncio

import pytest

from kurative.errors import JournalConflict, LeaseLost
from kurative.journal import ExecutionState, Journal, Lease, StepFinish, StepStart, StepStatus

from .helpers import running

pytestmark = pytest.mark.timeout(60)


async def test_a_conflict_and_a_lost_lease_reach_their_own_callers_only(journal: Journal) -> None:
    claims = [await running(journal, owner=f"replica-{n}") for n in range(6)]
    twice, fenced = claims[0], claims[1]
    await journal.record_step_started(twice.lease, StepStart(0, "first", "log", 1, {"n": 0}))
    stale = Lease(
        fenced.lease.execution_id, fenced.lease.owner, fenced.lease.attempt + 7, fenced.lease.expires_at
    )
    writes = [
        journal.record_step_started(twice.lease, StepStart(0, "first", "log", 1, {"n": 0})),
        journal.record_step_started(stale, StepStart(0, "first", "log", 1, {})),
        *(
            journal.record_step_started(c.lease, StepStart(0, "first", "log", 1, {"n": i}))
            for i, c in enumerate(claims[2:])
        ),
    ]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(outcomes[0], JournalConflict)
    assert isinstance(outcomes[1], LeaseLost)
    assert all(isinstance(o, int) for o in outcomes[2:]), outcomes
    assert len(set(outcomes[2:])) == len(claims) - 2

    finishes = [
        journal.record_step_finished(
            c.lease, StepFinish(0, "first", StepStatus.SUCCEEDED, 1, output={"ok": True})
        )
        for c in claims[2:]
    ]
    assert all(isinstance(o, int) for o in await asyncio.gather(*finishes))
    released = await asyncio.gather(
        journal.release_execution(stale, ExecutionState.SUCCEEDED),
        *(journal.release_execution(c.lease, ExecutionState.SUCCEEDED) for c in claims[2:]),
        return_exceptions=True,
    )
    assert isinstance(released[0], LeaseLost)
    assert [r.state for r in released[1:] if not isinstance(r, BaseException)] == [
        ExecutionState.SUCCEEDED
    ] * 4

    for claim in claims[2:]:
        detail = await journal.get_execution(claim.execution.id)
        assert detail.execution.state is ExecutionState.SUCCEEDED
        assert [s.status for s in detail.steps] == [StepStatus.STARTED, StepStatus.SUCCEEDED]
        assert detail.steps[1].started_at == detail.steps[0].started_at  # the finish found its start
    assert [s.status for s in (await journal.get_execution(fenced.execution.id)).steps] == []
    assert len((await journal.get_execution(twice.execution.id)).steps) == 1
