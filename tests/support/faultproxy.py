"""A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream, steered while a test runs.

There is no toxiproxy here, so network faults between kurative and what it talks to (PostgreSQL, the
Kubernetes API server, webhooks) come from this small asyncio proxy, run on its own event loop in a
thread so that it keeps forwarding whatever the test's own loop is doing:

    with fault_proxy("127.0.0.1", upstream_port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        proxy.latency(0.1)            # every chunk waits 100 ms, both ways
        proxy.bandwidth(2_000)        # at most 2,000 bytes/s each way, per connection
        proxy.reset_after(40)         # forward 40 more request bytes per connection, then RST both sides
        proxy.blackhole()             # accept, never forward nor answer (a partition)
        proxy.half_open()             # forward requests, never return the answers
        proxy.refuse()                # close the listener: new connections are refused
        proxy.heal()                  # pass-through again (held data flows on, like TCP after a heal)
        proxy.counts                  # connections, bytes up/down, resets, held chunks

A fault applies to the connections already open as well as to new ones. Blackhole and half-open hold
what they read instead of dropping it: when the fault is lifted it is delivered, as TCP's retransmissions
would after a healed partition (a client that gave up has closed its side by then). A reset sets
``SO_LINGER`` to 0 before closing, so both peers see a real RST, not a clean end of stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

CHUNK = 65536
POLL = 0.02
"""How often a held direction looks whether its fault was lifted."""


@dataclass(frozen=True)
class Fault:
    """What the proxy does now; replaced whole, so that the pumps never see half a change."""

    name: str = "pass"
    latency: float = 0.0
    rate: int | None = None
    reset_after: int | None = None
    hold_up: bool = False
    hold_down: bool = False
    generation: int = 0


@dataclass
class Counts:
    connections: int = 0
    bytes_up: int = 0
    """Bytes forwarded from clients to the upstream."""
    bytes_down: int = 0
    """Bytes forwarded from the upstream back to clients."""
    resets: int = 0
    held: int = 0
    """Chunks that a blackhole or half-open fault held back at least once."""
    upstream_failures: int = 0
    """Connections whose upstream could not be reached (closed towards the client)."""


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    sent_at_generation: dict[int, int] = field(default_factory=dict)
    closed: bool = False


def _rst(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = port
        self.counts = Counts()
        self._fault = Fault()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    # -- control, from any thread -------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        return self._fault

    def _set(self, name: str, **what: Any) -> None:
        with self._lock:
            self._fault = Fault(name=name, generation=self._fault.generation + 1, **what)
        self._call(self._listen)

    def heal(self) -> None:
        """Pass-through, the listener open again."""
        self._set("pass")

    def latency(self, seconds: float) -> None:
        self._set(f"latency {seconds:g}s", latency=seconds)

    def bandwidth(self, bytes_per_second: int) -> None:
        self._set(f"bandwidth {bytes_per_second} B/s", rate=bytes_per_second)

    def reset_after(self, nbytes: int) -> None:
        """Every connection forwards ``nbytes`` more request bytes, then both of its sides are reset."""
        self._set(f"reset after {nbytes} B", reset_after=nbytes)

    def blackhole(self) -> None:
        self._set("blackhole", hold_up=True, hold_down=True)

    def half_open(self) -> None:
        self._set("half-open", hold_down=True)

    def refuse(self) -> None:
        """Close the listener: new connections are refused; open ones carry on."""
        with self._lock:
            self._fault = Fault(name="refuse", generation=self._fault.generation + 1)
        self._call(self._unlisten)

    def reset_all(self) -> int:
        """Reset every open connection now; returns how many."""
        future = asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop)
        return future.result(10)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coroutine: Callable[[], Coroutine[Any, Any, object]]) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(coroutine(), self._loop).result(10)

    # -- the loop's side ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None and self._fault.name != "refuse":
            self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # closing the listener is enough; its accepted connections are the links, kept open

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._reset(link)
        return len(links)

    async def _shutdown(self) -> None:
        await self._unlisten()
        for link in list(self._links):
            self._close(link)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:  # an upstream connect still under way
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _reset(self, link: _Link) -> None:
        if not link.closed:
            link.closed = True
            self.counts.resets += 1
            _rst(link.client)
            _rst(link.upstream)
            self._links.discard(link)

    def _close(self, link: _Link) -> None:
        if not link.closed:
            link.closed = True
            for writer in (link.client, link.upstream):
                if writer is not None:
                    writer.close()
            self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            # a blackhole holds a new connection before it even reaches the upstream
            while self._fault.hold_up and not link.closed:
                await asyncio.sleep(POLL)
            if link.closed:
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
            except (OSError, TimeoutError):
                self.counts.upstream_failures += 1
                self._close(link)
                return
            if link.closed:  # reset or closed while the upstream connection was being made
                up_writer.close()
                return
            link.upstream = up_writer
            await asyncio.gather(
                self._pump(link, reader, up_writer, up=True),
                self._pump(link, up_reader, writer, up=False),
            )
        except asyncio.CancelledError:
            pass  # the proxy stops: a cancelled connection callback would only be logged as an error
        finally:
            self._close(link)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while not link.closed:
                fault = self._fault
                size = CHUNK if fault.rate is None else max(1, min(CHUNK, fault.rate // 10))
                chunk = await reader.read(size)
                if not chunk:
                    break
                held = False
                while not link.closed:
                    fault = self._fault
                    if not (fault.hold_up if up else fault.hold_down):
                        break
                    if not held:
                        held = True
                        self.counts.held += 1
                    await asyncio.sleep(POLL)
                if link.closed:
                    return
                if fault.latency:
                    await asyncio.sleep(fault.latency)
                if fault.rate:
                    await asyncio.sleep(len(chunk) / fault.rate)
                fault = self._fault
                if up and fault.reset_after is not None:
                    sent = link.sent_at_generation.get(fault.generation, 0)
                    allowed = max(0, fault.reset_after - sent)
                    if len(chunk) >= allowed:
                        if allowed:
                            self.counts.bytes_up += allowed
                            writer.write(chunk[:allowed])
                            with contextlib.suppress(ConnectionError):
                                await writer.drain()
                        self._reset(link)
                        return
                    link.sent_at_generation[fault.generation] = sent + len(chunk)
                if up:
                    self.counts.bytes_up += len(chunk)
                else:
                    self.counts.bytes_down += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one side ended: end the other the same way (a reset stays a reset)
            if not link.closed:
                self._close(link)


@contextlib.contextmanager
def fault_proxy(upstream_host: str, upstream_port: int) -> Iterator[FaultProxy]:
    """A started proxy to ``upstream_host:upstream_port``; stopped on exit."""
    proxy = FaultProxy(upstream_host, upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
