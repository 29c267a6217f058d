"""Serving the ingress app with uvicorn inside the daemon's own event loop.

The daemon owns the process: its signals, its logging and its shutdown order. So uvicorn runs as a
task of the daemon's task group (``Server.serve``) on a socket the daemon bound itself (the port is
known before the first request, also when 0 asked for a free one), with uvicorn's own signal handling
and logging configuration switched off, a listen backlog large enough for Alertmanager's bursts,
and optional TLS. HTTP/1.1 is parsed by httptools (:mod:`kurative.ingress.protocol` bounds a
request's line and headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

import structlog
from starlette.applications import Starlette

from kurative.errors import ConfigError
from kurative.ingress._uvicorn import Config, Server
from kurative.ingress.protocol import bounded_protocol
from kurative.ingress.settings import IngressSettings

T = TypeVar("T")
log = structlog.get_logger("kurative.ingress")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (HTTP parsing and socket I/O in C), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; a source checkout may lack it
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def event_loop_name() -> str:
    return "uvloop" if event_loop_factory() is not asyncio.new_event_loop else "asyncio"


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop of :func:`event_loop_factory`."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)


class _EmbeddedServer(Server):
    read_timeout = 30.0

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The daemon handles SIGTERM/SIGINT itself and stops the server in order.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self._listen(sockets)
        if self.started:
            self.up.set()

    async def _listen(self, sockets: list[socket.socket] | None) -> None:
        """uvicorn's start, but a TLS listener bounds each handshake by ``read_timeout``.

        asyncio and uvloop make the HTTP protocol of a TLS connection (which counts it against
        ``max_connections`` and starts its read timer) only once the handshake is done; a client
        that connects and never sends a ClientHello held a descriptor for the loop's default 60 s."""
        config = self.config
        if config.ssl is None or not sockets:
            await super().startup(sockets)
            return

        def make() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return made

        loop = asyncio.get_running_loop()
        self.servers = [
            await loop.create_server(
                make,
                sock=sock,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self.read_timeout,
            )
            for sock in sockets
        ]
        self.started = True


def bind(settings: IngressSettings) -> socket.socket:
    """The listening socket, bound now so that a taken port fails the start with a clear error."""
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose protocol says TCP.
    # Without it Nagle holds back the answer's body behind its headers until the sender's delayed
    # ACK (about 40 ms a request on a keep-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


OTHER_FILES = 256
"""Open files the daemon needs besides its connections: the journal, adapters, rules, logs."""
MIN_CONNECTIONS = 16
"""Fewer than this (after the other files' share) and the daemon refuses to start."""


def connection_limit(max_connections: int) -> int:
    """The connections the ingress may serve at once: ``max_connections``, after raising the soft
    RLIMIT_NOFILE to fit them and the daemon's other files (up to the hard limit: systemd and many
    containers start processes with a soft limit of 1024), and lowered to what that limit leaves,
    so that a flood of connections never takes the journal's and the watcher's file descriptors.
    Never more than ``max_connections``; a limit that leaves fewer than :data:`MIN_CONNECTIONS` is a
    start error (serving that few would take the other files' share)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + OTHER_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    allowed = min(max_connections, soft - min(OTHER_FILES, soft // 4))
    if allowed < MIN_CONNECTIONS:
        raise ConfigError(
            f"the open-files limit ({soft}) leaves room for {max(allowed, 0)} connections besides the "
            f"daemon's other files, fewer than {MIN_CONNECTIONS}: raise it (ulimit -n, LimitNOFILE=)"
        )
    if allowed == max_connections:
        return allowed
    log.warning(
        "connection_limit_lowered",
        max_connections=max_connections,
        allowed=allowed,
        open_files_limit=soft,
        hint="raise the hard limit of open files (ulimit -Hn, LimitNOFILE=) or lower listen.maxConnections",
    )
    return allowed


class IngressServer:
    """One uvicorn server for ``app`` on ``sock``; ``serve()`` until ``stop()``."""

    def __init__(self, app: Starlette, settings: IngressSettings, sock: socket.socket) -> None:
        self.max_connections = connection_limit(settings.max_connections)
        config = Config(
            app,
            # httptools, with the bound on a request's head that httptools alone does not keep
            http=bounded_protocol(settings.max_header_bytes, settings.read_timeout, self.max_connections),
            lifespan="off",
            # nothing reads the client's address; and X-Forwarded-* from a local process is not trusted
            proxy_headers=False,
            log_config=None,
            access_log=False,
            backlog=settings.backlog,
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=10,
            server_header=False,
        )
        self._server = _EmbeddedServer(config)
        self._server.read_timeout = settings.read_timeout
        self._sock = sock
        host, port = sock.getsockname()[:2]
        scheme = "https" if settings.tls_cert_file else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{port}"

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    async def wait_started(self, stop: asyncio.Event) -> bool:
        """Until the server listens (True) or ``stop`` is set first (False): woken by the server's
        start-up itself, so readiness follows it at once rather than at the next poll."""
        waits = [asyncio.ensure_future(self._server.up.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return self.started

    def stop(self) -> None:
        """Stop accepting; requests in flight finish (up to the graceful timeout)."""
        self._server.should_exit = True
