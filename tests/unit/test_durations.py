"""The duration parser is bounded: huge numbers give a DurationError, never an overflow or infinity."""

from __future__ import annotations

import math

import pytest

from kurative.durations import (
    MAX_DURATION_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("0001s", 1.0),
        ("36500d", 3153600000.0),
    ],
)
def test_ordinary_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "9" * 5000 + "s",  # more digits than int() converts
        "9" * 400 + "d",  # overflows float conversion
        "1" + "0" * 320 + "ms",
        "36501d",
        "36500d1s",
        "1d" * 40000,  # many small parts add up past the maximum
    ],
)
def test_too_long_durations_are_refused(text: str) -> None:
    with pytest.raises(DurationError, match="longer than the maximum of 36500d"):
        parse_duration(text)


def test_leading_zeros_do_not_count_as_size() -> None:
    assert parse_duration("0" * 3000 + "5m") == 300.0


def test_the_message_does_not_repeat_a_huge_number() -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration("9" * 5000 + "s")
    assert len(str(caught.value)) < 200
    assert "(5001 characters)" in str(caught.value)


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan, -1.0])
def test_format_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(DurationError):
        format_duration(seconds)


def test_the_maximum_formats() -> None:
    assert format_duration(MAX_DURATION_SECONDS) == "36500d"
    assert parse_duration(format_duration(MAX_DURATION_SECONDS)) == MAX_DURATION_SECONDS
