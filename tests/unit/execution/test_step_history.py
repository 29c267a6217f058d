"""What the journal's step records say about a step, also when a crash cut in between two writes."""

from __future__ import annotations

from datetime import UTC, datetime

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
