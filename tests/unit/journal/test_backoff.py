"""The reconnect schedule: 1 s, doubling, ±10 % jitter, capped, stopping at a deadline."""

from __future__ import annotations

import math
import random

import pytest

from kurative.errors import JournalUnavailable
from kurative.journal.backoff import Backoff, retry_until


def test_delays_start_at_one_second_double_and_jitter_within_ten_percent() -> None:
    delays = Backoff().delays(random.Random(7))
    seen = [next(delays) for _ in range(8)]
    for n, delay in enumerate(seen[:5]):
        assert 0.9 * 2**n <= delay <= 1.1 * 2**n
    assert all(27.0 <= d <= 33.0 for d in seen[5:])  # capped at 30 s
    assert len({round(d / 2**n, 6) for n, d in enumerate(seen[:5])}) > 1  # jittered, not in lockstep


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_retry_until_succeeds_once_the_database_answers() -> None:
    fake = FakeTime()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise JournalUnavailable("connection refused")
        return "connected"

    result = await retry_until(
        attempt, deadline=60, what="the journal", sleep=fake.sleep, clock=fake.clock, rng=random.Random(1)
    )
    assert result == "connected"
    assert calls == 4
    assert [round(s) for s in fake.sleeps] == [1, 2, 4]


async def test_retry_until_gives_up_at_the_deadline_with_the_last_reason() -> None:
    fake = FakeTime()

    async def attempt() -> None:
        raise JournalUnavailable("connection refused")

    with pytest.raises(
        JournalUnavailable, match=r"couldn't reach the journal after 10\.0 s: connection refused"
    ):
        await retry_until(attempt, deadline=10, what="the journal", sleep=fake.sleep, clock=fake.clock)
    assert sum(fake.sleeps) == pytest.approx(10.0)  # the last sleep is cut to the deadline


async def test_no_deadline_means_one_attempt() -> None:
    fake = FakeTime()

    async def attempt() -> None:
        raise JournalUnavailable("refused")

    with pytest.raises(JournalUnavailable, match=r"after 0\.0 s"):
        await retry_until(attempt, deadline=0, what="x", sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


async def test_a_nan_deadline_gives_up_at_once_instead_of_waiting_forever() -> None:
    fake = FakeTime()

    async def attempt() -> str:
        raise JournalUnavailable("connection refused")

    with pytest.raises(JournalUnavailable, match=r"after 0\.0 s"):
        await retry_until(attempt, deadline=math.nan, what="the journal", sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []
