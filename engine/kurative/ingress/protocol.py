"""uvicorn's httptools protocol with a bound on what a client may send that is not a body.

httptools (llhttp, in C) parses a request in a fraction of the time h11 takes, but it keeps a request
line, a header or a chunked body's trailer that has not ended yet in memory without any limit, and
uvicorn queues pipelined requests without any limit: one unauthenticated connection could fill the
memory. :class:`BoundedHttpToolsProtocol` therefore

- counts the bytes received since a message began until its headers are complete, and then, while
  its body lasts, the bytes that are not body since body last arrived (the trailers, which
  httptools keeps like headers); past
  ``max_header_bytes`` it answers ``431 Request Header Fields Too Large`` and closes the connection,
  without parsing further. Bytes in the same read as the end of the headers are not counted (they
  are the body, or the next pipelined request), so what one connection can hold before the cut is
  the bound plus one read;
- closes a connection that has more than :data:`MAX_PIPELINED` requests queued behind the one being
  answered (uvicorn answers 400): Alertmanager and Prometheus never pipeline.

It relies on these hooks of uvicorn's ``HttpToolsProtocol``: ``data_received`` (the transport's
callback), the parser callbacks ``on_message_begin``, ``on_headers_complete``, ``on_body`` and
``on_message_complete``, its ``pipeline``, ``transport`` and ``server_state.default_headers``.
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
MAX_PIPELINED = 16
"""Requests a connection may have waiting behind the one being answered."""


class PipelineTooDeep(Exception):
    """Raised from a parser callback: httptools stops parsing, uvicorn answers 400 and closes."""


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
        self._in_body = False  # the headers are complete, the message is not
        self._unbounded = 0  # bytes counted against the bound for the current message
        self._heads_ended = 0  # headers completed during the current read
        self._read_left = 0  # bytes of the current read not (yet) known to be body
        self._cut = False

    def data_received(self, data: bytes) -> None:
        if self._cut:
            return
        in_body = self._in_body
        if self._in_head:
            self._unbounded += len(data)
        self._read_left = len(data)
        ended = self._heads_ended
        super().data_received(data)
        if self.transport.is_closing():
            return  # uvicorn answered already (a malformed request: 400, too many pipelined)
        if self._heads_ended != ended:
            # the head ended somewhere in this read: what follows it is not counted (see above)
            self._unbounded = 0
        elif self._in_head or (in_body and self._in_body):
            # a head still growing, or a whole read inside one body: its chunk-size lines and
            # trailers (what is not body) count
            if not self._in_head:
                # httptools and uvicorn keep trailers (as headers) but not chunk framing: a read that
                # brought body starts the count again, one that did not (trailers) adds to it
                left = max(0, self._read_left)
                self._unbounded = left if self._read_left < len(data) else self._unbounded + left
            if self._unbounded > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        self._in_head = True
        self._in_body = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._heads_ended += 1
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            log.warning("requests_pipelined_too_deep", limit=MAX_PIPELINED, client=_client(self.client))
            raise PipelineTooDeep

    def on_body(self, body: bytes) -> None:
        self._read_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # the next bytes begin the next request
        self._in_body = False
        self._unbounded = 0
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
