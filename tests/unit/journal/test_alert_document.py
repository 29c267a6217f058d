"""The PostgreSQL journal's group document: one JSON array whatever the alerts' texts hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kurative.journal.encoding import PreparedAlert
from kurative.journal.postgres import _alerts_document

TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


def prepared(fingerprint: str, alertname: str, source: str, labels: dict[str, str]) -> PreparedAlert:
    return PreparedAlert(
        id='id","i":"forged',
        fingerprint=fingerprint,
        status="firing",
        alertname=alertname,
        labels_json=json.dumps(labels, ensure_ascii=False, separators=(",", ":")),
        payload_json=json.dumps({"labels": labels, "note": [fingerprint]}, ensure_ascii=False),
        source=source,
        sanitized=False,
    )


@given(TEXT, TEXT, TEXT, st.dictionaries(TEXT, TEXT, max_size=4))
def test_every_text_stays_one_string_of_its_row(
    fingerprint: str, alertname: str, source: str, labels: dict[str, str]
) -> None:
    start = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    rows = json.loads(_alerts_document([prepared(fingerprint, alertname, source, labels)] * 2, [start, None]))
    assert len(rows) == 2
    first = rows[0]
    assert (first["i"], first["f"], first["s"], first["n"], first["o"]) == (
        'id","i":"forged',
        fingerprint,
        "firing",
        alertname,
        source,
    )
    assert first["l"] == labels
    assert first["p"]["note"] == [fingerprint]
    assert datetime.fromisoformat(first["t"]) == start
    assert rows[1]["t"] is None
    assert first["z"] is False
