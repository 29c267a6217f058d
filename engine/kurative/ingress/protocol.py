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
  answered (uvicorn answers 400): Alertmanager and Prometheus never pipeline;
- gives a client ``read_timeout`` seconds to send a whole request (line, headers and body), counted
  from the connection's start for its first request and from the request's first byte for the next
  ones, but never while an earlier request's answer is unfinished (a pipelined request waits, its
  reading paused: its time starts when the answers before it are complete); past it the client is
  answered ``408 Request Timeout`` (when nothing was answered to that request yet, and no earlier
  answer is unfinished: else the 408 would read as that answer) and disconnected. uvicorn itself
  has no such timer: its keep-alive timeout runs only after an answer,
  so a client that connects and sends nothing, or dribbles a header a byte at a time (slowloris),
  would hold its connection and file descriptor for ever;
- closes at once a connection accepted while ``max_connections`` are open already, so that a flood
  of connections ends at a bound the process's file descriptors allow (the journal and the adapters
  need some too) rather than at ``EMFILE``.

It relies on these hooks of uvicorn's ``HttpToolsProtocol``: ``data_received`` (the transport's
callback), the parser callbacks ``on_message_begin``, ``on_headers_complete``, ``on_body`` and
``on_message_complete``, ``on_response_complete`` (a cycle's callback once its answer is sent), its
``cycle``, ``pipeline``, ``transport`` and ``server_state.default_headers``.
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
_TOO_SLOW = b"the request was not received in time"
MAX_PIPELINED = 16
"""Requests a connection may have waiting behind the one being answered."""


class PipelineTooDeep(Exception):
    """Raised from a parser callback: httptools stops parsing, uvicorn answers 400 and closes."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that cuts off a request whose head grows past ``max_header_bytes``."""

    max_header_bytes = 64 * 1024
    """Set per server by :func:`bounded_protocol`."""
    read_timeout = 30.0
    """Seconds to receive a whole request; set per server by :func:`bounded_protocol`."""
    max_connections = 4096
    """Connections served at once; set per server by :func:`bounded_protocol`."""

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
        self._read_timer: asyncio.TimerHandle | None = None
        self._receiving = False  # a request has begun and is not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._cut = True
            log.debug("connection_refused_over_limit", limit=self.max_connections)
            transport.abort()
            return
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

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
        self._receiving = True
        if self._earlier_unfinished():
            self._disarm_read_timer()  # armed by on_response_complete once the answers before it are sent
        elif self._read_timer is None:
            self._arm_read_timer()
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
        self._receiving = False
        self._unbounded = 0
        self._disarm_read_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waited = self._receiving and self._read_timer is None  # a request that waited behind this answer
        if waited and not self._cut and not self.transport.is_closing() and not self._earlier_unfinished():
            self._arm_read_timer()  # its time starts now

    def _earlier_unfinished(self) -> bool:
        """An answer to an earlier request than the one being received is not complete yet."""
        if self._in_head:
            # the request has no cycle yet; uvicorn's ``cycle`` is the previous request's
            return self.cycle is not None and not self.cycle.response_complete
        return bool(self.pipeline)  # its cycle is queued behind an unfinished one

    def _arm_read_timer(self) -> None:
        self._disarm_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self._cut or self.transport.is_closing():
            return
        self._cut = True
        log.info("request_read_timeout", timeout=self.read_timeout, client=_client(self.client))
        if self._earlier_unfinished():
            self.transport.close()  # a 408 now would read as the answer to the earlier request
        elif self._in_head or self.cycle is None or not self.cycle.response_started:
            self._answer_and_close(408, _TOO_SLOW)  # nothing was answered to this request
        else:
            self.transport.close()

    def _refuse(self) -> None:
        self._cut = True
        log.warning("request_head_too_large", limit=self.max_header_bytes, client=_client(self.client))
        self._answer_and_close(431, _TOO_LARGE)

    def _answer_and_close(self, status: int, text: bytes) -> None:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(text)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                text,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def _client(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


def bounded_protocol(
    max_header_bytes: int, read_timeout: float = 30.0, max_connections: int = 4096
) -> type[BoundedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with its own bounds (one per server)."""
    bound = {
        "max_header_bytes": max_header_bytes,
        "read_timeout": read_timeout,
        "max_connections": max_connections,
    }
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), bound)
