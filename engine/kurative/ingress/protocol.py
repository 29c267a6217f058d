"""uvicorn's httptools protocol with a bound on what a client may send before its headers end.

httptools (llhttp, in C) parses a request in a fraction of the time h11 takes, but it keeps a request
line or a header that has not ended yet in memory without any limit: one unauthenticated connection
could fill the memory with a header that never ends. :class:`BoundedHttpToolsProtocol` counts the
bytes received since a message began until its headers are complete; past ``max_header_bytes`` it
answers ``431 Request Header Fields Too Large`` and closes the connection, without parsing further.
Bytes in the same read as the end of the headers are not counted (they are the body, or the next
pipelined request), so what one connection can hold before the cut is the bound plus one read.

It relies on four hooks of uvicorn's ``HttpToolsProtocol``: ``data_received`` (the transport's
callback), and the parser callbacks ``on_message_begin``, ``on_headers_complete`` and
``on_message_complete``, plus its ``transport`` and ``server_state.default_headers``.
tests/unit/ingress/test_protocol.py fails when a uvicorn release changes them; pyproject.toml pins the
uvicorn range that test ran against.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

log = structlog.get_logger("kurative.ingress")

_TOO_LARGE = b"the request line and headers are over the limit"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that cuts off a request whose head grows past ``max_header_bytes``."""

    max_header_bytes = 64 * 1024
    """Set per server by :func:`bounded_protocol`."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True  # waiting for (the rest of) a request line and headers
        self._head_bytes = 0
        self._heads_ended = 0  # headers completed during the current read
        self._cut = False

    def data_received(self, data: bytes) -> None:
        if self._cut:
            return
        if self._in_head:
            self._head_bytes += len(data)
        ended = self._heads_ended
        super().data_received(data)
        if self.transport.is_closing():
            return  # uvicorn answered already (a malformed request: 400)
        if self._heads_ended != ended:
            # the head ended somewhere in this read: what follows it is not counted (see above)
            self._head_bytes = 0
        elif self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        self._in_head = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_ended += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # the next bytes begin the next request
        super().on_message_complete()

    def _refuse(self) -> None:
        self._cut = True
        log.warning("request_head_too_large", limit=self.max_header_bytes, client=_client(self.client))
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(_TOO_LARGE)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _TOO_LARGE,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def _client(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


def bounded_protocol(max_header_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with its own bound (one per server)."""
    bound = {"max_header_bytes": max_header_bytes}
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), bound)
