"""Group commit: concurrent alert batches share one database transaction.

Each ingress request waits for its own commit before answering, so with many senders the database
would spend its time on one fsync per request. Instead, requests that arrive while a commit is in
flight are queued and committed together by the next one: each caller still returns only after its
alerts are durable, and each caller's batch is still all or nothing (they succeed or fail together).
The flush runs in its own task, so a caller that gives up does not cancel the others' commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")


class GroupCommitter(Generic[R]):
    def __init__(
        self,
        flush: Callable[[list[R]], Awaitable[None]],
        *,
        max_rows: int = 2000,
        concurrency: int = 1,
    ) -> None:
        self._flush = flush
        self._max_rows = max_rows
        self._concurrency = concurrency
        self._pending: list[tuple[Sequence[R], asyncio.Future[None]]] = []
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, rows: Sequence[R]) -> None:
        """Return once ``rows`` are committed; raise what the commit raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        if self._active < self._concurrency:
            self._active += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await future

    async def close(self) -> None:
        """Wait for queued commits to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

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

    async def _drain(self) -> None:
        try:
            while self._pending:
                # let the callers the last flush woke up queue their next batches first: bigger groups
                await asyncio.sleep(0)
                taken = self._take()
                if not taken:
                    continue
                try:
                    await self._flush([row for rows, _ in taken for row in rows])
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                except asyncio.CancelledError:
                    for _, future in taken:
                        future.cancel()
                    raise
                else:
                    for _, future in taken:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._active -= 1


W = TypeVar("W")
T = TypeVar("T")


class GroupWriter(Generic[W, T]):
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
        self._flush = flush
        self._max_writes = max_writes
        self._concurrency = concurrency
        self._pending: list[tuple[W, asyncio.Future[T]]] = []
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, write: W) -> T:
        """Return ``write``'s result once it is committed; raise its own error or the group's."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._active < self._concurrency:
            self._active += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        """Wait for queued writes to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the callers the last flush woke up queue their next writes
                taken = [(w, f) for w, f in self._pending[: self._max_writes] if not f.done()]
                del self._pending[: self._max_writes]
                if not taken:
                    continue
                try:
                    results = await self._flush([write for write, _ in taken])
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                except asyncio.CancelledError:
                    for _, future in taken:
                        future.cancel()
                    raise
                else:
                    for (_, future), result in zip(taken, results, strict=True):
                        if future.done():
                            continue
                        if isinstance(result, BaseException):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
        finally:
            self._active -= 1
