"""The listening socket the daemon binds: its accepted connections send answers without delay."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kurative.ingress.server import bind
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
