"""What the journal's step records say about a step, also when a crash cut in between two writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kurative.execution.runner import BREAKER_MARK, StepHistory
from kurative.journal import StepRecord, StepStatus

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def record(status: StepStatus, attempt: int, output: object = None) -> StepRecord:
    return StepRecord(
        1, "e", 0, "s", "kubernetes.scale", attempt, status, {}, output, None, None, NOW, NOW, 1
    )


def test_a_failure_followed_by_a_retry_or_a_breaker_wait_does_not_settle_the_step() -> None:
    for mark in ({"retry": True}, {BREAKER_MARK: True}):
        history = StepHistory([record(StepStatus.STARTED, 1), record(StepStatus.FAILED, 1, mark)])
        assert history.final is None  # the crash came before the next attempt was scheduled
        assert history.open is None
        assert history.next_attempt == 2
    breaker = StepHistory([record(StepStatus.STARTED, 1), record(StepStatus.FAILED, 1, {BREAKER_MARK: True})])
    assert breaker.failures == 0


def test_a_final_failure_settles_it_and_an_open_attempt_is_found() -> None:
    failed = StepHistory([record(StepStatus.STARTED, 1), record(StepStatus.FAILED, 1)])
    assert failed.final is not None
    assert failed.final.status is StepStatus.FAILED
    interrupted = StepHistory(
        [
            record(StepStatus.STARTED, 1),
            record(StepStatus.FAILED, 1, {"retry": True}),
            record(StepStatus.STARTED, 2),
        ]
    )
    assert interrupted.final is None
    assert interrupted.open is not None
    assert interrupted.open.attempt == 2
    assert interrupted.failures == 1


def _record(attempt: int, status: StepStatus, output: Any = None, error: str | None = None) -> StepRecord:
    return StepRecord(
        attempt * 10 + (status is not StepStatus.STARTED), "e-1", 0, "scale", "kubernetes.scale",
        attempt, status, None, output, error, None, NOW, NOW, 1,
    )  # fmt: skip


def test_a_step_parked_at_an_open_breaker_is_not_settled_and_its_parking_is_not_counted() -> None:
    history = StepHistory(
        [
            _record(1, StepStatus.STARTED),
            _record(1, StepStatus.FAILED, {"retry": True}, "HTTP 500"),
            _record(2, StepStatus.STARTED),
            _record(2, StepStatus.FAILED, {BREAKER_MARK: True}, "circuit breaker is open"),
        ]
    )
    assert history.final is None
    assert history.open is None
    assert history.failures == 1
    assert history.next_attempt == 3


def test_a_failure_not_retried_settles_the_step() -> None:
    failed = _record(1, StepStatus.FAILED, None, "HTTP 404")
    history = StepHistory([_record(1, StepStatus.STARTED), failed])
    assert history.final == failed
    assert history.failures == 1


def test_an_interrupted_attempt_that_a_later_one_replaced_is_not_open_again() -> None:
    history = StepHistory(
        [
            record(StepStatus.STARTED, 1),  # interrupted by a crash; recovery ran it again as 2
            record(StepStatus.STARTED, 2),
            record(StepStatus.FAILED, 2, {"retry": True}),
        ]
    )
    assert history.open is None
    assert history.final is None
    assert history.next_attempt == 3
