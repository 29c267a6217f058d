"""Group commit: concurrent writes share one database transaction.

Each ingress request waits for its own commit before answering, so with many senders the database
would spend its time on one fsync per request. Instead, requests that arrive while a commit is in
flight are queued and committed together by the next one: each caller still returns only after its
alerts are durable, and each caller's batch is still all or nothing (they succeed or fail together).
The flush runs in its own task, so a caller that gives up does not cancel the others' commit.
:class:`GroupCommitter` commits alert batches all or nothing as a group; :class:`GroupWriter` gives
each write (a step record, a release) its own outcome. Both run on the same queue (``_Group``).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from kurative.errors import JournalError

R = TypeVar("R")
W = TypeVar("W")
T = TypeVar("T")
Q = TypeVar("Q")  # what one caller queues


class _Group(abc.ABC, Generic[Q, T]):
    """The queue and flush tasks both groupings share: callers queue an item and wait for its future;
    at most ``concurrency`` tasks take groups off the queue and flush them, each caller's future
    settled from its group's outcome. How a group is taken and flushed is the subclass's.

    With ``spare_after``, one task flushes while its commits are quick, and another joins only when
    a flush has lasted that long (a commit waiting on a lock or a silent connection): one flusher
    lets the callers fall into groups that take turns, one group queueing while the other commits,
    where two flushers at once keep them in one group and the process idle during its commit."""

    def __init__(self, concurrency: int, spare_after: float | None = None) -> None:
        self._concurrency = concurrency
        self._spare_after = spare_after
        self._pending: list[tuple[Q, asyncio.Future[T]]] = []
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._flushing: list[float] = []
        """When each flush in flight started (the loop's clock)."""
        self._spare: asyncio.TimerHandle | None = None

    async def _submit(self, item: Q) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._active < self._concurrency:
            if self._active == 0 or self._spare_after is None:
                self._start()
            elif self._spare is None:
                self._arm_spare()
        return await future

    def _arm_spare(self) -> None:
        """Look again when the oldest flush in flight will have lasted ``spare_after``."""
        assert self._spare_after is not None
        loop = asyncio.get_running_loop()
        since = min(self._flushing) if self._flushing else loop.time()
        self._spare = loop.call_at(since + self._spare_after, self._spare_due)

    def _start(self) -> None:
        self._active += 1
        task = asyncio.create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spare_due(self) -> None:
        """Start another flusher if a flush has lasted ``spare_after`` and callers are queued."""
        self._spare = None
        if not self._pending or self._active >= self._concurrency:
            return
        assert self._spare_after is not None
        ended = self._active == 0  # the flusher ended (cancelled) with callers queued
        now = asyncio.get_running_loop().time()
        if ended or (self._flushing and now - min(self._flushing) >= self._spare_after):
            self._start()
        else:  # between two flushes (a group is capped: some may stay queued), or another flush began
            self._arm_spare()

    async def close(self) -> None:
        """Wait for what is queued to be flushed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._spare is not None:
            self._spare.cancel()
            self._spare = None

    @abc.abstractmethod
    def _take(self) -> list[tuple[Q, asyncio.Future[T]]]:
        """The next group off the queue (callers that gave up left out)."""

    @abc.abstractmethod
    async def _flush_group(self, items: list[Q]) -> Sequence[T | BaseException]:
        """One outcome per item, in order; raising fails the whole group."""

    async def _drain(self) -> None:
        try:
            while self._pending:
                # let the callers the last flush woke up queue their next items first: bigger groups
                await asyncio.sleep(0)
                taken = self._take()
                if not taken:
                    continue
                started = asyncio.get_running_loop().time()
                self._flushing.append(started)
                try:
                    outcomes = await self._flush_group([item for item, _ in taken])
                    if len(outcomes) != len(taken):  # a caller left without an outcome would wait for ever
                        raise JournalError(
                            f"a group flush gave {len(outcomes)} outcomes for {len(taken)} writes"
                        )
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                except asyncio.CancelledError:
                    for _, future in taken:
                        future.cancel()
                    raise
                else:
                    for (_, future), outcome in zip(taken, outcomes, strict=True):
                        if future.done():
                            continue
                        if isinstance(outcome, BaseException):
                            future.set_exception(outcome)
                        else:
                            future.set_result(outcome)
                finally:
                    self._flushing.remove(started)
        finally:
            self._active -= 1


class GroupCommitter(_Group[Sequence[R], None]):
    """Batches of rows of concurrent callers committed in one transaction, all or nothing: every
    caller of a group gets the group's outcome."""

    def __init__(
        self,
        flush: Callable[[list[R]], Awaitable[None]],
        *,
        max_rows: int = 2000,
        concurrency: int = 1,
        spare_after: float | None = None,
    ) -> None:
        super().__init__(concurrency, spare_after)
        self._flush = flush
        self._max_rows = max_rows

    async def submit(self, rows: Sequence[R]) -> None:
        """Return once ``rows`` are committed; raise what the commit raised."""
        await self._submit(rows)

    def _take(self) -> list[tuple[Sequence[R], asyncio.Future[None]]]:
        taken: list[tuple[Sequence[R], asyncio.Future[None]]] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0][0]) <= self._max_rows):
            rows, future = self._pending.pop(0)
            if future.done():  # the caller gave up before its rows were taken: nothing to commit
                continue
            taken.append((rows, future))
            count += len(rows)
        return taken

    async def _flush_group(self, items: list[Sequence[R]]) -> Sequence[None]:
        await self._flush([row for rows in items for row in rows])
        return [None] * len(items)


class GroupWriter(_Group[W, T]):
    """Single writes of concurrent callers (step records, releases) committed in one transaction.

    Unlike :class:`GroupCommitter`, each write has its own outcome: ``flush`` returns one result per
    write, in order, and a result that is an exception is raised to that write's caller only (a lost
    lease or a conflict belongs to one execution, not to the group). Each caller still returns only
    once its own write is durable. An exception raised by ``flush`` itself goes to every caller of
    the group.
    """

    def __init__(
        self,
        flush: Callable[[list[W]], Awaitable[Sequence[T | BaseException]]],
        *,
        max_writes: int = 64,
        concurrency: int = 1,
    ) -> None:
        super().__init__(concurrency)
        self._flush = flush
        self._max_writes = max_writes

    async def submit(self, write: W) -> T:
        """Return ``write``'s result once it is committed; raise its own error or the group's."""
        return await self._submit(write)

    def _take(self) -> list[tuple[W, asyncio.Future[T]]]:
        taken = [(w, f) for w, f in self._pending[: self._max_writes] if not f.done()]
        del self._pending[: self._max_writes]
        return taken

    async def _flush_group(self, items: list[W]) -> Sequence[T | BaseException]:
        return await self._flush(items)
