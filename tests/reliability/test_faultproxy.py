"""The fault proxy itself, over a plain echo server: each fault does what its name says."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy, fault_proxy

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            while not stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                with contextlib.suppress(OSError):  # a reset from the proxy: that test's point
                    conn.sendall(data)

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with echo_server() as port, fault_proxy("127.0.0.1", port) as started:
        yield started


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_pass_through_counts_connections_and_bytes(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert exchange(sock, b"hello") == b"hello"
    assert proxy.counts.connections == 1
    assert proxy.counts.bytes_up == 5
    assert proxy.counts.bytes_down == 5


def test_latency_delays_each_chunk_both_ways(proxy: FaultProxy) -> None:
    proxy.latency(0.2)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert exchange(sock, b"ping") == b"ping"
        # two chunks (there and back) of 0.2 s each; a lower bound only, never an upper one
        assert time.monotonic() - started >= 0.4


def test_bandwidth_cap_spreads_a_transfer(proxy: FaultProxy) -> None:
    proxy.bandwidth(20_000)
    with connect(proxy, timeout=10) as sock:
        started = time.monotonic()
        assert exchange(sock, b"x" * 10_000) == b"x" * 10_000
        # 10 kB at 20 kB/s (the answer flows back while the request still goes): a lower bound only
        assert time.monotonic() - started >= 0.45


def test_reset_after_n_bytes_forwards_that_many_then_resets_the_client(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert exchange(sock, b"before") == b"before"
        proxy.reset_after(3)
        sock.sendall(b"abcdef")
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)
    assert proxy.counts.resets == 1
    assert proxy.counts.bytes_up == len(b"before") + 3


def test_blackhole_accepts_holds_and_delivers_after_the_heal(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with connect(proxy, timeout=0.5) as sock:  # the connection is accepted
        sock.sendall(b"lost?")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert proxy.counts.bytes_up == 0
        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(10) == b"lost?"


def test_half_open_forwards_the_request_and_never_answers(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=0.5) as sock:
        assert exchange(sock, b"warm") == b"warm"
        proxy.half_open()
        sock.sendall(b"query")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert proxy.counts.bytes_up == len(b"warmquery")
        assert proxy.counts.held >= 1


def test_refuse_closes_the_listener_until_the_heal(proxy: FaultProxy) -> None:
    with connect(proxy) as open_before:
        assert exchange(open_before, b"open") == b"open"  # accepted by the proxy, not only the kernel
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        assert exchange(open_before, b"still") == b"still"  # open connections carry on
    proxy.heal()
    with connect(proxy) as sock:
        assert exchange(sock, b"back") == b"back"
