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
