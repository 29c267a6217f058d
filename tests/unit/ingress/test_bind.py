"""The listening socket the daemon binds: its accepted connections send answers without delay."""

from __future__ import annotations

import asyncio
import resource
import socket

import pytest
from structlog.testing import capture_logs

from kurative.errors import ConfigError
from kurative.ingress.server import OTHER_FILES, bind, connection_limit
from kurative.ingress.settings import IngressSettings

pytestmark = pytest.mark.timeout(30)


async def test_accepted_connections_have_nagle_off() -> None:
    # Nagle on a keep-alive connection holds each answer's body behind its headers until the
    # sender's delayed ACK: about 40 ms a webhook. asyncio turns it off only for TCP-typed sockets.
    sock = bind(IngressSettings(host="127.0.0.1", port=0))
    assert sock.proto == socket.IPPROTO_TCP
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            nodelay.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(nodelay, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("soft", "hard", "raised_to", "allowed"),
    [
        (1024, resource.RLIM_INFINITY, 4096 + OTHER_FILES, 4096),  # raised to fit
        (1024, 2000, 2000, 2000 - OTHER_FILES),  # raised to the hard limit, connections lowered
        (256, 256, None, 192),  # nothing to raise: a quarter kept for the other files
        (40, 40, None, 30),
        (100_000, 100_000, None, 4096),  # enough already
    ],
)
def test_the_connection_limit_fits_the_open_files_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, raised_to: int | None, allowed: int
) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: set_to.append(limits))
    with capture_logs() as logs:
        assert connection_limit(4096) == allowed
    assert set_to == ([] if raised_to is None or raised_to == soft else [(raised_to, hard)])
    lowered = [entry for entry in logs if entry["event"] == "connection_limit_lowered"]
    assert bool(lowered) == (allowed < 4096)


@pytest.mark.parametrize(
    ("limit", "max_connections"),
    [(300, 100), (300, 200), (356, 100), (1000, 16)],
)
def test_the_connection_limit_is_never_above_max_connections(
    monkeypatch: pytest.MonkeyPatch, limit: int, max_connections: int
) -> None:
    """A hard limit under maxConnections plus the other files, whose three quarters are above it."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limit, limit))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: None)
    with capture_logs() as logs:
        assert connection_limit(max_connections) == max_connections
    assert not [entry for entry in logs if entry["event"] == "connection_limit_lowered"]


@pytest.mark.parametrize("limit", [16, 20])
def test_an_open_files_limit_too_low_for_the_least_connections_is_a_start_error(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Serving 16 connections under a limit of 20 would leave 4 descriptors for the journal, the
    adapters and the rules watch."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limit, limit))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: None)
    with pytest.raises(ConfigError, match="open-files limit"):
        connection_limit(100)
