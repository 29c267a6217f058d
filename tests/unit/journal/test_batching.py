"""Group commit: concurrent batches share one flush, failures reach every caller, a caller that gives
up does not cancel the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from kurative.errors import JournalError
from kurative.journal.batching import GroupCommitter, GroupWriter


class Store:
    """A flush target that records each transaction, optionally slow or failing."""

    def __init__(self) -> None:
        self.transactions: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def flush(self, rows: list[int]) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.transactions.append(rows)


async def test_batches_arriving_during_a_flush_share_the_next_one() -> None:
    store = Store()
    committer = GroupCommitter(store.flush, concurrency=1)
    store.gate.clear()
    first = asyncio.create_task(committer.submit([0]))
    await store.entered.wait()  # the first flush is in flight
    rest = [asyncio.create_task(committer.submit([i, i + 100])) for i in range(1, 6)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.transactions[0] == [0]
    assert sorted(store.transactions[1]) == sorted([i for n in range(1, 6) for i in (n, n + 100)])
    assert len(store.transactions) == 2
    await committer.close()


async def test_max_rows_splits_flushes_without_splitting_a_batch() -> None:
    store = Store()
    committer = GroupCommitter(store.flush, max_rows=4, concurrency=1)
    store.gate.clear()
    tasks = [asyncio.create_task(committer.submit([n] * 3)) for n in range(4)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(*tasks)
    assert all(len(t) == 3 for t in store.transactions)  # 3 + 3 rows would be over 4
    assert sorted(row for t in store.transactions for row in t) == sorted(
        [n for n in range(4) for _ in range(3)]
    )


async def test_a_failed_flush_fails_every_caller_in_it() -> None:
    store = Store()
    store.fail = RuntimeError("disk full")
    committer = GroupCommitter(store.flush, concurrency=1)
    results = await asyncio.gather(*(committer.submit([n]) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    store.fail = None
    await committer.submit([9])
    assert store.transactions == [[9]]


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_commit() -> None:
    store = Store()
    committer = GroupCommitter(store.flush, concurrency=1)
    store.gate.clear()
    impatient = asyncio.create_task(committer.submit([1]))
    patient = asyncio.create_task(committer.submit([2]))
    await asyncio.sleep(0)
    impatient.cancel()
    store.gate.set()
    await patient
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert [2] in store.transactions or [1, 2] in store.transactions
    await committer.close()


class Flushes:
    """A flush target whose flushes each wait for their own release; counts how many overlap."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.groups: list[list[int]] = []
        self.in_flight = self.most_in_flight = 0
        self.started = asyncio.Event()

    async def flush(self, rows: list[int]) -> None:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.groups.append(rows)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.set()
        try:
            await gate.wait()
        finally:
            self.in_flight -= 1

    async def next_start(self) -> None:
        await self.started.wait()
        self.started.clear()


async def test_with_quick_commits_one_flusher_takes_turns_and_no_second_one_starts() -> None:
    """Callers queue while the one flush commits, and go in the next: the groups take turns."""
    flushes = Flushes()
    committer = GroupCommitter(flushes.flush, concurrency=2, spare_after=30.0)
    first = asyncio.create_task(committer.submit([0]))
    await flushes.next_start()
    queued = [asyncio.create_task(committer.submit([n])) for n in range(1, 4)]
    await asyncio.sleep(0.01)
    assert (flushes.in_flight, len(flushes.groups)) == (1, 1)  # no second flusher beside it
    flushes.gates[0].set()
    await first
    await flushes.next_start()
    assert sorted(flushes.groups[1]) == [1, 2, 3]  # all that queued meanwhile, in the next flush
    flushes.gates[1].set()
    await asyncio.gather(*queued)
    assert flushes.most_in_flight == 1
    await committer.close()


async def test_a_flush_that_lasts_past_spare_after_gets_a_second_flusher_for_the_callers_behind_it() -> None:
    """A commit stuck on a lock or a silent connection holds up the alerts behind it only for
    ``spare_after``: a second flusher commits them while the first still waits."""
    flushes = Flushes()
    committer = GroupCommitter(flushes.flush, concurrency=2, spare_after=0.05)
    stuck = asyncio.create_task(committer.submit([0]))
    await flushes.next_start()
    behind = asyncio.create_task(committer.submit([1]))
    await asyncio.wait_for(flushes.next_start(), 10)  # the spare, after 50 ms
    assert flushes.groups == [[0], [1]]
    assert flushes.in_flight == 2
    flushes.gates[1].set()
    await asyncio.wait_for(behind, 10)  # committed while the first flush is still stuck
    assert not stuck.done()
    flushes.gates[0].set()
    await stuck
    assert flushes.most_in_flight == 2
    await committer.close()


async def test_a_caller_queued_while_a_flush_is_young_gets_the_spare_once_it_has_lasted_spare_after() -> None:
    flushes = Flushes()
    loop = asyncio.get_running_loop()
    committer = GroupCommitter(flushes.flush, concurrency=2, spare_after=0.2)
    stuck = asyncio.create_task(committer.submit([0]))
    await flushes.next_start()
    began = loop.time()
    await asyncio.sleep(0.1)
    behind = asyncio.create_task(committer.submit([1]))
    await asyncio.wait_for(flushes.next_start(), 10)
    assert loop.time() - began >= 0.2  # not before the first flush lasted spare_after
    flushes.gates[1].set()
    flushes.gates[0].set()
    await asyncio.gather(stuck, behind)
    await committer.close()


async def test_callers_a_capped_group_left_queued_get_the_spare_when_the_next_flush_sticks() -> None:
    """Regression: the spare's timer fired in the loop turn between two flushes, found none in flight
    and was not armed again; the group then taken was capped (max_rows) and stuck, and the caller
    it left queued waited for it with no spare coming."""
    groups: list[list[int]] = []
    first_done, stuck = asyncio.Event(), asyncio.Event()

    async def flush(rows: list[int]) -> None:
        groups.append(rows)
        if len(groups) <= 2:
            await (first_done if len(groups) == 1 else stuck).wait()

    committer = GroupCommitter(flush, concurrency=2, max_rows=2, spare_after=0.05)
    first = asyncio.create_task(committer.submit([0]))
    await asyncio.sleep(0.001)
    capped = asyncio.create_task(committer.submit([1, 2]))
    left = asyncio.create_task(committer.submit([3]))
    await asyncio.sleep(0)

    def end_the_first_flush_on_a_busy_loop() -> None:
        first_done.set()
        time.sleep(0.03)  # the loop busy past the timer's due time: it fires between two flushes

    asyncio.get_running_loop().call_later(0.04, end_the_first_flush_on_a_busy_loop)
    await asyncio.wait_for(left, 10)
    assert groups == [[0], [1, 2], [3]]
    assert not capped.done()
    stuck.set()
    await asyncio.gather(first, capped)
    await committer.close()


async def test_a_flusher_that_ends_cancelled_leaves_no_caller_behind_it_waiting() -> None:
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def flush(rows: list[int]) -> None:
        groups.append(rows)
        if len(groups) == 1:
            await release.wait()
            raise asyncio.CancelledError  # as a library may, unasked

    committer = GroupCommitter(flush, concurrency=2, spare_after=0.05)
    first = asyncio.create_task(committer.submit([0]))
    await asyncio.sleep(0.001)
    behind = asyncio.create_task(committer.submit([1]))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(behind, 10)
    assert groups == [[0], [1]]
    await committer.close()


@pytest.mark.parametrize("given", [0, 1, 3])
async def test_a_flush_with_the_wrong_number_of_outcomes_fails_every_caller_and_the_next_group_flushes(
    given: int,
) -> None:
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def flush(writes: list[int]) -> list[int]:
        calls.append(writes)
        await gate.wait()
        if len(calls) == 1:
            return list(range(given))  # two writes in the group, ``given`` outcomes
        return [w * 10 for w in writes]

    writer: GroupWriter[int, int] = GroupWriter(flush, concurrency=1)
    first = [asyncio.create_task(writer.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = asyncio.create_task(writer.submit(3))  # queued behind the first group
    gate.set()
    for task in first:
        with pytest.raises(JournalError, match=f"gave {given} outcomes for 2 writes"):
            await asyncio.wait_for(task, 5)
    assert await asyncio.wait_for(later, 5) == 30
    await writer.close()
