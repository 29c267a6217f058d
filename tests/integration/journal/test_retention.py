"""The daemon's periodic prune: it deletes finished work round after round and survives failures."""

from __future__ import annotations

import asyncio
import contextlib

from kurative.errors import JournalError
from kurative.journal import ExecutionState, Journal, PruneReport
from kurative.journal.retention import prune_periodically

from .helpers import eventually, new_execution, running


async def test_periodic_prune_deletes_finished_work_and_keeps_going(journal: Journal) -> None:
    pending = await new_execution(journal, key="pending")
    claim = await running(journal)
    reports: list[PruneReport] = []
    task = asyncio.create_task(
        prune_periodically(journal, older_than=0.0, every=0.05, on_report=reports.append)
    )
    try:
        await eventually(lambda: asyncio.sleep(0, len(reports) >= 2))
        assert sum(r.executions for r in reports) == 0  # running and pending work is never pruned
        await journal.release_execution(claim.lease, ExecutionState.SUCCEEDED)
        await eventually(lambda: asyncio.sleep(0, sum(r.executions for r in reports) >= 1))
        assert [e.id for e in (await journal.list_executions()).items] == [pending]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_periodic_prune_reports_errors_and_retries(journal_url: str, journal: Journal) -> None:
    errors: list[JournalError] = []
    await journal.close()  # every round now fails: the database is gone for this journal
    task = asyncio.create_task(
        prune_periodically(journal, older_than=0.0, every=0.01, on_error=errors.append)
    )
    try:
        await eventually(lambda: asyncio.sleep(0, len(errors) >= 3))
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
