"""The one retry decision: temporary errors retried with backoff (Retry-After honoured), permanent
ones not, an open breaker waited out without using up an attempt."""

from __future__ import annotations

import random

from kurative.errors import BreakerOpen, ObjectConflict, PermanentActionError, TemporaryActionError
from kurative.execution.retrying import MAX_DELAY, decide
from kurative.playbooks.models import Retry


def test_temporary_errors_are_retried_with_doubling_jittered_backoff() -> None:
    retry = Retry(attempts=4, backoff=2.0)
    rng = random.Random(7)
    delays = [decide(TemporaryActionError("busy"), retry, n, rng).delay for n in (1, 2, 3)]
    for delay, base in zip(delays, (2.0, 4.0, 8.0), strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    assert decide(TemporaryActionError("busy"), retry, 4).retry is False
    assert decide(TimeoutError("slow"), retry, 1).retry is True


def test_a_longer_retry_after_wins_and_absurd_ones_are_capped() -> None:
    retry = Retry(attempts=3, backoff=1.0)
    assert decide(ObjectConflict("409", retry_after=30.0), retry, 1).delay == 30.0
    assert decide(TemporaryActionError("x", retry_after=1e12), retry, 1).delay == MAX_DELAY
    assert decide(TemporaryActionError("x", retry_after=float("nan")), retry, 1).delay < 2.0


def test_permanent_errors_fail_at_once() -> None:
    assert decide(PermanentActionError("404"), Retry(attempts=5), 1).retry is False
    assert decide(ValueError("a bug"), Retry(attempts=5), 1).retry is False


def test_an_open_breaker_is_waited_out_and_not_counted() -> None:
    decision = decide(BreakerOpen("kubernetes/prod", 12.5), Retry(attempts=1), 1)
    assert (decision.retry, decision.counted, decision.delay) == (True, False, 12.5)
