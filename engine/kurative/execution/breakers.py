"""One circuit-breaker policy for every adapter target.

Each target kurative talks to has its own pybreaker breaker, named the same way everywhere (logs,
metrics, the REST API, :class:`~kurative.errors.BreakerOpen`):

- ``kubernetes/<cluster>`` — one Kubernetes API server;
- ``http/<host:port>`` — one webhook host;
- ``prometheus/<host:port>`` — one Prometheus server;
- ``journal`` — the journal database.

Thresholds come from the daemon config (``breakers: {failMax, resetTimeout, overrides}``). An override
applies to the target named exactly by its key; a key ending in ``/`` (``http/``, ``kubernetes/``)
applies to every target starting with it. An exact key wins over a prefix, a longer prefix over a
shorter one, and an override that leaves a threshold out keeps the default's. The host of an
``http/`` or ``prometheus/`` key is read as targets spell it (``http/Hooks.Slack.com:443`` and
``http/xn--mnchen-3ya.de:443`` apply to ``http/hooks.slack.com:443`` and ``http/münchen.de:443``); one
without a port is refused, as it would never apply.

What counts as a failure is the adapters' business: they run their calls through the breaker they are
handed (synchronously with ``CircuitBreaker.call``, asynchronously with
:func:`kurative.adapters.breaking.call_through`) and raise inside it only for refused connections,
timeouts and 5xx answers; a 4xx is the target working as it should. As a safety net the policy's
breakers also never count a :class:`~kurative.errors.PermanentActionError`. Every transition is logged
as ``breaker_state_changed`` with the target and the old and new state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pybreaker
import structlog

from kurative.adapters.breaking import seconds_to_half_open
from kurative.adapters.http import host_port
from kurative.errors import ConfigError, PermanentActionError

log = structlog.get_logger("kurative.execution.breakers")

TARGET_KINDS = ("kubernetes/", "http/", "prometheus/", "journal")
MAX_BREAKERS = 512
"""Breakers of webhook and Prometheus hosts kept beyond which the least recently used one that is
closed, has counted no failure and was not used for :data:`IDLE_BREAKER_SECONDS` is dropped (a
webhook URL built from alert labels may name a new host with every alert): such a breaker holds
nothing a new one would not. Breakers of the journal and of Kubernetes clusters (few, and held by
their adapters for good) and any breaker open, half-open, counting failures or in recent use stay."""
IDLE_BREAKER_SECONDS = 600.0
"""Longer than a call through a breaker lasts (a request's timeout), so that none is dropped under a
call that is still running."""
_HOST_KINDS = ("http/", "prometheus/")
"""Kinds whose targets are ``<host:port>``."""


@dataclass(frozen=True, slots=True)
class BreakerThresholds:
    """Thresholds of one override; ``None`` keeps the default's."""

    fail_max: int | None = None
    """Consecutive failures that open the breaker."""
    reset_timeout: float | None = None
    """Seconds an open breaker fails fast before it lets one trial call through."""


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The breaker policy, built by the config loader from ``breakers:`` (durations in seconds)."""

    fail_max: int = 5
    """Consecutive failures (refused, timed out, 5xx) that open a target's breaker."""
    reset_timeout: float = 30.0
    """Seconds an open breaker fails fast before it lets one trial call through (half-open)."""
    overrides: Mapping[str, BreakerThresholds] = field(default_factory=dict)
    """Target name (exact) or prefix ending in ``/`` -> thresholds replacing the defaults."""

    def __post_init__(self) -> None:
        problems = [f"failMax must be at least 1, got {self.fail_max}"] if self.fail_max < 1 else []
        if self.reset_timeout <= 0:
            problems.append(f"resetTimeout must be positive, got {self.reset_timeout}")
        overrides: dict[str, BreakerThresholds] = {}
        for key, thresholds in self.overrides.items():
            if not is_target(key) and not (key.endswith("/") and key.startswith(TARGET_KINDS)):
                problems.append(
                    f"overrides: {key!r} names no target: use an exact target (kubernetes/prod, "
                    "http/hooks.slack.com:443, journal) or a prefix ending in '/' (http/)"
                )
            target = key
            kind = next((kind for kind in _HOST_KINDS if key.startswith(kind)), None)
            if kind is not None and is_target(key) and not key.endswith("/"):
                host = host_port(key.removeprefix(kind))
                if host is None:
                    problems.append(
                        f"overrides: {key!r} names no target: give the host and its port "
                        f"({kind}hooks.slack.com:443, {kind}prometheus:9090)"
                    )
                else:
                    target = kind + host
            if target in overrides:
                problems.append(f"overrides: {key!r} names the same target as another key ({target})")
            overrides[target] = thresholds
            if thresholds.fail_max is not None and thresholds.fail_max < 1:
                problems.append(f"overrides.{key}.failMax must be at least 1, got {thresholds.fail_max}")
            if thresholds.reset_timeout is not None and thresholds.reset_timeout <= 0:
                problems.append(
                    f"overrides.{key}.resetTimeout must be positive, got {thresholds.reset_timeout}"
                )
        if problems:
            raise ConfigError("breakers: " + "; ".join(problems))
        object.__setattr__(self, "overrides", overrides)  # frozen: set once, as targets spell the keys

    def thresholds_for(self, target: str) -> tuple[int, float]:
        """(fail_max, reset_timeout) of ``target`` after the overrides."""
        fail_max, reset_timeout = self.fail_max, self.reset_timeout
        prefixes = sorted(
            (key for key in self.overrides if key.endswith("/") and target.startswith(key)), key=len
        )
        exact = [target] if target in self.overrides else []
        for key in (*prefixes, *exact):
            override = self.overrides[key]
            fail_max = override.fail_max if override.fail_max is not None else fail_max
            reset_timeout = override.reset_timeout if override.reset_timeout is not None else reset_timeout
        return fail_max, reset_timeout


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """One breaker as metrics and the REST API show it."""

    target: str
    state: str
    """``closed``, ``open`` or ``half-open``."""
    failures: int
    """Consecutive failures counted so far."""
    retry_after: float
    """Seconds until an open breaker lets the trial call through (0 unless open)."""


def is_target(name: str) -> bool:
    """Whether ``name`` is a target: ``journal`` or a kind prefix followed by a non-empty name."""
    if name == "journal":
        return True
    return any(name.startswith(kind) and len(name) > len(kind) for kind in TARGET_KINDS if kind != "journal")


def _state_name(state: Any) -> str:
    return str(getattr(state, "name", state))


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def __init__(self, changed: Callable[[str, str], None] | None) -> None:
        self._changed = changed

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old, new = _state_name(old_state), _state_name(new_state)
        level = log.warning if new == "open" else log.info
        level("breaker_state_changed", target=cb.name, old=old, new=new)
        if self._changed is not None:
            self._changed(str(cb.name), new)


def _is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentActionError)


class BreakerPolicy:
    """Breakers by target, made on first use with the thresholds the settings give the target."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        changed: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``changed(target, new_state)`` hears every transition (the metrics count them); ``clock``
        says when a breaker was last handed out."""
        self.settings = settings or BreakerSettings()
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._used: OrderedDict[str, float] = OrderedDict()
        """Breakers of hosts (http/, prometheus/) by when they were last handed out, least recent first."""
        self._lock = threading.Lock()
        self._listener = _LogTransitions(changed)
        self._clock = clock

    def for_target(self, name: str) -> pybreaker.CircuitBreaker:
        """The one breaker of ``name`` (``kubernetes/<cluster>``, ``http/<host:port>``, …)."""
        if not is_target(name):
            raise ConfigError(
                f"breaker target {name!r} is not one of kubernetes/<cluster>, http/<host:port>, "
                "prometheus/<host:port> or journal"
            )
        with self._lock:
            host = name.startswith(_HOST_KINDS)
            if host:
                self._used[name] = self._clock()
                self._used.move_to_end(name)
            found = self._breakers.get(name)
            if found is not None:
                return found
            fail_max, reset_timeout = self.settings.thresholds_for(name)
            found = self._breakers[name] = pybreaker.CircuitBreaker(
                fail_max=fail_max,
                reset_timeout=reset_timeout,
                exclude=[_is_permanent],
                listeners=[self._listener],
                name=name,
                throw_new_error_on_trip=False,  # the call that trips reports its own error
            )
            if host and len(self._used) > MAX_BREAKERS:
                self._drop_one_idle()
            return found

    def _drop_one_idle(self) -> None:
        idle_before = self._clock() - IDLE_BREAKER_SECONDS
        for target, used in self._used.items():
            if used > idle_before:
                return  # the rest were used later still
            breaker = self._breakers[target]
            if breaker.current_state == pybreaker.STATE_CLOSED and breaker.fail_counter == 0:
                del self._used[target]
                del self._breakers[target]
                return

    def snapshot(self) -> tuple[BreakerSnapshot, ...]:
        """Every breaker made so far, sorted by target."""
        with self._lock:
            breakers = sorted(self._breakers.items())
        return tuple(
            BreakerSnapshot(
                target=name,
                state=str(breaker.current_state),
                failures=int(breaker.fail_counter),
                retry_after=seconds_to_half_open(breaker),
            )
            for name, breaker in breakers
        )
