"""What the journal's step records say about a step: settled, open, and the failures that count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kurative.execution.runner import BREAKER_MARK, StepHistory
from kurative.journal import StepRecord, StepStatus

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def record(attempt: int, status: StepStatus, output: Any = None, error: str | None = None) -> StepRecord:
    return StepRecord(
        attempt * 10 + (status is not StepStatus.STARTED), "e-1", 0, "scale", "kubernetes.scale",
        attempt, status, None, output, error, None, NOW, NOW, 1,
    )  # fmt: skip


def test_a_step_parked_at_an_open_breaker_is_not_settled_and_its_parking_is_not_counted() -> None:
    history = StepHistory(
        [
            record(1, StepStatus.STARTED),
            record(1, StepStatus.FAILED, {"retry": True}, "HTTP 500"),
            record(2, StepStatus.STARTED),
            record(2, StepStatus.FAILED, {BREAKER_MARK: True}, "circuit breaker is open"),
        ]
    )
    assert history.final is None
    assert history.open is None
    assert history.failures == 1
    assert history.next_attempt == 3


def test_a_failure_not_retried_settles_the_step() -> None:
    failed = record(1, StepStatus.FAILED, None, "HTTP 404")
    history = StepHistory([record(1, StepStatus.STARTED), failed])
    assert history.final == failed
    assert history.failures == 1
