"""Waiting for the journal database to come back: start at 1 s, double, ±10 % jitter, stop at a deadline.

The same schedule psycopg_pool uses for its own reconnections, so that a replica that starts before
its database (a Helm install, a failover) keeps trying for a while and then says plainly what failed,
instead of logging every attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from kurative.errors import JournalUnavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 1.0
    """First delay, in seconds."""
    factor: float = 2.0
    """Each delay is this many times the previous one."""
    jitter: float = 0.1
    """Each delay is moved by up to this fraction, either way, so replicas do not retry in step."""
    maximum: float = 30.0
    """No single delay is longer than this."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        delay = self.initial
        while True:
            yield min(delay, self.maximum) * (1.0 + rng.uniform(-self.jitter, self.jitter))
            delay *= self.factor


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    what: str,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call ``attempt`` until it stops raising :class:`JournalUnavailable` or ``deadline`` seconds pass.

    The last error is raised again with how long we tried, e.g. "couldn't reach the journal at
    postgresql://kurative@db/kurative after 10.0 s: connection refused".
    """
    started = clock()
    delays: Iterator[float] | None = None  # made at the first failure: most calls succeed at once
    while True:
        try:
            return await attempt()
        except JournalUnavailable as exc:
            elapsed = clock() - started
            remaining = deadline - elapsed
            if not remaining > 0:  # also a NaN deadline: never wait on what cannot be compared
                raise JournalUnavailable(f"couldn't reach {what} after {elapsed:.1f} s: {exc}") from exc
            if delays is None:
                delays = (backoff or Backoff()).delays(rng)
            await sleep(min(next(delays), remaining))
