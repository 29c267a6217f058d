"""The breaker policy: one breaker per target, thresholds with overrides, and the async guard."""

from __future__ import annotations

import asyncio

import pybreaker
import pytest
from structlog.testing import capture_logs

from kurative.adapters.breaking import call_through, seconds_to_half_open
from kurative.errors import BreakerOpen, ConfigError, PermanentActionError, TemporaryActionError
from kurative.execution.breakers import (
    IDLE_BREAKER_SECONDS,
    MAX_BREAKERS,
    BreakerPolicy,
    BreakerSettings,
    BreakerThresholds,
)


async def failing() -> None:
    raise TemporaryActionError("HTTP 503")


async def refusing() -> None:
    raise PermanentActionError("HTTP 404")


async def working() -> str:
    return "ok"


async def wait_for_half_open(breaker: pybreaker.CircuitBreaker) -> None:
    while seconds_to_half_open(breaker) > 0:
        await asyncio.sleep(0.01)


def test_one_breaker_per_target() -> None:
    policy = BreakerPolicy()
    assert policy.for_target("http/a:80") is policy.for_target("http/a:80")
    assert policy.for_target("http/a:80") is not policy.for_target("http/b:80")
    assert policy.for_target("journal").name == "journal"


async def test_idle_breakers_beyond_the_bound_are_dropped_and_busy_ones_kept() -> None:
    """A webhook URL built from alert labels may name a new host with every alert: host breakers idle
    for long are dropped beyond the bound; failing, open, recently used and the journal's and clusters'
    (held by their adapters for good) stay."""
    now = [0.0]
    policy = BreakerPolicy(BreakerSettings(fail_max=2), clock=lambda: now[0])
    journal, cluster = policy.for_target("journal"), policy.for_target("kubernetes/prod")
    failing_host = policy.for_target("http/failing:80")
    with pytest.raises(TemporaryActionError):
        await call_through(failing_host, failing)  # one failure counted: kept
    opened = policy.for_target("http/open:80")
    for _ in range(2):
        with pytest.raises(TemporaryActionError):
            await call_through(opened, failing)
    for n in range(MAX_BREAKERS * 2):
        now[0] += IDLE_BREAKER_SECONDS / MAX_BREAKERS  # the first ones go idle as the last come
        policy.for_target(f"http/host-{n}:443")
    targets = {snap.target for snap in policy.snapshot()}
    assert {"journal", "kubernetes/prod", "http/failing:80", "http/open:80"} <= targets
    assert "http/host-0:443" not in targets
    assert f"http/host-{MAX_BREAKERS * 2 - 1}:443" in targets
    assert len([t for t in targets if t.startswith("http/host-")]) <= MAX_BREAKERS
    assert policy.for_target("journal") is journal
    assert policy.for_target("kubernetes/prod") is cluster
    assert policy.for_target("http/open:80") is opened
    # a breaker handed out within the idle time is never dropped, however many hosts come
    now[0] += IDLE_BREAKER_SECONDS * 10
    in_use = policy.for_target("http/slow:80")
    for n in range(MAX_BREAKERS * 2):
        policy.for_target(f"http/burst-{n}:443")
    assert policy.for_target("http/slow:80") is in_use


@pytest.mark.parametrize("name", ["", "http/", "http", "smtp/mail:25", "kubernetes"])
def test_a_target_that_is_none_of_the_kinds_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not one of kubernetes/<cluster>"):
        BreakerPolicy().for_target(name)


def test_overrides_exact_beats_prefix_and_longer_prefix_beats_shorter() -> None:
    settings = BreakerSettings(
        fail_max=5,
        reset_timeout=30.0,
        overrides={
            "http/": BreakerThresholds(fail_max=2),
            "http/slow:443": BreakerThresholds(reset_timeout=300.0),
            "kubernetes/": BreakerThresholds(fail_max=10, reset_timeout=5.0),
            "kubernetes/prod": BreakerThresholds(fail_max=3),
        },
    )
    assert settings.thresholds_for("http/hooks:443") == (2, 30.0)
    assert settings.thresholds_for("http/slow:443") == (2, 300.0)
    assert settings.thresholds_for("kubernetes/prod") == (3, 5.0)
    assert settings.thresholds_for("kubernetes/dev") == (10, 5.0)
    assert settings.thresholds_for("journal") == (5, 30.0)
    breaker = BreakerPolicy(settings).for_target("http/slow:443")
    assert (breaker.fail_max, breaker.reset_timeout) == (2, 300.0)


def test_bad_settings_say_what_to_fix() -> None:
    with pytest.raises(ConfigError, match="failMax must be at least 1, got 0"):
        BreakerSettings(fail_max=0)
    with pytest.raises(ConfigError, match=r"'http' names no target.*prefix ending in '/'"):
        BreakerSettings(overrides={"http": BreakerThresholds(fail_max=1)})


async def test_opens_after_fail_max_failures_then_fails_fast_with_the_time_left() -> None:
    policy = BreakerPolicy(BreakerSettings(fail_max=3, reset_timeout=60.0))
    breaker = policy.for_target("http/down:80")
    for _ in range(2):
        with pytest.raises(TemporaryActionError):
            await call_through(breaker, failing)
    assert breaker.current_state == "closed"
    assert policy.snapshot()[0].failures == 2
    with pytest.raises(TemporaryActionError):  # the call that trips reports its own error
        await call_through(breaker, failing)
    assert breaker.current_state == "open"

    ran: list[bool] = []

    async def probe() -> None:
        ran.append(True)

    with pytest.raises(BreakerOpen) as caught:
        await call_through(breaker, probe)
    assert ran == []
    assert caught.value.target == "http/down:80"
    assert 0 < caught.value.retry_after <= 60.0
    (snap,) = policy.snapshot()
    assert (snap.target, snap.state, snap.failures) == ("http/down:80", "open", 3)
    assert 0 < snap.retry_after <= 60.0


async def test_half_opens_after_the_reset_timeout_and_closes_on_a_good_probe() -> None:
    policy = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=0.05))
    breaker = policy.for_target("prometheus/p:9090")
    with capture_logs() as logs:
        with pytest.raises(TemporaryActionError):
            await call_through(breaker, failing)
        assert breaker.current_state == "open"
        await wait_for_half_open(breaker)
        assert await call_through(breaker, working) == "ok"
    assert breaker.current_state == "closed"
    transitions = [(e["target"], e["old"], e["new"]) for e in logs if e["event"] == "breaker_state_changed"]
    assert transitions == [
        ("prometheus/p:9090", "closed", "open"),
        ("prometheus/p:9090", "open", "half-open"),
        ("prometheus/p:9090", "half-open", "closed"),
    ]


async def test_a_failed_probe_opens_again() -> None:
    # the last call must come within the reset timeout of the failed probe, on a loaded machine too
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=1.0)).for_target("journal")
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    await wait_for_half_open(breaker)
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    assert breaker.current_state == "open"
    with pytest.raises(BreakerOpen):
        await call_through(breaker, working)


async def test_permanent_errors_do_not_count_and_a_success_resets_the_count() -> None:
    policy = BreakerPolicy(BreakerSettings(fail_max=2, reset_timeout=60.0))
    breaker = policy.for_target("http/h:80")
    for _ in range(5):
        with pytest.raises(PermanentActionError):
            await call_through(breaker, refusing)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    assert await call_through(breaker, working) == "ok"
    assert breaker.fail_counter == 0
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    assert breaker.current_state == "closed"


async def test_a_coroutine_is_awaited_before_its_outcome_counts() -> None:
    """pybreaker's own call() would count the unawaited coroutine as a success."""
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=60.0)).for_target("http/h:80")

    async def slow_failure() -> None:
        await asyncio.sleep(0)
        raise TemporaryActionError("timed out")

    with pytest.raises(TemporaryActionError):
        await call_through(breaker, slow_failure)
    assert breaker.current_state == "open"


async def test_a_cancelled_call_counts_as_nothing() -> None:
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=60.0)).for_target("http/h:80")
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(call_through(breaker, hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_the_kubernetes_adapter_takes_its_breakers_from_the_policy() -> None:
    from kubernetes import client as k8s_client

    from kurative.adapters.kubernetes import KubernetesAdapter

    policy = BreakerPolicy(BreakerSettings(fail_max=7))
    adapter = KubernetesAdapter(breakers=policy.for_target)
    try:
        made = adapter.add_client("prod", k8s_client.ApiClient(k8s_client.Configuration()))
        assert made.breaker is policy.for_target("kubernetes/prod")
        assert made.breaker is not None
        assert made.breaker.fail_max == 7
    finally:
        adapter.close()


async def test_half_open_lets_one_probe_through_at_a_time() -> None:
    """Regression: every call that arrived while the probe was in flight went through too, so a
    hanging target got one request per waiting execution, each failure counted against its step."""
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=0.05)).for_target("kubernetes/c")
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    await wait_for_half_open(breaker)
    release = asyncio.Event()
    reached: list[str] = []

    async def hanging() -> None:
        reached.append("probe")
        await release.wait()
        raise TemporaryActionError("did not answer")

    probe = asyncio.create_task(call_through(breaker, hanging))
    await asyncio.sleep(0.01)
    assert breaker.current_state == "half-open"
    with pytest.raises(BreakerOpen) as caught:
        await call_through(breaker, working)
    assert 0 < caught.value.retry_after <= 0.05
    assert reached == ["probe"]
    release.set()
    with pytest.raises(TemporaryActionError):
        await probe
    assert breaker.current_state == "open"
    await wait_for_half_open(breaker)
    assert await call_through(breaker, working) == "ok"  # the next probe, alone, closes it
    assert breaker.current_state == "closed"


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    breaker = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=0.05)).for_target("http/h:80")
    with pytest.raises(TemporaryActionError):
        await call_through(breaker, failing)
    await wait_for_half_open(breaker)
    probe = asyncio.create_task(call_through(breaker, asyncio.Event().wait))
    await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.current_state == "half-open"
    assert await call_through(breaker, working) == "ok"
    assert breaker.current_state == "closed"


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("http/Hooks.Slack.com:443", "https://hooks.slack.com/services/x"),
        ("http/xn--mnchen-3ya.de:443", "https://xn--mnchen-3ya.de/hook"),
        ("http/München.de:443", "https://münchen.de/hook"),
        ("prometheus/Prometheus:9090", "http://prometheus:9090"),
    ],
)
def test_an_override_key_applies_to_its_host_as_targets_spell_it(key: str, url: str) -> None:
    from kurative.adapters.http import HttpAdapter

    kind = key.partition("/")[0]
    target = HttpAdapter(kind=kind).target(url)
    settings = BreakerSettings(overrides={key: BreakerThresholds(fail_max=1)})
    assert settings.thresholds_for(target) == (1, 30.0)
    assert BreakerPolicy(settings).for_target(target).fail_max == 1


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["http/hooks.slack.com"], r"'http/hooks.slack.com' names no target: give the host and its port"),
        (["prometheus/prom:99999"], r"'prometheus/prom:99999' names no target"),
        (["http/h.example.com:443/path"], r"names no target"),
        (["http/H:443", "http/h:443"], r"'http/h:443' names the same target as another key \(http/h:443\)"),
    ],
)
def test_an_override_key_that_could_never_apply_is_refused(overrides: list[str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        BreakerSettings(overrides={key: BreakerThresholds(fail_max=1) for key in overrides})
