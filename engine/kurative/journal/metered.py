"""A journal whose calls are timed and whose failures are counted, for ``/metrics``.

:func:`metered` wraps any :class:`~kurative.journal.base.Journal`: every coroutine method is timed as
its caller sees it (a group commit's wait included) under ``operation=<method name>``, and a call that
raises is counted by kind (unavailable, conflict, error). A cancelled call is neither.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from kurative.journal.base import Journal
from kurative.metrics import Metrics


class _Metered:
    def __init__(self, journal: Journal, metrics: Metrics) -> None:
        self._journal = journal
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._journal, name)
        if not inspect.iscoroutinefunction(found):
            return found
        wrapped = _timed(name, found, self._metrics)
        setattr(self, name, wrapped)  # made once per method
        return wrapped


def _timed(
    operation: str, call: Callable[..., Coroutine[Any, Any, Any]], metrics: Metrics
) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except Exception as exc:
            metrics.journal_call(operation, started, exc)
            raise
        metrics.journal_call(operation, started, None)
        return result

    return timed


def metered(journal: Journal, metrics: Metrics) -> Journal:
    """``journal`` with every call measured into ``metrics``."""
    return cast(Journal, _Metered(journal, metrics))
