"""Approval steps that ran out of time: hand their executions back to the workers so the step fails.

An ``approval`` step waits in ``awaiting_approval``, where no worker looks at it. This loop looks at
the waiting executions now and then; one whose approval step has waited longer than its ``timeout``
goes back to ``pending``, a worker claims it, records the step as failed ("no decision within 1h") and
runs the ``always`` steps. Executions that wait for approval before their first step (a high-risk
playbook) have no approval step and wait until someone decides or the alert resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

import structlog

from kurative.errors import JournalError
from kurative.execution.runner import APPROVAL, approval_timeout
from kurative.journal import ExecutionFilter, ExecutionState, Journal

log = structlog.get_logger("kurative.execution")


class ApprovalTimer:
    def __init__(self, journal: Journal, *, every: float, expired: Callable[[], None]) -> None:
        self._journal = journal
        self._every = every
        self._expired = expired
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self.expire_due():
                    self._expired()
            except JournalError as exc:
                log.warning("approval_check_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._stopping.wait()

    async def expire_due(self) -> int:
        """Hand back every execution whose approval step is overdue; return how many."""
        now = await self._journal.now()
        waiting = ExecutionFilter(states=(ExecutionState.AWAITING_APPROVAL,))
        expired = 0
        cursor: str | None = None
        while True:
            page = await self._journal.list_executions(waiting, limit=200, cursor=cursor)
            for execution in page.items:
                detail = await self._journal.get_execution(execution.id)
                opened = [s for s in detail.open_steps() if s.action == APPROVAL and s.started_at]
                if not opened:
                    continue
                step = opened[-1]
                assert step.started_at is not None
                due = step.started_at + timedelta(seconds=approval_timeout(step.params)) <= now
                if due and await self._journal.expire_approval(execution.id):
                    log.info("approval_timed_out", execution_id=execution.id, step=step.name)
                    expired += 1
            cursor = page.next_cursor
            if cursor is None:
                return expired
