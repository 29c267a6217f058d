"""Formatted times are remembered; a remembered one is the text the formatting gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from kurative import alerts
from kurative.alerts import format_timestamp

MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def formatted(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@given(MOMENTS, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_a_remembered_time_formats_as_a_fresh_one(moment: datetime, offset_minutes: int) -> None:
    shifted = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert format_timestamp(moment) == formatted(moment)
    assert format_timestamp(moment) == formatted(moment)  # from memory now
    assert format_timestamp(shifted) == formatted(moment)  # the same instant in another offset


def test_the_memory_is_bounded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(alerts._MAX_KNOWN_TIMES * 2):
        format_timestamp(start + timedelta(seconds=n))
    assert len(alerts._FORMATTED_TIMES) <= alerts._MAX_KNOWN_TIMES
    assert format_timestamp(start) == "2026-01-01T00:00:00Z"
    assert format_timestamp(None) is None
