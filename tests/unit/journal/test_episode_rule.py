"""The firing-episode rule in memory: what ``kurative simulate`` and ``kurative test`` apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kurative.alerts import parse_notification
from kurative.journal.episodes import EpisodeTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LABELS = {"alertname": "DiskFull", "instance": "db-1"}


def test_the_parser_says_when_starts_at_was_absent() -> None:
    absent, given = parse_notification(
        [{"labels": LABELS}, {"labels": LABELS, "startsAt": "2025-01-01T00:00:00Z"}], T0
    ).alerts
    assert (absent.starts_at, absent.starts_at_given) == (T0, False)
    assert given.starts_at_given
    assert absent.with_start(T0 - timedelta(hours=1)).document["startsAt"] == "2025-12-31T23:00:00Z"


def test_tracker_joins_repeats_until_resolved_and_keeps_given_starts() -> None:
    tracker = EpisodeTracker()

    def sent(at: timedelta, status: str | None = None, starts: str | None = None) -> datetime | None:
        raw: dict[str, object] = {"labels": LABELS}
        if status == "resolved":
            raw["endsAt"] = "2020-01-01T00:00:00Z"
        if starts is not None:
            raw["startsAt"] = starts
        (alert,) = parse_notification([raw], T0 + at).alerts
        return tracker.join(alert).starts_at

    hour = timedelta(hours=1)
    assert sent(0 * hour) == T0
    assert sent(4 * hour) == T0  # a repeat joins
    assert sent(5 * hour, "resolved") == T0  # and so does the resolution, which closes the episode
    assert sent(5.5 * hour, "resolved") == T0  # the resolution sent again joins the episode it closed
    assert sent(6 * hour) == T0 + 6 * hour  # a new episode
    assert sent(7 * hour, starts="2026-01-01T06:30:00Z") == T0 + 6.5 * hour  # a given start is kept
    assert sent(8 * hour) == T0 + 6.5 * hour  # and the next start-less repeat joins it
