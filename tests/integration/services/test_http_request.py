"""``http.request`` end to end: the action, the HTTP adapter, the secret store and a real sink."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from kurative.actions.base import ActionContext, ActionSpec
from kurative.actions.registry import get_action
from kurative.adapters.http import HttpAdapter, HttpSettings
from kurative.adapters.secrets import EnvSecret, SecretSettings, SecretStore
from kurative.errors import KurativeError, PermanentActionError, TemporaryActionError
from tests.support.http_sink import HttpSink, http_sink, unused_port

TOKEN = "T0KEN-sekrit-4f9a2b"
API_KEY = "apikey-sekrit-77c1"


def spec() -> ActionSpec:
    found = get_action("http.request")
    assert found is not None
    return found


def secret_store(sink_url: str) -> SecretStore:
    return SecretStore(
        SecretSettings({"slack-webhook": EnvSecret("SLACK_URL"), "api-key": EnvSecret("API_KEY")}),
        environ={"SLACK_URL": f"{sink_url}/services/{TOKEN}", "API_KEY": API_KEY},
    )


def context(http: Any, sink: HttpSink, *, attempt: int = 1, dry_run: bool = False) -> ActionContext:
    return ActionContext(
        execution_id="exec-42",
        step="tell-the-team",
        attempt=attempt,
        dry_run=dry_run,
        services={"http": http, "secrets": secret_store(sink.url)},
    )


@pytest.fixture
async def adapter() -> AsyncIterator[HttpAdapter]:
    made = HttpAdapter(HttpSettings(timeout=5.0))
    try:
        yield made
    finally:
        await made.aclose()


async def run(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await spec().run(ctx, params)


async def test_posts_json_with_an_idempotency_key_that_repeats_with_the_step(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    sink.answer(200, json_body={"ok": True, "ts": "1.2"})
    params = {"url": f"{sink.url}/hook", "json": {"text": "restarted web"}}
    first = await run(context(adapter, sink), params)
    again = await run(context(adapter, sink, attempt=2), params)
    assert first == again == {"status": 200, "body": {"ok": True, "ts": "1.2"}}
    keys = [r.idempotency_key for r in sink.requests]
    assert keys == ["exec-42/tell-the-team", "exec-42/tell-the-team"]
    assert [r.method for r in sink.requests] == ["POST", "POST"]  # POST is the default
    assert sink.requests[0].json() == {"text": "restarted web"}


async def test_a_playbook_cannot_replace_the_idempotency_key(adapter: HttpAdapter, sink: HttpSink) -> None:
    params = {"url": sink.url, "method": "PUT", "headers": {"idempotency-key": "mine"}, "body": "x"}
    await run(context(adapter, sink), params)
    (sent,) = sink.requests
    assert sent.idempotency_key == "exec-42/tell-the-team"
    assert sent.body == b"x"
    assert sent.header("Content-Type") == "text/plain; charset=utf-8"


async def test_a_text_answer_is_kept_as_truncated_text(adapter: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(200, "z" * 40_000, headers={"Content-Type": "text/plain"})
    output = await run(context(adapter, sink), {"url": sink.url, "method": "GET"})
    assert output["status"] == 200
    assert output["body"] == "z" * 16_384


async def test_secrets_are_sent_but_never_shown(adapter: HttpAdapter, sink: HttpSink) -> None:
    sink.echo()
    params = {
        "url": {"secretRef": "slack-webhook"},
        "headers": {"Authorization": {"secretRef": "api-key"}},
        "json": {"text": "hi"},
    }
    with capture_logs() as logs:
        output = await run(context(adapter, sink), params)
    (sent,) = sink.requests
    assert sent.path == f"/services/{TOKEN}"
    assert sent.header("Authorization") == API_KEY
    echoed = output["body"]
    assert echoed["path"] == "<secret slack-webhook>"
    assert echoed["headers"]["Authorization"] == "<secret api-key>"
    for text in (json.dumps(output), repr(logs)):
        assert TOKEN not in text
        assert API_KEY not in text


async def test_a_secret_in_the_json_body_is_sent_but_never_shown(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    """PagerDuty's Events API takes its routing key in the body."""
    sink.echo()
    params = {
        "url": f"{sink.url}/v2/enqueue",
        "json": {"routing_key": {"secretRef": "api-key"}, "payload": {"keys": [{"secretRef": "api-key"}, 1]}},
    }
    with capture_logs() as logs:
        output = await run(context(adapter, sink), params)
    (sent,) = sink.requests
    assert json.loads(sent.body) == {"routing_key": API_KEY, "payload": {"keys": [API_KEY, 1]}}
    assert params["json"]["routing_key"] == {"secretRef": "api-key"}  # what the journal keeps
    for text in (json.dumps(output), repr(logs)):
        assert API_KEY not in text
    with pytest.raises(PermanentActionError, match=r"json\.routing_key must be a string or \{secretRef"):
        await run(context(adapter, sink), {"url": sink.url, "json": {"routing_key": {"secretRef": 7}}})


async def test_errors_never_show_a_secret_url_or_header(adapter: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(500, f"upstream rejected key {API_KEY} for /services/{TOKEN}")
    params = {"url": {"secretRef": "slack-webhook"}, "headers": {"X-Key": {"secretRef": "api-key"}}}
    with capture_logs() as logs, pytest.raises(TemporaryActionError) as caught:
        await run(context(adapter, sink), params)
    message = str(caught.value)
    assert message.startswith("POST <secret slack-webhook>: HTTP 500, expected 2xx: upstream rejected key")
    assert "<secret api-key>" in message
    for text in (message, repr(logs), repr(caught.value.__context__), repr(caught.value.__cause__)):
        assert TOKEN not in text
        assert API_KEY not in text


async def test_a_query_value_of_a_secret_url_is_scrubbed_when_echoed_alone(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    key = "k3y/with+odd&chars"
    quoted = "k3y%2Fwith%2Bodd%26chars"
    store = SecretStore(
        SecretSettings({"hook": EnvSecret("HOOK_URL")}),
        environ={"HOOK_URL": f"{sink.url}/hook?v=1&key={quoted}"},
    )
    ctx = ActionContext("exec-43", "notify", 1, False, services={"http": adapter, "secrets": store})
    sink.answer(500, json.dumps({"error": f"bad key {key}", "raw": f"key={quoted}"}))
    with capture_logs() as logs, pytest.raises(TemporaryActionError) as caught:
        await run(ctx, {"url": {"secretRef": "hook"}})
    for text in (str(caught.value), repr(logs)):
        assert key not in text
        assert quoted not in text
    assert "<secret hook>" in str(caught.value)


async def test_a_secret_quoted_back_json_escaped_or_percent_encoded_is_scrubbed(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    value = 'hdr"sekrit\\é/+x'
    store = SecretStore(
        SecretSettings({"hook": EnvSecret("HOOK_URL"), "key": EnvSecret("KEY")}),
        environ={"HOOK_URL": f"{sink.url}/hook", "KEY": value},
    )
    ctx = ActionContext("exec-44", "notify", 1, False, services={"http": adapter, "secrets": store})
    forms = [json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], urllib.parse.quote(value)]
    sink.answer(500, json.dumps({"you sent": value, "as": forms[2]}))
    with capture_logs() as logs, pytest.raises(TemporaryActionError) as caught:
        await run(ctx, {"url": {"secretRef": "hook"}, "headers": {"X-Key": {"secretRef": "key"}}})
    for text in (str(caught.value), repr(logs)):
        for form in [value, *forms]:
            assert form not in text
    assert str(caught.value).count("<secret key>") == 2


async def test_the_basic_credentials_of_a_secret_url_are_scrubbed_when_echoed(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    password = "hookpw-T5r4e3w2q1"
    store = SecretStore(
        SecretSettings({"broken-webhook": EnvSecret("HOOK_URL")}),
        environ={"HOOK_URL": sink.url.replace("http://", f"http://hook:{password}@") + "/hook"},
    )
    ctx = ActionContext("exec-45", "notify", 1, False, services={"http": adapter, "secrets": store})
    sink.echo()
    output = await run(ctx, {"url": {"secretRef": "broken-webhook"}})
    (sent,) = sink.requests
    basic = base64.b64encode(f"hook:{password}".encode()).decode()
    assert sent.header("Authorization") == f"Basic {basic}"
    shown = json.dumps(output)
    assert basic not in shown
    assert password not in shown
    assert output["body"]["headers"]["Authorization"] == "Basic <secret broken-webhook>"
    assert output["body"]["path"] == "<secret broken-webhook>"  # not "<secret broken-web<secret ...>>"


async def test_a_refused_secret_url_is_shown_by_name(adapter: HttpAdapter, sink: HttpSink) -> None:
    store = SecretStore(
        SecretSettings({"slack-webhook": EnvSecret("U")}),
        environ={"U": f"http://127.0.0.1:{unused_port()}/services/{TOKEN}"},
    )
    ctx = ActionContext("exec-42", "tell", services={"http": adapter, "secrets": store})
    with pytest.raises(TemporaryActionError) as caught:
        await run(ctx, {"url": {"secretRef": "slack-webhook"}})
    assert str(caught.value).startswith("POST <secret slack-webhook>: cannot connect")
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "expect_status", "outcome"),
    [
        (404, 404, 404),
        (204, None, 204),
        (409, [200, 409], 409),
        (404, None, PermanentActionError),
        (200, 201, PermanentActionError),
        (302, None, PermanentActionError),
        (503, None, TemporaryActionError),
        (503, 200, TemporaryActionError),
    ],
)
async def test_expect_status(
    adapter: HttpAdapter, sink: HttpSink, status: int, expect_status: Any, outcome: Any
) -> None:
    sink.answer(status, headers={"Retry-After": "3"} if status == 503 else {})
    params: dict[str, Any] = {"url": sink.url}
    if expect_status is not None:
        params["expect_status"] = expect_status
    if isinstance(outcome, int):
        assert (await run(context(adapter, sink), params))["status"] == outcome
        return
    with pytest.raises(outcome) as caught:
        await run(context(adapter, sink), params)
    assert f"HTTP {status}, expected " in str(caught.value)
    if status == 503:
        assert caught.value.retry_after == 3.0


async def test_a_missing_secret_names_the_reference(adapter: HttpAdapter, sink: HttpSink) -> None:
    with pytest.raises(PermanentActionError, match=r"secretRef 'pagerduty' is not configured"):
        await run(context(adapter, sink), {"url": {"secretRef": "pagerduty"}})
    assert sink.requests == []


async def test_dry_run_sends_nothing(adapter: HttpAdapter, sink: HttpSink) -> None:
    assert not spec().dry_run
    with pytest.raises(PermanentActionError, match="does not support dry run"):
        await run(context(adapter, sink, dry_run=True), {"url": sink.url})
    assert sink.requests == []


async def test_a_timeout_is_temporary(adapter: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(hang=True)
    with pytest.raises(TemporaryActionError, match=r"no answer within 0\.2s"):
        await run(context(adapter, sink), {"url": sink.url, "timeout": "200ms"})


LONG_KEY = "Zq8vR2mN5tX1wK7pL4sB9cD3fG6hJ0yA"  # an API token: long, in one piece


def long_key_store(**values: str) -> SecretStore:
    return SecretStore(
        SecretSettings({name: EnvSecret(name.upper()) for name in values}),
        environ={name.upper(): value for name, value in values.items()},
    )


def with_secrets(http: Any, secrets: SecretStore) -> ActionContext:
    return ActionContext("exec-42", "tell-the-team", services={"http": http, "secrets": secrets})


def leaked_part(text: str, secret: str) -> str | None:
    """The longest start of ``secret`` (8 characters or more) that ``text`` holds."""
    return next((secret[:n] for n in range(len(secret), 7, -1) if secret[:n] in text), None)


async def test_a_secret_quoted_back_across_the_message_cut_leaves_no_part(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    sink.answer(401, "x" * 365 + f" invalid token {LONG_KEY}", headers={"Content-Type": "text/plain"})
    params = {"url": f"{sink.url}/api", "headers": {"Authorization": {"secretRef": "api"}}}
    with pytest.raises(PermanentActionError) as caught:
        await run(with_secrets(adapter, long_key_store(api=LONG_KEY)), params)
    assert leaked_part(str(caught.value), LONG_KEY) is None
    assert str(caught.value).endswith("invalid token <secret api>")


async def test_a_secret_quoted_back_across_the_output_cut_leaves_no_part(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    sink.answer(200, "y" * (16_384 - 16) + LONG_KEY, headers={"Content-Type": "text/plain"})
    params = {"url": f"{sink.url}/api", "headers": {"Authorization": {"secretRef": "api"}}}
    output = await run(with_secrets(adapter, long_key_store(api=LONG_KEY)), params)
    assert leaked_part(output["body"], LONG_KEY) is None
    assert output["body"].endswith("y<secret api>")


async def test_json_nested_too_deeply_is_kept_as_text(adapter: HttpAdapter, sink: HttpSink) -> None:
    deep = "[" * 5000 + "]" * 5000
    sink.answer(200, deep, headers={"Content-Type": "application/json"})
    output = await run(context(adapter, sink), {"url": sink.url})
    assert output == {"status": 200, "body": deep}


async def test_a_body_in_stacked_encodings_is_not_kept(adapter: HttpAdapter, sink: HttpSink) -> None:
    import gzip

    sink.answer(200, gzip.compress(gzip.compress(b"{}")), headers={"Content-Encoding": "gzip, gzip"})
    output = await run(context(adapter, sink), {"url": sink.url})
    assert output["body"].startswith("<body not kept: Content-Encoding 'gzip, gzip' is stacked")


async def test_the_token_segment_of_a_secret_url_is_scrubbed_when_echoed_alone(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    hook = f"{sink.url}/services/T0AAAAAA/B0BBBBBB/{LONG_KEY}"
    sink.answer(
        404, f"no webhook with token {LONG_KEY} (team T0AAAAAA)", headers={"Content-Type": "text/plain"}
    )
    with pytest.raises(PermanentActionError) as caught:
        await run(with_secrets(adapter, long_key_store(hook=hook)), {"url": {"secretRef": "hook"}})
    assert str(caught.value).endswith("no webhook with token <secret hook> (team T0AAAAAA)")


async def test_a_numeric_secret_quoted_back_as_a_json_number_is_scrubbed(
    adapter: HttpAdapter, sink: HttpSink
) -> None:
    account = "84736251907364"
    sink.answer(
        200, json_body={"account": int(account), "balance": 12.5, "float": float(account), "ok": True}
    )
    params = {"url": sink.url, "headers": {"X-Account": {"secretRef": "acct"}}}
    output = await run(with_secrets(adapter, long_key_store(acct=account)), params)
    assert output["body"] == {
        "account": "<secret acct>",
        "balance": 12.5,
        "float": "<secret acct>",
        "ok": True,
    }


async def test_a_step_deadline_shorter_than_the_timeout_fails_the_request_first(sink: HttpSink) -> None:
    from kurative.adapters.http import HttpTimeout
    from kurative.execution.breakers import BreakerPolicy, BreakerSettings

    sink.answer(hang=True)
    policy = BreakerPolicy(BreakerSettings(fail_max=2))
    adapter = HttpAdapter(HttpSettings(timeout=10.0), breakers=policy.for_target)
    try:
        for _ in range(2):  # as the runner runs a step with timeout: 300ms
            ends = asyncio.get_running_loop().time() + 0.3
            ctx = replace(context(adapter, sink), deadline=ends)
            with pytest.raises(HttpTimeout, match=r"no answer within 0\.\d+s"):
                async with asyncio.timeout_at(ends):
                    await run(ctx, {"url": sink.url})  # its timeout: 10s by default
    finally:
        await adapter.aclose()
    assert [(s.state, s.failures) for s in policy.snapshot()] == [("open", 2)]


# --- hostile params: a result or one of our errors, never anything else ---------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SECRET_REF = st.fixed_dictionaries({"secretRef": st.sampled_from(["slack-webhook", "api-key", "nope"])})


def urls(base: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda p: f"{base}/{p}", st.text(max_size=30)),
        st.text(max_size=40),
        st.sampled_from(["http://", "ftp://x/", "http://[::1", "http://127.0.0.1:0/", "//x", "http://a b/"]),
        SECRET_REF,
        JSONISH,
    )


def hostile_params(base: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"url": urls(base)},
        optional={
            "method": st.one_of(st.sampled_from(["GET", "POST", "DELETE"]), st.text(max_size=10), JSONISH),
            "headers": st.one_of(
                st.dictionaries(
                    st.text(max_size=12), st.one_of(st.text(max_size=30), SECRET_REF), max_size=3
                ),
                JSONISH,
            ),
            "json": JSONISH,
            "body": st.one_of(st.text(max_size=50), JSONISH),
            "timeout": st.one_of(st.sampled_from(["1s", "0s", "500ms", "2h"]), st.text(max_size=6)),
            "expect_status": st.one_of(st.integers(), st.lists(st.integers(), max_size=3), JSONISH),
            "extra": JSONISH,
        },
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_params_give_a_result_or_a_kurative_error(data: st.DataObject) -> None:
    with http_sink() as sink:
        sink.answer(200, json_body={"ok": True})
        params = data.draw(hostile_params(sink.url))

        async def attempt() -> None:
            adapter = HttpAdapter(HttpSettings(timeout=2.0, connect_timeout=1.0))
            failed: KurativeError | None = None
            try:
                output = await run(context(adapter, sink), params)
            except KurativeError as error:
                failed, output = error, {}
            finally:
                await adapter.aclose()
            if failed is not None:
                assert TOKEN not in str(failed)
                assert API_KEY not in str(failed)
                return
            assert set(output) == {"status", "body"}
            assert TOKEN not in json.dumps(output)

        asyncio.run(attempt())
