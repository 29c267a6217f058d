"""The HTTP adapter against a real local server: statuses, timeouts, refused ports, breakers, pools."""

from __future__ import annotations

import asyncio

import pytest

from kurative.adapters.breaking import seconds_to_half_open
from kurative.adapters.http import (
    HttpAdapter,
    HttpAnswer,
    HttpClientError,
    HttpRequestInvalid,
    HttpServerError,
    HttpSettings,
    HttpThrottled,
    HttpTimeout,
    HttpUnreachable,
)
from kurative.errors import BreakerOpen, PermanentActionError, TemporaryActionError
from kurative.execution.breakers import BreakerPolicy
from tests.support.http_sink import HttpSink, unused_port


async def test_sends_headers_and_json_and_reads_the_answer(http: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(201, json_body={"id": 7}, path="/hook")
    answer = await http.request(
        "POST", f"{sink.url}/hook", headers={"X-Team": "sre"}, json_body={"text": "restarted"}
    )
    assert answer.status == 201
    assert answer.is_json
    assert answer.json() == {"id": 7}
    (sent,) = sink.requests
    assert (sent.method, sent.path, sent.header("X-Team")) == ("POST", "/hook", "sre")
    assert sent.header("Content-Type") == "application/json"
    assert sent.header(
        "User-Agent",
    ).startswith("kurative/")  # type: ignore[union-attr]
    assert sent.json() == {"text": "restarted"}


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (503, HttpServerError, 7.0),
        (500, HttpServerError, None),
        (429, HttpThrottled, 7.0),
        (404, HttpClientError, None),
        (400, HttpClientError, None),
    ],
)
async def test_statuses_map_to_temporary_and_permanent_errors(
    http: HttpAdapter, sink: HttpSink, status: int, error: type[Exception], retry_after: float | None
) -> None:
    headers = {"Retry-After": "7"} if retry_after else {}
    sink.answer(status, "the body says why", headers=headers)
    answer = await http.request("GET", f"{sink.url}/x")
    failure = answer.failure()
    assert type(failure) is error
    assert f"GET {sink.url}/x: HTTP {status}: the body says why" == str(failure)
    assert getattr(failure, "retry_after", None) == retry_after
    assert isinstance(failure, TemporaryActionError) == (status == 429 or status >= 500)


async def test_a_long_body_is_cut_in_messages(http: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(500, "x" * 10_000)
    failure = (await http.request("GET", sink.url)).failure()
    assert len(str(failure)) < 500


async def test_a_big_answer_is_read_up_to_the_limit(policy: BreakerPolicy, sink: HttpSink) -> None:
    sink.answer(200, "y" * 5000)
    adapter = HttpAdapter(HttpSettings(max_response_bytes=1000))
    try:
        answer = await adapter.request("GET", sink.url)
    finally:
        await adapter.aclose()
    assert (len(answer.content), answer.truncated) == (1000, True)


async def test_a_hanging_host_times_out(http: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(hang=True)
    with pytest.raises(HttpTimeout, match=r"no answer within 0.2s"):
        await http.request("GET", sink.url, timeout=0.2)


async def test_a_slow_answer_within_the_timeout_arrives(http: HttpAdapter, sink: HttpSink) -> None:
    sink.answer(200, "late", delay=0.1)
    assert (await http.request("GET", sink.url, timeout=5.0)).text == "late"


async def test_a_refused_connection_is_temporary(http: HttpAdapter) -> None:
    with pytest.raises(HttpUnreachable, match="cannot connect"):
        await http.request("GET", f"http://127.0.0.1:{unused_port()}/")


async def test_a_name_that_does_not_resolve_is_temporary(http: HttpAdapter) -> None:
    with pytest.raises((HttpUnreachable, HttpTimeout)):
        await http.request("GET", "http://no-such-host.invalid/", timeout=3.0)


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://host/file", "/relative/path", "http://", "http://[::1/x"]
)
async def test_a_malformed_url_is_permanent(http: HttpAdapter, url: str) -> None:
    with pytest.raises(HttpRequestInvalid, match="URL"):
        await http.request("GET", url)


async def test_a_header_that_would_split_the_request_is_refused(http: HttpAdapter, sink: HttpSink) -> None:
    with pytest.raises(HttpRequestInvalid, match="line break"):
        await http.request("GET", sink.url, headers={"X-A": "a\r\nX-Injected: 1"})
    assert sink.requests == []


async def test_refused_connections_open_the_hosts_breaker_then_it_fails_fast(
    http: HttpAdapter, policy: BreakerPolicy
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/"
    for _ in range(3):
        with pytest.raises(HttpUnreachable):
            await http.request("GET", url)
    breaker = policy.for_target(http.target(url))
    assert breaker.current_state == "open"
    with pytest.raises(BreakerOpen) as caught:
        await http.request("GET", url)
    assert caught.value.target == http.target(url)
    assert caught.value.target.startswith("http/127.0.0.1:")


async def test_5xx_open_the_breaker_4xx_do_not_and_it_half_opens_after_the_reset(
    http: HttpAdapter, policy: BreakerPolicy, sink: HttpSink
) -> None:
    breaker = policy.for_target(http.target(sink.url))
    sink.answer(404, times=10)
    for _ in range(10):
        assert (await http.request("GET", sink.url)).status == 404
    sink.answer(429, times=5)
    for _ in range(5):
        assert (await http.request("GET", sink.url)).status == 429
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)

    sink.answer(503, times=3)
    for _ in range(3):
        assert (await http.request("GET", sink.url)).status == 503
    assert breaker.current_state == "open"
    sent = len(sink.requests)
    with pytest.raises(BreakerOpen):
        await http.request("GET", sink.url)
    assert len(sink.requests) == sent  # failing fast sends nothing

    while seconds_to_half_open(breaker) > 0:
        await asyncio.sleep(0.02)
    assert (await http.request("GET", sink.url)).status == 200  # the probe
    assert breaker.current_state == "closed"


async def test_each_host_has_its_own_breaker(
    http: HttpAdapter, policy: BreakerPolicy, sink: HttpSink
) -> None:
    down = f"http://127.0.0.1:{unused_port()}/"
    for _ in range(3):
        with pytest.raises(HttpUnreachable):
            await http.request("GET", down)
    assert (await http.request("GET", sink.url)).status == 200
    states = {snap.target: snap.state for snap in policy.snapshot()}
    assert states == {http.target(down): "open", http.target(sink.url): "closed"}


async def test_connections_per_host_are_bounded(sink: HttpSink) -> None:
    sink.answer(200, "ok", delay=0.05)
    adapter = HttpAdapter(HttpSettings(max_connections_per_host=2))
    try:
        answers = await asyncio.gather(*(adapter.request("GET", sink.url) for _ in range(6)))
    finally:
        await adapter.aclose()
    assert [a.status for a in answers] == [200] * 6
    assert sink.max_in_flight == 2


async def test_a_closed_adapter_refuses_new_requests(sink: HttpSink) -> None:
    adapter = HttpAdapter()
    await adapter.request("GET", sink.url)
    await adapter.aclose()
    with pytest.raises(TemporaryActionError, match="shutting down"):
        await adapter.request("GET", sink.url)


async def test_a_secret_url_is_never_named_in_errors(http: HttpAdapter) -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}/services/T000/B000/sekrit-token"
    with pytest.raises(HttpUnreachable) as caught:
        await http.request("POST", url, shown="<secret slack-webhook>")
    assert "sekrit-token" not in str(caught.value)
    assert str(caught.value).startswith("POST <secret slack-webhook>: cannot connect")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(PermanentActionError) as bad:
        await http.request("POST", "http://127.0.0.1:notaport/sekrit-token", shown="<secret slack-webhook>")
    assert "sekrit-token" not in str(bad.value)


async def test_a_compressed_answer_is_decoded(http: HttpAdapter, sink: HttpSink) -> None:
    import gzip

    sink.answer(
        200,
        gzip.compress(b'{"status": "success"}'),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert (await http.request("GET", sink.url)).json() == {"status": "success"}


async def _measured_get(sink: HttpSink, cap: int) -> tuple[HttpAnswer, int]:
    """One GET with ``max_response_bytes=cap``: the answer, and the peak of memory taken meanwhile."""
    import tracemalloc

    adapter = HttpAdapter(HttpSettings(max_response_bytes=cap))
    try:
        tracemalloc.start()
        answer = await adapter.request("GET", sink.url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await adapter.aclose()
    return answer, peak


async def test_stacked_encodings_are_not_inflated(sink: HttpSink) -> None:
    import gzip

    cap = 1024 * 1024
    bomb = gzip.compress(gzip.compress(b"\0" * (100 * cap), compresslevel=9), compresslevel=9)
    sink.answer(200, bomb, headers={"Content-Type": "text/plain", "Content-Encoding": "gzip, gzip"})
    answer, peak = await _measured_get(sink, cap)
    assert peak < 10 * cap
    assert (answer.status, answer.content, answer.truncated) == (200, b"", False)
    assert answer.text == (
        "<body not kept: Content-Encoding 'gzip, gzip' is stacked; only one gzip or deflate layer is read>"
    )
    assert "gzip, gzip" in str(answer.failure())
    assert sink.requests[0].header("Accept-Encoding") == "identity"


BODY = b'{"ok": true, "message": "' + b"x" * 2000 + b'"}'


async def test_gzip_members_are_read_one_after_another_and_a_stream_cut_short_is_truncated(
    sink: HttpSink,
) -> None:
    import gzip

    http = HttpAdapter()
    try:
        sink.answer(
            200, gzip.compress(BODY[:1000]) + gzip.compress(BODY[1000:]), headers={"Content-Encoding": "gzip"}
        )
        whole = await http.request("GET", sink.url)
        assert (whole.content, whole.truncated, whole.undecoded) == (BODY, False, "")
        packed = gzip.compress(BODY)
        sink.clear()
        sink.answer(200, packed[: len(packed) // 2], headers={"Content-Encoding": "gzip"})
        cut = await http.request("GET", sink.url)
        assert cut.truncated
        assert BODY.startswith(cut.content)
    finally:
        await http.aclose()


@pytest.mark.parametrize("wrapped", [True, False], ids=["zlib", "raw"])
async def test_deflate_is_told_from_its_first_bytes_however_the_chunks_fall(wrapped: bool) -> None:
    import zlib

    packer = zlib.compressobj(wbits=zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    packed = packer.compress(BODY) + packer.flush()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        for chunk in (packed[:1], packed[1:]):  # the first byte alone, in a read of its own
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    http = HttpAdapter()
    try:
        port = server.sockets[0].getsockname()[1]
        got = await http.request("GET", f"http://127.0.0.1:{port}/", timeout=5)
        assert (got.content, got.truncated, got.undecoded) == (BODY, False, "")
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_one_compressed_layer_is_inflated_up_to_the_limit(sink: HttpSink, encoding: str) -> None:
    import gzip
    import zlib

    cap = 1024 * 1024
    plain = b"\0" * (100 * cap)
    sink.answer(
        200,
        gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain),
        headers={"Content-Encoding": encoding},
    )
    answer, peak = await _measured_get(sink, cap)
    assert peak < 10 * cap
    assert (len(answer.content), answer.truncated) == (cap, True)


@pytest.mark.parametrize(("encoding", "why"), [("br", "is unknown"), ("gzip", "gzip stream is corrupt")])
async def test_a_body_that_cannot_be_decoded_is_not_kept(
    http: HttpAdapter, sink: HttpSink, encoding: str, why: str
) -> None:
    sink.answer(200, b"\x1f\x8bnot really compressed", headers={"Content-Encoding": encoding})
    answer = await http.request("GET", sink.url)
    assert (answer.status, answer.content) == (200, b"")
    assert why in answer.text


@pytest.mark.parametrize("charset", ["base64", "idna", "undefined", "punycode", "rot13"])
async def test_a_charset_that_is_no_text_codec_reads_as_utf8(
    http: HttpAdapter, sink: HttpSink, charset: str
) -> None:
    sink.answer(
        200,
        "né \xff".encode("latin-1") + b" ok",
        headers={"Content-Type": f"text/plain; charset={charset}"},
    )
    answer = await http.request("GET", sink.url)
    assert answer.text == "n\ufffd \ufffd ok"
    assert str(answer.failure("why")).endswith(": n\ufffd \ufffd ok")


@pytest.mark.parametrize("url", ["http://xn--/hook", "https://xn--abc-.example.com/hook"])
async def test_an_invalid_international_host_is_permanent(http: HttpAdapter, url: str) -> None:
    with pytest.raises(HttpRequestInvalid, match="not a valid URL"):
        await http.request("GET", url)
    with pytest.raises(HttpRequestInvalid, match="not a valid URL"):
        http.target(url)


async def _refused(adapter: HttpAdapter, count: int) -> None:
    """Requests to ``count`` new origins (ports nothing listens on): each makes a client."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(unused_port())
    for port in ports:
        with pytest.raises(HttpUnreachable):
            await adapter.request("GET", f"http://127.0.0.1:{port}/")


async def test_only_the_most_recently_used_clients_are_kept(sink: HttpSink) -> None:
    from kurative.adapters.http import MAX_CLIENTS

    adapter = HttpAdapter()
    try:
        assert (await adapter.request("GET", sink.url)).status == 200
        (first,) = adapter._pools.values()
        await _refused(adapter, MAX_CLIENTS)
        assert len(adapter._pools) == MAX_CLIENTS
        assert first.client.is_closed  # evicted and closed
        contexts = {id(pool.client._transport._pool._ssl_context) for pool in adapter._pools.values()}
        assert len(contexts) == 1  # one TLS context (one CA bundle loaded) for every client
        assert (await adapter.request("GET", sink.url)).status == 200  # a new client for it
    finally:
        await adapter.aclose()


async def test_a_client_evicted_while_in_use_finishes_its_request(sink: HttpSink) -> None:
    from kurative.adapters.http import MAX_CLIENTS

    sink.answer(200, "slow", delay=0.5, path="/slow")
    adapter = HttpAdapter()
    try:
        slow = asyncio.create_task(adapter.request("GET", f"{sink.url}/slow"))
        await asyncio.sleep(0.1)
        (pool,) = adapter._pools.values()
        await _refused(adapter, MAX_CLIENTS)
        assert pool.evicted
        assert not pool.client.is_closed
        assert (await slow).text == "slow"
        assert pool.client.is_closed
    finally:
        await adapter.aclose()
