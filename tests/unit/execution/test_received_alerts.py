"""The matcher takes the alerts the ingress just committed as the ingress parsed them: exactly what
parsing their inbox records again gives, or, for a record the journal had to sanitize, nothing (it is
read back instead)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kurative.alerts import parse_notification
from kurative.errors import AlertError
from kurative.ingress.payloads import inbox_records
from kurative.journal import open_journal
from kurative.journal.inbox import inbox_alert, received_alert

text = st.text(st.characters(exclude_categories=()), max_size=6) | st.sampled_from(["", "x", "\x00", "pod-1"])
names = st.sampled_from(["alertname", "pod", "namespace", "severity"]) | text
label_sets = st.dictionaries(names, text, max_size=4)
times = st.sampled_from(
    [
        "2026-12-01T08:00:00Z",
        "2026-12-01T08:00:00.123456789Z",
        "2026-12-01T10:00:00+02:00",
        "0001-01-01T00:00:00Z",
    ]
)
alerts = st.fixed_dictionaries(
    {"labels": label_sets, "status": st.sampled_from(["firing", "resolved"])},
    optional={
        "annotations": label_sets,
        "startsAt": times,
        "endsAt": times,
        "generatorURL": text,
        "fingerprint": st.sampled_from(["c0ffee00c0ffee00", "0123456789abcdef"]),
    },
)
webhooks = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "receiver": text,
        "groupKey": text,
        "groupLabels": label_sets,
        "commonLabels": label_sets,
        "commonAnnotations": label_sets,
        "externalURL": text,
        "alerts": st.lists(alerts, min_size=1, max_size=3),
    }
)


async def _compare(folder: Path, payload: Any, endpoint: str) -> int:
    notification = parse_notification(payload)
    journal = await open_journal(f"sqlite:///{folder / 'journal.sqlite'}", migrate=True)
    try:
        ids = await journal.commit_alerts(inbox_records(notification, endpoint))  # type: ignore[arg-type]
        stored = {alert.id: alert for alert in await journal.unmatched_alerts(limit=100)}
    finally:
        await journal.close()
    taken = 0
    for alert_id, alert in zip(ids, notification.alerts, strict=True):
        expected = inbox_alert(stored[alert_id])
        known = received_alert(stored[alert_id], alert, notification.group)
        if known is None:
            assert stored[alert_id].sanitized
            continue
        taken += 1
        assert known == expected
        assert known[0].document == expected[0].document
        assert (known[1] and known[1].document) == (expected[1] and expected[1].document)
    return taken


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=webhooks | alerts.map(lambda alert: [alert]), data=st.data())
def test_an_alert_as_the_ingress_parsed_it_is_what_its_inbox_record_reads_back(
    tmp_path_factory: Any, payload: Any, data: st.DataObject
) -> None:
    try:
        parse_notification(payload)
    except AlertError:
        assume(False)
    endpoint = "alertmanager" if isinstance(payload, dict) else "prometheus"
    asyncio.run(_compare(tmp_path_factory.mktemp("journal"), payload, endpoint))


def test_the_matcher_keeps_a_bounded_number_of_fresh_alerts(monkeypatch: Any) -> None:
    from kurative.execution import matcher as matching

    monkeypatch.setattr(matching, "FRESH", 3)
    kept = matching.Matcher(None, lambda: None, dry_run=False, poll_interval=1.0)  # type: ignore[arg-type]
    for n in range(5):
        one = parse_notification([{"labels": {"alertname": f"A{n}"}}])
        kept.wake((f"id-{n}",), one)
    kept.wake(("id-5", "id-6"), parse_notification([{"labels": {"alertname": "B"}}]))  # not one per id
    assert list(kept._fresh) == ["id-2", "id-3", "id-4"]
