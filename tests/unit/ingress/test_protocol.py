"""The bounded httptools protocol, driven byte by byte through uvicorn's own machinery.

These tests build the protocol exactly as uvicorn's server does (a loaded ``Config``, a
``ServerState``) on a transport that records what is written, so they fail when a uvicorn release
changes the hooks :mod:`kurative.ingress.protocol` relies on (then re-check it and the pin in
pyproject.toml).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from kurative.ingress.protocol import MAX_PIPELINED, BoundedHttpToolsProtocol, bounded_protocol

pytestmark = pytest.mark.timeout(30)

LIMIT = 1024


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 9095)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"got %d" % len(body)
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def _protocol() -> tuple[BoundedHttpToolsProtocol, Transport]:
    protocol_class = bounded_protocol(LIMIT)
    config = uvicorn.Config(_app, http=protocol_class, lifespan="off", log_config=None, server_header=False)
    config.load()
    assert config.http_protocol_class is protocol_class
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def _request(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n" + extra
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_the_hooks_it_relies_on_are_uvicorns() -> None:
    hooks = {
        "data_received": ["self", "data"],
        "on_message_begin": ["self"],
        "on_headers_complete": ["self"],
        "on_message_complete": ["self"],
        "on_body": ["self", "body"],
        "on_response_complete": ["self"],
    }
    for name, parameters in hooks.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == parameters, name
    assert BoundedHttpToolsProtocol.__mro__[1] is HttpToolsProtocol
    assert STATUS_LINE[431] == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert isinstance(ServerState().default_headers, list)
    assert "self.pipeline: deque" in inspect.getsource(HttpToolsProtocol.__init__)  # the queue it bounds
    # the read timer waits behind an unfinished answer: the callback a cycle calls once it is sent
    assert "on_response=self.on_response_complete" in inspect.getsource(HttpToolsProtocol.on_headers_complete)


async def test_requests_under_the_bound_are_served_also_one_byte_at_a_time() -> None:
    protocol, transport = _protocol()
    head_of_limit_size = _request(b"x" * 5000, extra=b"X-Pad: " + b"p" * (LIMIT - 200) + b"\r\n")
    for byte in range(len(head_of_limit_size)):
        protocol.data_received(head_of_limit_size[byte : byte + 1])
    await _settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    assert transport.written.endswith(b"got 5000")
    assert not transport.closed


async def test_many_pipelined_requests_in_one_read_are_not_counted_together() -> None:
    protocol, transport = _protocol()
    count = MAX_PIPELINED + 1  # one answered, the rest queued: far over the bound in all
    protocol.data_received(_request(b"y" * 300) * count)
    for _ in range(40):
        await _settle()
    assert transport.written.count(b"HTTP/1.1 200 OK") == count
    assert not transport.closed


async def test_a_connection_that_pipelines_too_deep_is_closed() -> None:
    protocol, transport = _protocol()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 10_000)
    await _settle()
    assert transport.closed
    assert len(protocol.pipeline) <= MAX_PIPELINED + 1
    assert b"HTTP/1.1 400" in transport.written


async def test_trailers_count_against_the_bound() -> None:
    protocol, transport = _protocol()
    protocol.data_received(
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    )
    sent = 0
    while not transport.closed:
        protocol.data_received(b"X-T: " + b"a" * 100 + b"\r\n")
        sent += 107
        assert sent <= 2 * LIMIT + 200
    assert b"431 Request Header Fields Too Large" in transport.written


async def test_a_trailer_value_that_never_ends_is_cut_off() -> None:
    protocol, transport = _protocol()
    protocol.data_received(
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\nX-T: "
    )
    sent = 0
    while not transport.closed:
        protocol.data_received(b"a" * 100)
        sent += 100
        assert sent <= 2 * LIMIT + 100
    assert b"431" in transport.written


async def test_a_chunked_body_in_large_chunks_is_served() -> None:
    protocol, transport = _protocol()
    chunk = b"x" * 4000
    protocol.data_received(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(200):  # 800 KB of body, 200 chunk-size lines: well under the bound
        protocol.data_received(b"fa0\r\n" + chunk + b"\r\n")
    protocol.data_received(b"0\r\n\r\n")
    for _ in range(10):
        await _settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    assert transport.written.endswith(b"got 800000")


@pytest.mark.parametrize(
    "start",
    [b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Big: ", b"POST /api/v1/alerts?q=", b"POST /"],
    ids=["header", "query", "path"],
)
async def test_a_head_over_the_bound_is_answered_431_and_closed(start: bytes) -> None:
    protocol, transport = _protocol()
    protocol.data_received(start)
    sent = len(start)
    while not transport.closed:
        protocol.data_received(b"a" * 100)
        sent += 100
        assert sent <= LIMIT + 100
    assert transport.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in transport.written
    protocol.data_received(b"a" * 100_000)  # nothing more is parsed or answered
    assert transport.written.count(b"HTTP/1.1") == 1


async def test_the_bound_applies_again_to_the_next_request_on_the_connection() -> None:
    protocol, transport = _protocol()
    protocol.data_received(_request())
    await _settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    protocol.data_received(b"POST /api/v1/alerts HTTP/1.1\r\nX-Big: ")
    for _ in range(LIMIT // 100 + 2):
        protocol.data_received(b"a" * 100)
    assert transport.closed
    assert b"HTTP/1.1 431" in transport.written


async def test_a_malformed_request_is_still_uvicorns_400() -> None:
    protocol, transport = _protocol()
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n" + b"a" * (2 * LIMIT))
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 400")
    assert b"431" not in transport.written


def _timed_protocol(
    read_timeout: float, max_connections: int = 4096
) -> tuple[BoundedHttpToolsProtocol, Transport, ServerState]:
    protocol_class = bounded_protocol(LIMIT, read_timeout, max_connections)
    config = uvicorn.Config(_app, http=protocol_class, lifespan="off", log_config=None, server_header=False)
    config.load()
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport, state


async def _until_closed(transport: Transport, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not transport.closed:
            await asyncio.sleep(0.02)


async def test_a_client_that_connects_and_sends_nothing_is_answered_408_and_closed() -> None:
    _, transport, _ = _timed_protocol(0.2)
    await _until_closed(transport)
    assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in transport.written


async def test_a_head_dribbled_a_byte_at_a_time_is_cut_off_at_the_read_timeout() -> None:
    protocol, transport, _ = _timed_protocol(0.3)
    head = b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000
    for byte in range(len(head)):
        if transport.closed:
            break
        protocol.data_received(head[byte : byte + 1])
        await asyncio.sleep(0.01)
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 408")


async def test_a_slow_body_is_cut_off_at_the_read_timeout() -> None:
    protocol, transport, _ = _timed_protocol(0.3)
    protocol.data_received(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    while not transport.closed:
        protocol.data_received(b"x" * 10)
        await asyncio.sleep(0.02)
    assert transport.written.startswith(b"HTTP/1.1 408")


async def test_requests_in_time_are_served_and_the_timer_restarts_per_request() -> None:
    protocol, transport, _ = _timed_protocol(0.3)
    for _ in range(3):
        protocol.data_received(_request())
        await asyncio.sleep(0.2)  # together longer than the timeout, each request well within it
    await _settle()
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3
    assert not transport.closed
    await asyncio.sleep(0.5)  # idle after an answer: uvicorn's keep-alive timeout (5 s) applies
    assert not transport.closed


async def test_a_connection_over_the_limit_is_closed_when_accepted() -> None:
    class Aborting(Transport):
        def abort(self) -> None:
            self.closed = True

    protocol_class = bounded_protocol(LIMIT, 30.0, 2)
    config = uvicorn.Config(_app, http=protocol_class, lifespan="off", log_config=None, server_header=False)
    config.load()
    state = ServerState()
    transports = []
    for _ in range(3):
        protocol = protocol_class(config=config, server_state=state, app_state={})
        transport = Aborting()
        protocol.connection_made(transport)
        transports.append((protocol, transport))
    assert [t.closed for _, t in transports] == [False, False, True]
    transports[2][0].connection_lost(None)
    assert len(state.connections) == 2
    transports[0][0].data_received(_request())
    await _settle()
    assert transports[0][1].written.startswith(b"HTTP/1.1 200 OK")


def _gated_protocol(read_timeout: float, gate: asyncio.Event) -> tuple[BoundedHttpToolsProtocol, Transport]:
    """A protocol whose app answers ``/slow`` only once ``gate`` is set (a journal commit that takes
    longer than the read timeout)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await gate.wait()
        await _app(scope, receive, send)

    protocol_class = bounded_protocol(LIMIT, read_timeout)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_config=None, server_header=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def _post(path: bytes, body: bytes) -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def test_a_pipelined_request_is_not_timed_while_the_answer_before_it_is_unfinished() -> None:
    """Its reading is paused: its body cannot arrive. A 408 then would read as the first answer."""
    gate = asyncio.Event()
    protocol, transport = _gated_protocol(0.3, gate)
    protocol.data_received(_post(b"/slow", b"{}") + _post(b"/b", b"0123456789")[:-5])
    await asyncio.sleep(0.8)  # the first request's handler takes longer than the read timeout
    assert not transport.closed
    assert transport.written == b""
    gate.set()
    await _until_closed(transport)  # the second request's time starts with the first answer sent
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    assert transport.written.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 408 Request Timeout" in transport.written


async def test_pipelined_requests_that_arrived_whole_are_all_answered() -> None:
    gate = asyncio.Event()
    protocol, transport = _gated_protocol(0.3, gate)
    protocol.data_received(_post(b"/slow", b"{}") + _post(b"/b", b"0123456789") + _post(b"/c", b"{}"))
    await asyncio.sleep(0.8)
    gate.set()
    await _settle()
    await asyncio.sleep(0.1)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3
    assert not transport.closed


async def test_a_slow_second_request_on_a_keep_alive_connection_is_answered_408() -> None:
    protocol, transport, _ = _timed_protocol(0.3)
    protocol.data_received(_request())
    await _settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    protocol.data_received(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n")  # its head never ends
    await _until_closed(transport)
    assert transport.written.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 408 Request Timeout" in transport.written
