"""``record_steps``: a step's final record, the next step's ``started`` record and the release, written in
one transaction, all or nothing, fenced by the lease like the single-record calls (both backends)."""

from __future__ import annotations

import asyncio

import pytest

from kurative.errors import JournalConflict, LeaseLost, RecordRejected
from kurative.journal import (
    ExecutionState,
    Journal,
    Lease,
    Release,
    StepFinish,
    StepStart,
    StepStatus,
)

from .helpers import eventually, new_execution, running

pytestmark = pytest.mark.timeout(60)


async def test_a_step_result_and_the_next_start_and_the_release_each_take_one_call(journal: Journal) -> None:
    claim = await running(journal)
    lease = claim.lease
    first = await journal.record_steps(lease, started=StepStart(0, "first", "log", 1, {"n": 0}, "key/0/1"))
    assert first.finished == ()
    assert first.execution is None
    assert first.started is not None
    second = await journal.record_steps(
        lease,
        finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1, output={"ok": 0})],
        started=StepStart(1, "second", "log", 1, {"n": 1}, "key/1/1"),
    )
    assert len(second.finished) == 1
    assert second.started is not None
    assert first.started < second.finished[0] < second.started
    last = await journal.record_steps(
        lease,
        finished=[StepFinish(1, "second", StepStatus.SUCCEEDED, 1, output={"ok": 1})],
        release=Release(ExecutionState.SUCCEEDED),
    )
    assert last.execution is not None
    assert last.execution.state is ExecutionState.SUCCEEDED
    assert last.execution.finished_at is not None
    assert last.execution.lease_owner is None

    detail = await journal.get_execution(claim.execution.id)
    assert [(s.index, s.status, s.action) for s in detail.steps] == [
        (0, StepStatus.STARTED, "log"),
        (0, StepStatus.SUCCEEDED, "log"),
        (1, StepStatus.STARTED, "log"),
        (1, StepStatus.SUCCEEDED, "log"),
    ]
    assert [s.id for s in detail.steps] == [
        first.started,
        second.finished[0],
        second.started,
        last.finished[0],
    ]
    started, finished = detail.steps[0], detail.steps[1]
    assert finished.idempotency_key == "key/0/1"  # taken from the started record
    assert finished.started_at == started.started_at
    assert finished.output == {"ok": 0}
    assert detail.open_steps() == ()
    with pytest.raises(LeaseLost):  # released: the lease is gone
        await journal.record_steps(lease, started=StepStart(2, "third", "log", 1))


async def test_several_final_records_and_a_delayed_release_commit_together(journal: Journal) -> None:
    claim = await running(journal)
    lease = claim.lease
    await journal.record_steps(lease, started=StepStart(0, "call", "http.request", 1, {}))
    written = await journal.record_steps(
        lease,
        finished=[
            StepFinish(0, "call", StepStatus.FAILED, 1, output={"breaker_open": True}, error="open"),
            StepFinish(1, "later", StepStatus.SKIPPED, 1, "log", error="skipped: failed"),
        ],
        release=Release(ExecutionState.PENDING, error="breaker open", delay=3600),
    )
    assert len(written.finished) == 2
    assert written.started is None
    assert written.execution is not None
    assert written.execution.state is ExecutionState.PENDING
    assert written.execution.error == "breaker open"
    assert await journal.claim_executions("replica-b") == ()  # the delay holds it back
    detail = await journal.get_execution(claim.execution.id)
    assert [(s.index, s.status) for s in detail.steps] == [
        (0, StepStatus.STARTED),
        (0, StepStatus.FAILED),
        (1, StepStatus.SKIPPED),
    ]
    assert detail.steps[1].action == "http.request"  # from the started record


async def test_a_conflict_writes_nothing_of_the_call(journal: Journal) -> None:
    claim = await running(journal)
    lease = claim.lease
    await journal.record_step_started(lease, StepStart(0, "first", "log", 1, {}))
    await journal.record_step_started(lease, StepStart(1, "second", "log", 1, {}))
    with pytest.raises(JournalConflict, match=r"second attempt 1 .* already started"):
        await journal.record_steps(
            lease,
            finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1)],
            started=StepStart(1, "second", "log", 1, {}),
            release=Release(ExecutionState.SUCCEEDED),
        )
    await journal.record_step_finished(lease, StepFinish(1, "second", StepStatus.SUCCEEDED, 1))
    with pytest.raises(JournalConflict, match=r"second attempt 1 .* already finished"):
        await journal.record_steps(
            lease,
            finished=[
                StepFinish(0, "first", StepStatus.SUCCEEDED, 1),
                StepFinish(1, "second", StepStatus.SUCCEEDED, 1),
            ],
            release=Release(ExecutionState.SUCCEEDED),
        )
    with pytest.raises(JournalConflict):  # the same attempt twice in one call
        await journal.record_steps(
            lease,
            finished=[
                StepFinish(0, "first", StepStatus.SUCCEEDED, 1),
                StepFinish(0, "first", StepStatus.FAILED, 1),
            ],
        )
    with pytest.raises(JournalConflict):
        await journal.record_steps(lease, finished=[StepFinish(0, "first", StepStatus.STARTED, 1)])
    with pytest.raises(RecordRejected):
        await journal.record_steps(lease)
    detail = await journal.get_execution(claim.execution.id)
    assert detail.execution.state is ExecutionState.RUNNING  # no release either
    assert [(s.index, s.status) for s in detail.steps] == [
        (0, StepStatus.STARTED),
        (1, StepStatus.STARTED),
        (1, StepStatus.SUCCEEDED),
    ]


async def test_a_lost_lease_writes_nothing_and_the_new_holder_sees_the_open_step(journal: Journal) -> None:
    claim = await running(journal, owner="replica-a", lease=0.3)
    await journal.record_steps(claim.lease, started=StepStart(0, "first", "log", 1, {}))
    (taken,) = await eventually(lambda: journal.claim_executions("replica-b", lease_seconds=30))
    with pytest.raises(LeaseLost):
        await journal.record_steps(
            claim.lease,
            finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1)],
            started=StepStart(1, "second", "log", 1, {}),
        )
    with pytest.raises(LeaseLost):
        await journal.record_steps(
            claim.lease,
            finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1)],
            release=Release(ExecutionState.SUCCEEDED),
        )
    detail = await journal.get_execution(claim.execution.id)
    assert detail.execution.state is ExecutionState.RUNNING
    assert detail.execution.lease_owner == "replica-b"
    assert [(s.status, s.lease_attempt) for s in detail.steps] == [(StepStatus.STARTED, 1)]
    assert detail.open_steps() == detail.steps  # what recovery looks at, as after a crash before the write
    written = await journal.record_steps(
        taken.lease,
        finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1, output={"recovered": True})],
        release=Release(ExecutionState.SUCCEEDED),
    )
    assert written.execution is not None
    assert written.execution.state is ExecutionState.SUCCEEDED


async def test_concurrent_calls_get_their_own_outcomes(journal: Journal) -> None:
    claims = [await running(journal, owner=f"replica-{n}") for n in range(8)]
    for claim in claims:
        await journal.record_steps(claim.lease, started=StepStart(0, "first", "log", 1, {}))
    twice, fenced, rest = claims[0], claims[1], claims[2:]
    await journal.record_step_started(twice.lease, StepStart(1, "second", "log", 1, {}))
    stale = Lease(
        fenced.lease.execution_id, fenced.lease.owner, fenced.lease.attempt + 3, fenced.lease.expires_at
    )

    def next_step(lease: Lease) -> object:
        return journal.record_steps(
            lease,
            finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1)],
            started=StepStart(1, "second", "log", 1, {}),
        )

    outcomes = await asyncio.gather(
        next_step(twice.lease), next_step(stale), *(next_step(c.lease) for c in rest), return_exceptions=True
    )
    assert isinstance(outcomes[0], JournalConflict)
    assert isinstance(outcomes[1], LeaseLost)
    assert not any(isinstance(o, BaseException) for o in outcomes[2:]), outcomes
    released = await asyncio.gather(
        *(
            journal.record_steps(
                c.lease,
                finished=[StepFinish(1, "second", StepStatus.SUCCEEDED, 1)],
                release=Release(ExecutionState.SUCCEEDED),
            )
            for c in rest
        )
    )
    assert {r.execution.id for r in released if r.execution} == {c.execution.id for c in rest}
    for claim in rest:
        detail = await journal.get_execution(claim.execution.id)
        assert detail.execution.state is ExecutionState.SUCCEEDED
        assert [s.status for s in detail.steps] == [StepStatus.STARTED, StepStatus.SUCCEEDED] * 2
    for claim in (twice, fenced):
        detail = await journal.get_execution(claim.execution.id)
        assert [s.status for s in detail.steps if s.index == 0] == [StepStatus.STARTED]


async def test_batch_claims_never_hand_one_execution_to_two_claimers(journal: Journal) -> None:
    created = {await new_execution(journal) for _ in range(24)}
    batches = await asyncio.gather(
        # leases long enough for the six claims to be made before the first one's runs out, even
        # with SQLite serialising them on a loaded machine, short enough to wait for below
        *(journal.claim_executions(f"replica-{n}", limit=5, lease_seconds=3) for n in range(6))
    )
    claimed = [c.execution.id for batch in batches for c in batch]
    assert all(len(batch) <= 5 for batch in batches)
    assert len(claimed) == len(set(claimed)) == 24
    assert set(claimed) == created
    # every lease expires: the next batch claim takes them all over, each once
    retaken = await eventually(lambda: journal.claim_executions("replica-z", limit=30, lease_seconds=30))
    while len(retaken) < 24:
        retaken += await journal.claim_executions("replica-z", limit=30, lease_seconds=30)
        await asyncio.sleep(0.05)
    assert {c.execution.id for c in retaken} == created
    assert len(retaken) == 24
    assert all(c.recovered and c.lease.attempt == 2 for c in retaken)


async def test_calls_that_share_a_commit_store_each_record_as_written(journal: Journal) -> None:
    """Concurrent calls share one transaction (on PostgreSQL, one statement per kind of record for the
    whole group): every field of every record is the call's own, whatever the others wrote."""
    claims = [await running(journal, owner=f"replica-{n}") for n in range(6)]
    text = 'pod «web-0» isn\'t "ready"\\ \u2603'

    def params(n: int) -> dict[str, object]:
        return {"n": n, "message": f"{text} {n}", "nested": {"list": [n, None, True]}}

    await asyncio.gather(
        *(
            journal.record_steps(
                c.lease, started=StepStart(0, "first", "http.request", 1, params(n), f"key/{n}")
            )
            for n, c in enumerate(claims)
        )
    )

    skipped = "skipped: an earlier failure"

    def second(n: int, lease: Lease) -> object:
        if n % 3 == 0:  # a failure, two skipped steps and a delayed release in one call
            return journal.record_steps(
                lease,
                finished=[
                    StepFinish(0, "first", StepStatus.FAILED, 1, "http.request", None, f"{text} failed {n}"),
                    StepFinish(1, "second", StepStatus.SKIPPED, 1, "log", None, skipped),
                    StepFinish(2, "third", StepStatus.SKIPPED, 1, "log", None, skipped),
                ],
                release=Release(ExecutionState.PENDING, f"again later {n}", 90.5),
            )
        if n % 3 == 1:  # a result and an approval step that waits
            return journal.record_steps(
                lease,
                finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1, output={"status": 200, "n": n})],
                started=StepStart(1, "wait", "approval", 1, {"message": text}, None),
                release=Release(ExecutionState.AWAITING_APPROVAL),
            )
        return journal.record_steps(  # a result whose output is null, and the next start
            lease,
            finished=[StepFinish(0, "first", StepStatus.DRY_RUN, 1, output=None)],
            started=StepStart(1, "second", "log", 2, params(n), None),
        )

    written = await asyncio.gather(*(second(n, c.lease) for n, c in enumerate(claims)))
    for n, (claim, result) in enumerate(zip(claims, written, strict=True)):
        detail = await journal.get_execution(claim.execution.id)
        steps = detail.steps
        started = steps[0]
        assert (started.status, started.params, started.idempotency_key) == (
            StepStatus.STARTED, params(n), f"key/{n}",
        )  # fmt: skip
        assert result.finished == tuple(s.id for s in steps if s.status is not StepStatus.STARTED)
        first = steps[1]
        assert first.idempotency_key == f"key/{n}"
        assert first.started_at == started.started_at
        assert first.action == "http.request"  # from the call, or else from the started record
        assert first.lease_attempt == claim.lease.attempt
        if n % 3 == 0:
            assert [(s.index, s.status, s.error) for s in steps[1:]] == [
                (0, StepStatus.FAILED, f"{text} failed {n}"),
                (1, StepStatus.SKIPPED, skipped),
                (2, StepStatus.SKIPPED, skipped),
            ]
            assert result.started is None
            assert result.execution is not None
            assert result.execution.state is ExecutionState.PENDING
            assert result.execution.error == f"again later {n}"
            assert result.execution.finished_at is None
            assert result.execution.lease_owner is None
        elif n % 3 == 1:
            assert first.output == {"status": 200, "n": n}
            wait = steps[2]
            assert (wait.index, wait.status, wait.action, wait.params) == (
                1, StepStatus.STARTED, "approval", {"message": text},
            )  # fmt: skip
            assert result.started == wait.id
            assert result.execution is not None
            assert result.execution.state is ExecutionState.AWAITING_APPROVAL
        else:
            assert (first.status, first.output) == (StepStatus.DRY_RUN, None)
            assert (steps[2].attempt, steps[2].params) == (2, params(n))
            assert result.started == steps[2].id
            assert result.execution is None
            assert detail.execution.state is ExecutionState.RUNNING


async def test_the_same_write_tried_again_under_its_lease_answers_with_its_records(journal: Journal) -> None:
    """A write whose commit outlasted its caller's patience (``journal.timeout``) is tried again by the
    runner: it finds its own records, written under the same lease, and is told their ids instead of a
    conflict (which would send the execution to needs_review for a step that never ran twice)."""
    claim = await running(journal)
    lease = claim.lease
    first = await journal.record_steps(lease, started=StepStart(0, "first", "log", 1, {}, "key/0/1"))
    write = {
        "finished": [StepFinish(0, "first", StepStatus.SUCCEEDED, 1, output={"ok": 1})],
        "started": StepStart(1, "second", "log", 1, {}, "key/1/1"),
    }
    done = await journal.record_steps(lease, **write)  # type: ignore[arg-type]
    again = await journal.record_steps(lease, **write)  # type: ignore[arg-type]
    assert (again.finished, again.started) == (done.finished, done.started)
    assert (
        await journal.record_steps(lease, started=StepStart(0, "first", "log", 1, {}, "key/0/1"))
    ).started == (first.started)
    detail = await journal.get_execution(claim.execution.id)
    assert sorted((s.index, s.status) for s in detail.steps) == [
        (0, StepStatus.STARTED),
        (0, StepStatus.SUCCEEDED),
        (1, StepStatus.STARTED),
    ]  # nothing written twice
    # Not the same write: another outcome of the same step, another key, or a record of it missing.
    with pytest.raises(JournalConflict):
        await journal.record_steps(lease, finished=[StepFinish(0, "first", StepStatus.FAILED, 1, error="x")])
    with pytest.raises(JournalConflict):
        await journal.record_steps(lease, started=StepStart(1, "second", "log", 1, {}, "another/key"))
    with pytest.raises(JournalConflict):
        await journal.record_steps(
            lease,
            finished=[StepFinish(0, "first", StepStatus.SUCCEEDED, 1)],
            started=StepStart(2, "third", "log", 1, {}),
        )
