"""Retention: the periodic prune the daemon runs in its task group.

The journal grows with every alert; finished executions and old alerts are deleted past a configured
age, in small transactions so that a prune never holds locks the ingress or the runners wait on. A
failed round (the database is away) is reported and retried at the next one, never fatal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kurative.errors import JournalError
from kurative.journal.base import Journal
from kurative.journal.models import PruneReport


async def prune_periodically(
    journal: Journal,
    *,
    older_than: float,
    every: float = 3600.0,
    batch: int = 1000,
    on_report: Callable[[PruneReport], None] | None = None,
    on_error: Callable[[JournalError], None] | None = None,
) -> None:
    """Prune now, then every ``every`` seconds, until cancelled.

    ``on_report`` receives each round's counts (for logs and metrics); ``on_error`` receives a round's
    :class:`kurative.errors.JournalError` (the next round tries again).
    """
    while True:
        try:
            report = await journal.prune(older_than, batch=batch)
        except JournalError as exc:
            if on_error is not None:
                on_error(exc)
        else:
            if on_report is not None:
                on_report(report)
        await asyncio.sleep(every)
