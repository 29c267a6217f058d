"""The matcher's parsed alerts, kept for the runner: bounded, oldest forgotten first."""

from __future__ import annotations

from kurative.alerts import parse_notification
from kurative.execution.recent import ParsedAlert, RecentAlerts


def _parsed(n: int) -> ParsedAlert:
    payload = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "kurative",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"A{n}"},
                "annotations": {},
                "startsAt": "2026-12-01T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
            }
        ],
    }
    return parse_notification(payload).alerts[0], None


def test_keeps_the_last_alerts_and_forgets_the_oldest() -> None:
    recent = RecentAlerts(size=3)
    for n in range(5):
        recent.remember(f"id-{n}", _parsed(n))
    assert recent.get("id-0") is None
    assert recent.get("id-1") is None
    found = recent.get("id-4")
    assert found is not None
    assert found[0].labels["alertname"] == "A4"
    recent.remember("id-2", _parsed(2))  # remembered again: the newest now
    recent.remember("id-5", _parsed(5))
    assert recent.get("id-3") is None
    assert recent.get("id-2") is not None
