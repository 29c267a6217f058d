"""The success of a call through a closed breaker without failures records nothing (the usual journal
commit), while every success that pybreaker would act on still reaches it."""

from __future__ import annotations

from typing import Any

import pybreaker
import pytest

from kurative.adapters.breaking import call_through
from kurative.errors import TemporaryActionError
from kurative.execution.breakers import BreakerPolicy, BreakerSettings


async def working() -> str:
    return "ok"


async def failing() -> None:
    raise TemporaryActionError("HTTP 503")


class Hearing(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.before = 0
        self.successes = 0

    def before_call(self, cb: pybreaker.CircuitBreaker, func: Any, *args: Any, **kwargs: Any) -> None:
        self.before += 1

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self.successes += 1


async def test_a_success_after_failures_still_resets_the_count() -> None:
    breaker = BreakerPolicy(BreakerSettings(fail_max=3, reset_timeout=60.0)).for_target("journal")
    for _ in range(2):
        with pytest.raises(TemporaryActionError):
            await call_through(breaker, failing)
    assert breaker.fail_counter == 2
    assert await call_through(breaker, working) == "ok"
    assert breaker.fail_counter == 0
    for _ in range(2):  # the count starts again: two more failures do not open it
        with pytest.raises(TemporaryActionError):
            await call_through(breaker, failing)
    assert breaker.current_state == "closed"


async def test_a_listener_that_hears_successes_hears_every_one() -> None:
    hearing = Hearing()
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=60, listeners=[hearing], name="journal")
    for _ in range(3):
        assert await call_through(breaker, working) == "ok"
    assert (hearing.before, hearing.successes) == (3, 3)


async def test_the_closed_breaker_stays_as_it_was_after_many_successes() -> None:
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=60.0)).for_target("journal")
    for _ in range(100):
        await call_through(breaker, working)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)
    with pytest.raises(TemporaryActionError):  # one failure still opens a fail_max=1 breaker
        await call_through(breaker, failing)
    assert breaker.current_state == "open"
