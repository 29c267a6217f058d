"""A committed batch keeps every alert's text exactly, in order, whatever its characters: the
PostgreSQL journal sends a whole group as one JSON document, built as text around JSON it encoded
before, so the characters JSON escapes (quotes, backslashes, control characters, line breaks) and
those it does not (non-ASCII, right-to-left marks) must come back as they were sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kurative.journal import IncomingAlert, Journal

from .helpers import raw_sql

TEXTS = [
    'quote " and \\ backslash \\" both',
    "line\nbreak\ttab\rreturn \x01\x1f control",
    "emoji 🚒, accents é, RTL \u202e, CJK 漢字, BOM \ufeff",
    '{"looks": ["like", "json"]}',
    "</script> & <tag> ' apostrophe",
]


def nasty_alert(n: int, text: str, starts_at: str | None) -> IncomingAlert:
    labels = {"alertname": f"Odd {text}", "pod": text, f"{text} key": "v"}
    payload: dict[str, object] = {"status": "firing", "labels": labels, "annotations": {"d": text}}
    if starts_at is not None:
        payload["startsAt"] = starts_at
    return IncomingAlert(f"fp {n} {text}", "firing", labels, payload, f"source {text}")


async def test_every_text_of_a_batch_is_stored_as_sent(journal: Journal, journal_url: str) -> None:
    sent = [nasty_alert(n, text, "2026-11-26T06:00:00.123456+02:00") for n, text in enumerate(TEXTS)]
    ids = await journal.commit_alerts(sent)
    for alert_id, alert in zip(ids, sent, strict=True):
        stored = await journal.get_alert(alert_id)
        assert not stored.sanitized
        assert (stored.fingerprint, stored.source) == (alert.fingerprint, alert.source)
        assert dict(stored.labels) == alert.labels
        assert stored.payload["annotations"] == alert.payload["annotations"]
        assert stored.starts_at == datetime(2026, 11, 26, 4, 0, 0, 123456, tzinfo=UTC)
    names = raw_sql(journal_url, "SELECT alertname FROM alerts ORDER BY " + _order(journal_url))
    assert [name for (name,) in names] == [f"Odd {text}" for text in TEXTS]  # in the batch's order


@pytest.mark.parametrize("offset", [0, 5, -7])
async def test_a_start_in_any_offset_is_the_same_instant(journal: Journal, offset: int) -> None:
    moment = datetime(2026, 11, 26, 6, 0, tzinfo=timezone(timedelta(hours=offset)))
    (alert_id,) = await journal.commit_alerts([nasty_alert(0, "plain", moment.isoformat())])
    stored = await journal.get_alert(alert_id)
    assert stored.starts_at == moment


async def test_start_less_and_started_alerts_share_one_batch(journal: Journal) -> None:
    sent = [nasty_alert(n, text, None if n % 2 else "2026-11-26T06:00:00Z") for n, text in enumerate(TEXTS)]
    ids = await journal.commit_alerts(sent)
    stored = [await journal.get_alert(alert_id) for alert_id in ids]
    assert [s.fingerprint for s in stored] == [a.fingerprint for a in sent]
    assert all(s.starts_at is not None for s in stored)  # a start-less alert opens its episode


def _order(url: str) -> str:
    return "rowid" if url.startswith("sqlite") else "seq"


@pytest.mark.parametrize("bad", ["nul\x00inside", "lone \udcff surrogate"])
async def test_a_bad_text_in_one_alert_does_not_fail_its_batch(journal: Journal, bad: str) -> None:
    """NUL and lone surrogates (which PostgreSQL's text cannot hold) in the name, source and
    fingerprint of one alert are replaced; the batch, with its good neighbours, is stored."""
    odd = IncomingAlert(f"fp {bad}", "firing", {"alertname": bad}, {"labels": {"alertname": bad}}, bad)
    ids = await journal.commit_alerts([nasty_alert(0, "fine", None), odd, nasty_alert(2, "fine", None)])
    stored = await journal.get_alert(ids[1])
    assert stored.sanitized
    for text in (stored.fingerprint, stored.source, stored.labels["alertname"]):
        assert "\x00" not in text
        text.encode("utf-8")
    assert (await journal.get_alert(ids[2])).labels["pod"] == "fine"
