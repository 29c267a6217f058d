"""``prometheus.query`` against a real Prometheus (Debian's package), and its failure modes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kurative.actions.base import ActionContext, ActionSpec
from kurative.actions.registry import get_action
from kurative.adapters.prometheus import PrometheusAdapter, PrometheusSettings
from kurative.adapters.secrets import EnvSecret, SecretSettings, SecretStore
from kurative.errors import (
    BreakerOpen,
    ExpectationFailed,
    PermanentActionError,
    TemporaryActionError,
)
from kurative.execution.breakers import BreakerPolicy
from tests.support.http_sink import HttpSink, unused_port
from tests.support.prometheus import PrometheusServer


def spec() -> ActionSpec:
    found = get_action("prometheus.query")
    assert found is not None
    return found


@pytest.fixture
async def prometheus(
    prometheus_server: PrometheusServer, policy: BreakerPolicy
) -> AsyncIterator[PrometheusAdapter]:
    adapter = PrometheusAdapter(PrometheusSettings(url=prometheus_server.url), breakers=policy.for_target)
    try:
        yield adapter
    finally:
        await adapter.aclose()


def context(prometheus: PrometheusAdapter, **secrets: str) -> ActionContext:
    store = SecretStore(
        SecretSettings({name: EnvSecret(name.upper()) for name in secrets}),
        environ={name.upper(): value for name, value in secrets.items()},
    )
    return ActionContext("exec-7", "verify", services={"prometheus": prometheus, "secrets": store})


async def run(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await spec().run(ctx, params)


async def test_an_instant_query_returns_the_vector(prometheus: PrometheusAdapter) -> None:
    output = await run(context(prometheus), {"query": "vector(1)"})
    assert output["ok"] is True
    (sample,) = output["result"]
    assert sample["metric"] == {}
    assert sample["value"][1] == "1"


async def test_expect_holds_on_a_real_series(
    prometheus: PrometheusAdapter, prometheus_server: PrometheusServer
) -> None:
    prometheus_server.wait_for_series('up{job="prometheus"}')
    output = await run(
        context(prometheus), {"query": 'up{job="prometheus"}', "expect": "[0].value[1] == '1'"}
    )
    assert output["ok"] is True
    assert output["result"][0]["metric"]["job"] == "prometheus"


async def test_a_false_expect_fails_the_step_with_the_result(prometheus: PrometheusAdapter) -> None:
    with pytest.raises(ExpectationFailed) as caught:
        await run(context(prometheus), {"query": "vector(1)", "expect": "length(@) == `0`"})
    error = caught.value
    assert error.temporary  # a step retry polls until the remediation shows in the metrics
    assert error.output["ok"] is False
    assert error.output["result"][0]["value"][1] == "1"
    assert str(error).startswith("prometheus.query: expect `length(@) == `0`` is false for `vector(1)`")
    assert '"value":[' in str(error)


async def test_a_long_result_is_cut_in_the_message(prometheus: PrometheusAdapter) -> None:
    query = " or ".join(f'label_replace(vector(1), "n", "{i}", "", "")' for i in range(40))
    with pytest.raises(ExpectationFailed) as caught:
        await run(context(prometheus), {"query": query, "expect": "length(@) == `3`"})
    assert len(caught.value.output["result"]) == 40
    assert str(caught.value).endswith("…")
    assert len(str(caught.value)) < 400 + len(query) + 200


async def test_a_query_that_does_not_parse_is_permanent(prometheus: PrometheusAdapter) -> None:
    with pytest.raises(PermanentActionError, match=r"bad_data: .*\(query `sum\(`\)"):
        await run(context(prometheus), {"query": "sum("})


async def test_an_expect_that_is_not_jmespath_is_permanent(prometheus: PrometheusAdapter) -> None:
    with pytest.raises(PermanentActionError, match=r"expect `\[0` is not valid JMESPath"):
        await run(context(prometheus), {"query": "vector(1)", "expect": "[0"})


async def test_the_step_url_overrides_the_configured_one(
    prometheus_server: PrometheusServer, policy: BreakerPolicy
) -> None:
    adapter = PrometheusAdapter(
        PrometheusSettings(url=f"http://127.0.0.1:{unused_port()}"), breakers=policy.for_target
    )
    try:
        with pytest.raises(TemporaryActionError, match="cannot connect"):
            await run(context(adapter), {"query": "vector(1)"})
        output = await run(context(adapter), {"query": "vector(2)", "url": prometheus_server.url})
        assert output["result"][0]["value"][1] == "2"
        secret = await run(
            context(adapter, prom=prometheus_server.url), {"query": "vector(3)", "url": {"secretRef": "prom"}}
        )
        assert secret["result"][0]["value"][1] == "3"
    finally:
        await adapter.aclose()


async def test_without_any_url_it_says_what_to_configure() -> None:
    adapter = PrometheusAdapter()
    try:
        with pytest.raises(PermanentActionError, match=r"set prometheus\.url in the daemon config"):
            await run(context(adapter), {"query": "vector(1)"})
    finally:
        await adapter.aclose()


async def test_a_down_prometheus_opens_its_own_breaker(policy: BreakerPolicy) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    adapter = PrometheusAdapter(PrometheusSettings(url=url), breakers=policy.for_target)
    try:
        for _ in range(3):
            with pytest.raises(TemporaryActionError):
                await run(context(adapter), {"query": "up"})
        with pytest.raises(BreakerOpen) as caught:
            await run(context(adapter), {"query": "up"})
    finally:
        await adapter.aclose()
    assert caught.value.target == adapter.target() == f"prometheus/{url.removeprefix('http://')}"
    assert {s.target: s.state for s in policy.snapshot()} == {adapter.target(): "open"}


async def test_something_that_is_not_prometheus_is_permanent(sink: HttpSink) -> None:
    sink.answer(200, "<html>Grafana</html>", headers={"Content-Type": "text/html"})
    adapter = PrometheusAdapter(PrometheusSettings(url=sink.url))
    try:
        with pytest.raises(PermanentActionError, match="not the Prometheus HTTP API"):
            await run(context(adapter), {"query": "up"})
    finally:
        await adapter.aclose()
    assert sink.requests[0].path.startswith("/api/v1/query?query=up")


async def test_an_unavailable_prometheus_is_temporary(sink: HttpSink) -> None:
    sink.answer(
        503,
        json_body={"status": "error", "errorType": "unavailable", "error": "TSDB not ready"},
        headers={"Retry-After": "2"},
    )
    adapter = PrometheusAdapter(PrometheusSettings(url=sink.url))
    try:
        with pytest.raises(TemporaryActionError, match="unavailable: TSDB not ready") as caught:
            await run(context(adapter), {"query": "up"})
    finally:
        await adapter.aclose()
    assert caught.value.retry_after == 2.0


async def test_a_secret_prometheus_url_is_never_shown(sink: HttpSink) -> None:
    sink.answer(500, "boom")
    adapter = PrometheusAdapter()
    hidden = f"{sink.url}/tenant-sekrit-9"
    try:
        with pytest.raises(TemporaryActionError) as caught:
            await run(context(adapter, prom=hidden), {"query": "up", "url": {"secretRef": "prom"}})
    finally:
        await adapter.aclose()
    assert "tenant-sekrit-9" not in str(caught.value)
    assert "<secret prom>" in str(caught.value)


async def sink_query(sink: HttpSink, answer: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
    sink.answer(200, answer, headers={"Content-Type": "application/json"})
    adapter = PrometheusAdapter(PrometheusSettings(url=sink.url))
    try:
        return await run(context(adapter), params)
    finally:
        await adapter.aclose()


async def test_a_result_nested_too_deeply_is_permanent(sink: HttpSink) -> None:
    deep = "[" * 5000 + "]" * 5000
    answer = '{"status":"success","data":{"resultType":"vector","result":' + deep + "}}"
    with pytest.raises(PermanentActionError, match="not the Prometheus HTTP API"):
        await sink_query(sink, answer, {"query": "up", "expect": "length(@) == `0`"})


async def test_an_expect_that_overflows_on_the_result_is_permanent(sink: HttpSink) -> None:
    answer = '{"status":"success","data":{"resultType":"scalar","result":[1700000000, 1e999]}}'
    with pytest.raises(PermanentActionError, match=r"expect `ceil\(@\[1\]\) > `0`` cannot be evaluated"):
        await sink_query(sink, answer, {"query": "x", "expect": "ceil(@[1]) > `0`"})


@pytest.mark.parametrize("data", ["[1, 2]", '"vector"', "7", "null"])
async def test_an_answer_whose_data_is_no_object_is_permanent(sink: HttpSink, data: str) -> None:
    with pytest.raises(PermanentActionError, match="the answer's data is not an object"):
        await sink_query(sink, '{"status":"success","data":' + data + "}", {"query": "up"})


async def test_an_invalid_international_host_is_permanent() -> None:
    adapter = PrometheusAdapter()
    try:
        with pytest.raises(PermanentActionError, match="not a valid URL"):
            await run(context(adapter), {"query": "up", "url": "http://xn--:9090"})
    finally:
        await adapter.aclose()


async def test_the_credentials_of_the_configured_url_are_never_shown() -> None:
    port = unused_port()
    adapter = PrometheusAdapter(PrometheusSettings(url=f"http://admin:Pr0m-pa55word@127.0.0.1:{port}"))
    try:
        with pytest.raises(TemporaryActionError) as caught:
            await run(context(adapter), {"query": "up", "timeout": "2s"})
    finally:
        await adapter.aclose()
    assert "Pr0m-pa55word" not in str(caught.value)
    assert str(caught.value).startswith(f"GET http://127.0.0.1:{port}/api/v1/query: cannot connect")
