"""Dedupe and limits in process: whether a planned execution may start, over an in-memory store.

Alertmanager re-sends a firing alert every ``repeat_interval``; that must not re-run a playbook. So each
execution is remembered under (playbook, dedupe key): by default the key is the alert's fingerprint and
``startsAt`` (one execution per firing episode); ``dedupe.key`` replaces the key (then the key, not the
episode, runs once: a later episode with the same key is a duplicate) and ``dedupe.window`` makes a key
free again once that long has passed since its run. ``limits`` cap the blast radius: at most ``max``
executions of the playbook per value of ``key`` within ``per``. Duplicates are decided first (a repeat
never counts against a limit); neither a duplicate nor a limited attempt is recorded, so a limited
attempt leaves its dedupe key free.

Every window is half-open, ``(now - length, now]``: a run exactly ``window`` or ``per`` ago no longer
counts. That is how the journal stores them (a key or a limit hit carries its expiry, and
expired means ``expires_at <= now``, which retention deletes), how Prometheus 3 range selectors count,
and it makes ``max: 1, per: 1h`` mean "one per hour" to the second: a run at 12:00 frees the next one
at 13:00, not a moment after.

This module is what ``kurative test`` runs (:class:`MemoryAdmissionStore`, one per test case; times
are plain seconds). The daemon does not use it: the journal enforces the same rules in SQL inside
``create_executions`` (unique keys, counts that concurrent creators take in turn) so that replicas
agree, once per backend. The three are held to one table of cases by
``tests/integration/journal/test_parity.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kurative.durations import format_duration
from kurative.matching.planning import LimitKey, Plan

Decision = Literal["run", "duplicate", "limited"]


class AdmissionStore(Protocol):
    """What admission needs to remember. Implementations must make ``record`` durable."""

    def last_started(self, playbook: str, dedupe_key: str) -> float | None:
        """When the last execution of ``playbook`` under ``dedupe_key`` started, or ``None``."""
        ...

    def count_started(self, playbook: str, limit: str, value: str, since: float) -> int:
        """How many executions of ``playbook`` with limit key ``limit`` = ``value`` started after
        ``since`` (one that started exactly at ``since`` has left the window)."""
        ...

    def record_started(
        self, playbook: str, dedupe_key: str, limits: Sequence[tuple[str, str]], at: float
    ) -> None:
        """Remember an execution that starts now."""
        ...


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict for one plan, with a sentence saying why."""

    decision: Decision
    reason: str
    dedupe_key: str

    @property
    def admitted(self) -> bool:
        return self.decision == "run"


def _window(seconds: float) -> str:
    return format_duration(seconds)


def check_dedupe(
    playbook: str, key: str, window: float | None, store: AdmissionStore, now: float
) -> str | None:
    """Why an execution under ``key`` would be a duplicate, or ``None`` when it is not."""
    last = store.last_started(playbook, key)
    if last is None:
        return None
    if window is None:
        return f"already ran for dedupe key {key!r}"
    if now - last < window:
        return f"already ran for dedupe key {key!r} {_window(now - last)} ago (window {_window(window)})"
    return None


def check_limits(playbook: str, limits: Sequence[LimitKey], store: AdmissionStore, now: float) -> str | None:
    """Why an execution would exceed one of ``limits``, or ``None`` when it fits all of them."""
    for limit in limits:
        count = store.count_started(playbook, limit.limit, limit.value, now - limit.per)
        if count >= limit.max:
            return (
                f"limit reached: {count} of {limit.max} executions per {_window(limit.per)} "
                f"for {limit.limit} = {limit.value!r}"
            )
    return None


def decide(plan: Plan, store: AdmissionStore, now: float) -> Admission:
    """Whether ``plan`` may start now; reads the store, changes nothing."""
    name = plan.playbook.name
    duplicate = check_dedupe(name, plan.dedupe_key, plan.dedupe_window, store, now)
    if duplicate is not None:
        return Admission("duplicate", duplicate, plan.dedupe_key)
    limited = check_limits(name, plan.limit_keys, store, now)
    if limited is not None:
        return Admission("limited", limited, plan.dedupe_key)
    return Admission("run", "new dedupe key; within limits", plan.dedupe_key)


def admit(plan: Plan, store: AdmissionStore, now: float) -> Admission:
    """:func:`decide`, and record the execution when it may start."""
    admission = decide(plan, store, now)
    if admission.admitted:
        store.record_started(
            plan.playbook.name, plan.dedupe_key, [(k.limit, k.value) for k in plan.limit_keys], now
        )
    return admission


@dataclass(slots=True)
class MemoryAdmissionStore:
    """An in-process :class:`AdmissionStore` (tests, ``kurative test``); forgets everything on exit."""

    _dedupe: dict[tuple[str, str], float] = field(default_factory=dict)
    _starts: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: defaultdict(list))

    def last_started(self, playbook: str, dedupe_key: str) -> float | None:
        return self._dedupe.get((playbook, dedupe_key))

    def count_started(self, playbook: str, limit: str, value: str, since: float) -> int:
        return sum(1 for at in self._starts.get((playbook, limit, value), ()) if at > since)

    def record_started(
        self, playbook: str, dedupe_key: str, limits: Sequence[tuple[str, str]], at: float
    ) -> None:
        self._dedupe[(playbook, dedupe_key)] = at
        for limit, value in limits:
            self._starts[(playbook, limit, value)].append(at)
