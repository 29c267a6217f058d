"""A real local HTTP server that records what it is sent and answers what a test tells it to.

Webhook tests (and later the daemon's end-to-end tests) need a receiver that is real HTTP on
127.0.0.1, not a mock transport: it records every request (method, path, headers, body, the
``Idempotency-Key``), and answers by rules — a status with a body and headers, after a delay, or not
at all (it hangs until the sink stops), a number of times or forever, for one path or every path.

    with http_sink() as sink:
        sink.answer(503, times=2, headers={"Retry-After": "7"})
        sink.echo("/echo")                     # answers the request back as JSON
        ... POST to f"{sink.url}/hook" ...
        assert sink.requests[0].idempotency_key == "exec-1/notify"

Requests that match no rule get 200 with ``{"ok": true}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.postgres import free_port

HANG_LIMIT = 60.0  # a hanging answer never outlives the test by more than this


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def idempotency_key(self) -> str | None:
        return self.header("Idempotency-Key")

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Rule:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    echo: bool = False
    times: int | None = None
    path: str | None = None

    def matches(self, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.path is None or path.split("?", 1)[0] == self.path


class HttpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Recorded] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        """The most requests the sink was answering at the same moment."""
        self.incomplete = 0
        """Requests whose sender went away before their body was complete (not recorded)."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client went away (killed) before its body was sent:
                    self.close_connection = True  # no request, as for any HTTP server
                    with sink._lock:
                        sink.incomplete += 1
                    return
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                rule = sink._take(recorded)
                try:
                    self._answer(rule, recorded, body)
                finally:
                    with sink._lock:
                        sink._in_flight -= 1

            def _answer(self, rule: Rule, recorded: Recorded, body: bytes) -> None:
                if rule.hang:
                    sink._stopping.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                if rule.delay:
                    sink._stopping.wait(rule.delay)
                payload = rule.body
                headers = dict(rule.headers)
                if rule.echo:
                    payload = json.dumps(
                        {
                            "method": recorded.method,
                            "path": recorded.path,
                            "headers": dict(recorded.headers),
                            "body": body.decode("utf-8", "replace"),
                        }
                    ).encode()
                    headers.setdefault("Content-Type", "application/json")
                try:
                    self.send_response(rule.status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away (killed): nothing to answer

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-sink", daemon=True
        )
        self._thread.start()

    def _take(self, recorded: Recorded) -> Rule:
        with self._lock:
            self.requests.append(recorded)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            for rule in self._rules:
                if rule.matches(recorded.path):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return Rule(body=b'{"ok": true}', headers={"Content-Type": "application/json"})

    def answer(
        self,
        status: int = 200,
        body: bytes | str = b"",
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        hang: bool = False,
        times: int | None = None,
        path: str | None = None,
    ) -> None:
        """Answer matching requests this way (rules are tried in the order they were added)."""
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._rules.append(Rule(status, data, all_headers, delay, hang, False, times, path))

    def echo(self, path: str | None = None, status: int = 200) -> None:
        """Answer with the request itself as JSON (method, path, headers, body)."""
        with self._lock:
            self._rules.append(Rule(status=status, echo=True, path=path))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"the sink got {len(self.requests)} requests, not {count}")

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()
    try:
        yield sink
    finally:
        sink.stop()


def unused_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting to it is refused."""
    return free_port()
