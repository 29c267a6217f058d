"""Readiness follows the ingress server's own start-up: ``IngressServer.wait_started``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.server import IngressServer, bind
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import IncomingAlert

pytestmark = pytest.mark.timeout(30)


async def _commit(records: Sequence[IncomingAlert]) -> tuple[str, ...]:
    return ()


async def _ready() -> list[str]:
    return []


def _server() -> IngressServer:
    config = IngressSettings(port=0, credentials=Credentials())
    return IngressServer(create_app(config, IngressHooks(_commit, _ready)), config, bind(config))


async def test_it_wakes_once_the_server_listens_and_the_port_answers() -> None:
    server = _server()
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve())
    try:
        assert await asyncio.wait_for(server.wait_started(stop), 10) is True
        assert server.started
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read(64)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        server.stop()
        await asyncio.wait_for(serving, 10)


async def test_a_stop_before_the_start_ends_the_wait_without_it() -> None:
    server = _server()
    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(server.wait_started(stop), 10) is False
    assert not server.started
    server.stop()
    await asyncio.wait_for(server.serve(), 10)  # closes the bound socket
