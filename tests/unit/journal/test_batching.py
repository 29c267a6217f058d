"""Group commit: concurrent batches share one flush, failures reach every caller, a caller that gives
up does not cancel the others."""

from __future__ import annotations

import asyncio

import pytest

from kurative.journal.batching import GroupCommitter


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
