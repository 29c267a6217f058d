"""The metrics registry: bounded breaker labels, scrape-time gauges, and a journal whose calls are
timed (against a real SQLite journal)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kurative.errors import ExecutionNotFound, JournalUnavailable, LeaseLost
from kurative.journal import open_journal
from kurative.journal.metered import metered
from kurative.metrics import (
    ALERT_STATUSES,
    ENDPOINTS,
    MAX_BREAKERS,
    REJECT_REASONS,
    RELOAD_RESULTS,
    BreakerReading,
    Metrics,
    Sources,
    journal_error_kind,
)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_scrape_time_gauges_and_a_capped_breaker_list() -> None:
    metrics = Metrics()
    readings = [BreakerReading(f"http/host-{n:03d}:443", "closed", 0, 0.0) for n in range(MAX_BREAKERS + 5)]
    readings.append(BreakerReading("http/zz-last:443", "open", 5, 12.5))
    metrics.observe(Sources(breakers=lambda: readings, playbooks_loaded=lambda: 7, playbook_errors=lambda: 2))
    found = samples(metrics)
    assert found[("kurative_playbooks_loaded", ())] == 7
    assert found[("kurative_playbook_errors", ())] == 2
    breakers = {dict(labels)["breaker"] for (name, labels) in found if name == "kurative_breaker_state"}
    assert len(breakers) == MAX_BREAKERS + 1
    assert "other" in breakers
    assert found[("kurative_breaker_state", (("breaker", "other"), ("state", "open")))] == 1
    first = "http/host-000:443"
    assert found[("kurative_breaker_state", (("breaker", first), ("state", "closed")))] == 1
    assert found[("kurative_breaker_state", (("breaker", first), ("state", "open")))] == 0


def test_breaker_transitions_stay_bounded() -> None:
    metrics = Metrics()
    for n in range(MAX_BREAKERS * 2):
        metrics.breaker_changed(f"http/h{n}:443", "open")
    labels = {
        dict(labels)["breaker"]
        for (name, labels) in samples(metrics)
        if name == "kurative_breaker_transitions_total"
    }
    assert len(labels) == MAX_BREAKERS + 1


def test_error_kinds() -> None:
    assert journal_error_kind(JournalUnavailable("down")) == "unavailable"
    assert journal_error_kind(LeaseLost("gone")) == "conflict"
    assert journal_error_kind(ExecutionNotFound("x")) == "error"


async def test_a_metered_journal_times_calls_and_counts_failures(tmp_path: Path) -> None:
    metrics = Metrics()
    journal = metered(await open_journal(f"sqlite:///{tmp_path / 'j.db'}", migrate=True), metrics)
    try:
        await journal.now()
        await journal.now()
        with pytest.raises(ExecutionNotFound):
            await journal.get_execution("00000000-0000-0000-0000-000000000000")
        assert journal.url.startswith("sqlite:")
    finally:
        await journal.close()
    found = samples(metrics)
    assert found[("kurative_journal_operation_seconds_count", (("operation", "now"),))] == 2
    assert found[("kurative_journal_errors_total", (("error", "error"), ("operation", "get_execution")))] == 1


def test_fixed_vocabularies_start_at_zero() -> None:
    """A counter series that first appears with the value 1 has no increase() for rules to see."""
    from kurative.execution.reloading import REFUSED
    from kurative.ingress.app import REJECTED
    from kurative.ingress.payloads import Endpoint

    assert set(typing.get_args(Endpoint)) == set(ENDPOINTS)
    assert {*REJECTED.values(), "unavailable"} == set(REJECT_REASONS)
    assert REFUSED in RELOAD_RESULTS
    found = samples(Metrics())
    for endpoint in ENDPOINTS:
        for reason in REJECT_REASONS:
            key = ("kurative_alerts_rejected_total", (("endpoint", endpoint), ("reason", reason)))
            assert found[key] == 0
        for status in ALERT_STATUSES:
            key = ("kurative_alerts_received_total", (("endpoint", endpoint), ("status", status)))
            assert found[key] == 0
    for result in RELOAD_RESULTS:
        assert found[("kurative_reloads_total", (("result", result),))] == 0
