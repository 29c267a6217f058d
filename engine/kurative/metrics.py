"""The daemon's Prometheus metrics: one registry per daemon, names by Prometheus conventions.

Every label set is bounded: endpoints, reasons, outcomes, states and actions are fixed vocabularies,
playbook names are bounded by the ruleset, and breaker names (which include webhook hosts a template
may render) are capped at :data:`MAX_BREAKERS`, the rest counted as ``other``. An alert's fingerprint,
a pod or an execution id is never a label: those belong in logs and the journal.

Counters are written where things happen; what is true at scrape time (breaker states, playbooks
loaded, executions awaiting approval) is read from its owner when ``/metrics`` is scraped, through the
sources given to :meth:`Metrics.observe`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kurative.errors import JournalConflict, JournalUnavailable

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
MAX_BREAKERS = 64
BREAKER_STATES = ("closed", "open", "half-open")
STEP_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
JOURNAL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
ENDPOINTS = ("alertmanager", "prometheus")
ALERT_STATUSES = ("firing", "resolved")
REJECT_REASONS = ("invalid", "unauthorized", "too_large", "unsupported_media_type", "unavailable")
RELOAD_RESULTS = ("changed", "unchanged", "refused", "failed")
"""The fixed vocabularies whose counters start at 0: ``increase()`` cannot see the first event of a
series that appears with the value 1, so an alert on the first refused reload or rejected notification
of a process would never fire."""


@dataclass(frozen=True, slots=True)
class BreakerReading:
    """What the breaker gauges show of one breaker (the execution layer's snapshot has this shape)."""

    target: str
    state: str
    failures: int
    retry_after: float


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the scrape-time gauges come from; each returns the value now."""

    breakers: Callable[[], Iterable[Any]] = tuple
    playbooks_loaded: Callable[[], int] = int
    playbook_errors: Callable[[], int] = int


class _ScrapeTime(Collector):
    def __init__(self) -> None:
        self.sources = Sources()

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "kurative_breaker_state",
            "1 for the state each breaker is in (closed, open, half-open), 0 for the others.",
            labels=["breaker", "state"],
        )
        failures = GaugeMetricFamily(
            "kurative_breaker_failures", "Consecutive failures each breaker has counted.", labels=["breaker"]
        )
        half_open = GaugeMetricFamily(
            "kurative_breaker_half_open_seconds",
            "Seconds until an open breaker lets its trial call through (0 unless open).",
            labels=["breaker"],
        )
        for reading in _capped(self.sources.breakers()):
            for name in BREAKER_STATES:
                state.add_metric([reading.target, name], 1.0 if reading.state == name else 0.0)
            failures.add_metric([reading.target], reading.failures)
            half_open.add_metric([reading.target], reading.retry_after)
        yield state
        yield failures
        yield half_open
        yield GaugeMetricFamily(
            "kurative_playbooks_loaded",
            "Playbooks in the active ruleset.",
            value=self.sources.playbooks_loaded(),
        )
        yield GaugeMetricFamily(
            "kurative_playbook_errors",
            "Errors in the playbook files as last checked (their playbooks keep the last good version).",
            value=self.sources.playbook_errors(),
        )


def _capped(readings: Iterable[Any]) -> list[BreakerReading]:
    """The first :data:`MAX_BREAKERS` by name, the rest folded into one ``other`` (open if any is)."""
    ordered = [
        BreakerReading(r.target, r.state, r.failures, r.retry_after)
        for r in sorted(readings, key=lambda r: r.target)
    ]
    kept, rest = ordered[:MAX_BREAKERS], ordered[MAX_BREAKERS:]
    if rest:
        state = "open" if any(r.state == "open" for r in rest) else "closed"
        kept.append(BreakerReading("other", state, sum(r.failures for r in rest), 0.0))
    return kept


def breaker_label(target: str, known: set[str]) -> str:
    """``target`` while fewer than :data:`MAX_BREAKERS` are known, else ``other``."""
    if target in known or len(known) < MAX_BREAKERS:
        known.add(target)
        return target
    return "other"


class Metrics:
    """Every metric the daemon exports, on its own registry (two daemons in one process never mix)."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=registry)  # process_* : memory, CPU, open files
        prometheus_client.PlatformCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
        self.alerts_received = Counter(
            "kurative_alerts_received",
            "Alerts committed to the journal, by endpoint (alertmanager, prometheus) and alert status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.alerts_rejected = Counter(
            "kurative_alerts_rejected",
            "Requests to an alert endpoint answered with an error, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.matches = Counter(
            "kurative_playbook_matches",
            "Alerts a playbook matched, by playbook and what the journal made of it "
            "(created, deduplicated, rate_limited).",
            ["playbook", "outcome"],
            registry=registry,
        )
        self.executions = Counter(
            "kurative_executions",
            "Executions that ended in this process, by playbook and final state.",
            ["playbook", "outcome"],
            registry=registry,
        )
        self.executions_in_progress = Gauge(
            "kurative_executions_in_progress",
            "Executions this process is running now.",
            registry=registry,
        )
        self.executions_awaiting_approval = Gauge(
            "kurative_executions_awaiting_approval",
            "Executions waiting for an approval, in the whole journal (the same on every replica).",
            registry=registry,
        )
        self.executions_pending = Gauge(
            "kurative_executions_pending",
            "Executions waiting for a worker, in the whole journal (the same on every replica).",
            registry=registry,
        )
        self.step_duration = Histogram(
            "kurative_step_duration_seconds",
            "How long one attempt of one step took, by action and outcome.",
            ["action", "outcome"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "kurative_breaker_transitions",
            "Breaker state changes, by breaker and the state it changed to.",
            ["breaker", "state"],
            registry=registry,
        )
        self.reloads = Counter(
            "kurative_reloads",
            "Playbook reloads, by result (changed, unchanged, refused, failed).",
            ["result"],
            registry=registry,
        )
        self.journal_seconds = Histogram(
            "kurative_journal_operation_seconds",
            "How long journal calls took, by operation.",
            ["operation"],
            buckets=JOURNAL_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.journal_errors = Counter(
            "kurative_journal_errors",
            "Journal calls that failed, by operation and error (unavailable, conflict, error).",
            ["operation", "error"],
            registry=registry,
        )
        self.leases_lost = Counter(
            "kurative_lease_renewals_lost",
            "Executions whose lease this process lost before it finished them.",
            registry=registry,
        )
        for endpoint in ENDPOINTS:
            for status in ALERT_STATUSES:
                self.alerts_received.labels(endpoint, status)
            for reason in REJECT_REASONS:
                self.alerts_rejected.labels(endpoint, reason)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        self._scrape_time = _ScrapeTime()
        registry.register(self._scrape_time)
        self._breakers: set[str] = set()

    def observe(self, sources: Sources) -> None:
        """Read the scrape-time gauges from ``sources`` from now on."""
        self._scrape_time.sources = sources

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per label values: prometheus_client checks the
        values and takes a lock on every ``labels()``, and these are on every alert and step."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def breaker_changed(self, target: str, state: str) -> None:
        self.breaker_transitions.labels(breaker_label(target, self._breakers), state).inc()

    def journal_call(self, operation: str, started: float, error: BaseException | None) -> None:
        self.child(self.journal_seconds, operation).observe(time.perf_counter() - started)
        if error is not None:
            self.journal_errors.labels(operation, journal_error_kind(error)).inc()

    def render(self) -> bytes:
        """The text exposition format, as ``/metrics`` serves it."""
        return prometheus_client.generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every series name this registry exports, as a query names it (``_total``, ``_bucket``...),
        whether or not it has a sample yet."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        return {
            family.name + suffix
            for family in self.registry.collect()
            for suffix in suffixes.get(family.type, ("",))
        }


def journal_error_kind(error: BaseException) -> str:
    if isinstance(error, JournalUnavailable):
        return "unavailable"
    if isinstance(error, JournalConflict):
        return "conflict"
    return "error"
