"""Bad input never crashes a backend: it is refused before the database, or stored safely."""

from __future__ import annotations

import math

import pytest

from kurative.errors import AlertError, RecordRejected
from kurative.journal import (
    IncomingAlert,
    Journal,
    JournalLimits,
    LimitRequest,
    StepFinish,
    StepStart,
    StepStatus,
    open_journal,
)

from .helpers import alert, raw_sql, request, running

NASTY = [
    "nul\x00inside",
    "lone surrogate \udcff from invalid UTF-8",
    "\ud800",
    "emoji 🚒 and RTL \u202e text",
    "quote ' \" \\ back",
    "",
]


async def inbox_size(journal_url: str) -> int:
    return int(raw_sql(journal_url, "SELECT count(*) FROM alerts")[0][0])


async def test_huge_payload_is_refused_before_the_database(journal: Journal, journal_url: str) -> None:
    big = alert()
    huge = IncomingAlert(
        big.fingerprint, "firing", big.labels, {**big.payload, "annotations": {"d": "x" * 300_000}}, "am"
    )
    with pytest.raises(AlertError, match=r"alert #1 \(fp-1\) payload is .* over the journal's limit"):
        await journal.commit_alerts([alert(), huge])
    assert await inbox_size(journal_url) == 0  # the good alert of the refused batch was not kept either
    await journal.commit_alerts([alert()])
    assert await inbox_size(journal_url) == 1


async def test_too_many_alerts_in_one_batch_are_refused(journal_url: str) -> None:
    journal = await open_journal(journal_url, migrate=True, limits=JournalLimits(max_batch_alerts=3))
    try:
        with pytest.raises(AlertError, match="batch of 4 alerts is over"):
            await journal.commit_alerts([alert(f"fp-{i}") for i in range(4)])
        assert len(await journal.commit_alerts([alert(f"fp-{i}") for i in range(3)])) == 3
    finally:
        await journal.close()


@pytest.mark.parametrize("nasty", NASTY)
async def test_nul_bytes_and_invalid_utf8_in_labels_are_stored_safely(journal: Journal, nasty: str) -> None:
    labels = {"alertname": "Weird", "pod": nasty, nasty + "key": "value"}
    sent = IncomingAlert(f"fp-{nasty}", "firing", labels, {"labels": labels, "note": [nasty]}, "am")
    (alert_id,) = await journal.commit_alerts([sent])
    stored = await journal.get_alert(alert_id)
    clean = "\x00" not in nasty and nasty.encode("utf-8", "ignore").decode() == nasty
    assert stored.sanitized is (not clean)
    assert stored.labels["alertname"] == "Weird"
    for text in (stored.labels["pod"], stored.payload["note"][0], stored.fingerprint):
        assert "\x00" not in text
        text.encode("utf-8")  # storable and printable now
    if clean:
        assert stored.labels["pod"] == nasty
    else:
        assert "\ufffd" in stored.labels["pod"]


async def test_bytes_label_values_are_decoded(journal: Journal) -> None:
    labels: dict[str, object] = {"alertname": "Bytes", "pod": b"\xffpod"}
    (alert_id,) = await journal.commit_alerts([IncomingAlert("fp", "firing", labels, {}, "am")])  # type: ignore[arg-type]
    stored = await journal.get_alert(alert_id)
    assert stored.labels["pod"] == "\ufffdpod"
    assert stored.sanitized


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (IncomingAlert("fp", "pending", {}, {}, "am"), "status must be 'firing' or 'resolved'"),
        (IncomingAlert("fp", "firing", {"n": 1}, {}, "am"), "must map a string to a string"),  # type: ignore[dict-item]
        (IncomingAlert("fp", "firing", {}, {"v": math.nan}, "am"), "not storable as JSON"),
        (IncomingAlert("fp", "firing", {}, {"v": object()}, "am"), "not storable as JSON"),
        (IncomingAlert("fp", "firing", {}, [], "am"), "payload must be a JSON object"),  # type: ignore[arg-type]
        (IncomingAlert("f" * 5000, "firing", {}, {}, "am"), "fingerprint is 5000 characters"),
    ],
)
async def test_malformed_alerts_are_refused_clearly(
    journal: Journal, journal_url: str, bad: IncomingAlert, message: str
) -> None:
    with pytest.raises(AlertError, match=message):
        await journal.commit_alerts([bad])
    assert await inbox_size(journal_url) == 0


async def test_deeply_nested_payload_is_refused(journal: Journal) -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        child: dict[str, object] = {}
        node["d"] = child
        node = child
    with pytest.raises(AlertError, match="nested too deeply"):
        await journal.commit_alerts([IncomingAlert("fp", "firing", {}, deep, "am")])


async def test_oversized_step_output_and_bad_requests_are_refused(journal: Journal) -> None:
    claim = await running(journal)
    await journal.record_step_started(
        claim.lease, StepStart(0, "logs", "kubernetes.pod_logs", params={"x": "\x00"})
    )
    with pytest.raises(RecordRejected, match=r"step logs output is .* over the journal's limit"):
        await journal.record_step_finished(
            claim.lease, StepFinish(0, "logs", StepStatus.SUCCEEDED, output="x" * 2_000_000)
        )
    await journal.record_step_finished(claim.lease, StepFinish(0, "logs", StepStatus.SUCCEEDED, output="ok"))
    (alert_id,) = await journal.commit_alerts([alert()])
    for bad in (
        request(window=-1.0),
        request(window=math.inf),
        request(limits=(LimitRequest("shop", -1, 60.0),)),
        request(limits=(LimitRequest("shop", 1, 0.0),)),
        request(key=""),
        request(key="a\x00b"),
    ):
        with pytest.raises(RecordRejected):
            await journal.create_executions(alert_id, [bad])
    assert [e.id for e in (await journal.list_executions()).items] == [claim.execution.id]
    with pytest.raises(RecordRejected):
        await journal.claim_executions("replica", lease_seconds=0)
