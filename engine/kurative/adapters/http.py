"""The HTTP adapter: webhooks and HTTP APIs through httpx, one connection pool and breaker per host.

Each host (scheme, host, port) gets its own ``httpx.AsyncClient`` with bounded connections, so a
slow webhook host cannot use up the connections another host needs, and its own circuit breaker
(``http/<host:port>``; the Prometheus adapter uses the same machinery under ``prometheus/``). The
clients share one TLS context, and only the :data:`MAX_CLIENTS` most recently used are kept: a URL
built from alert labels may name a new host with every alert. Every request has a deadline for the
whole exchange, not only between bytes, so a server that drips its answer still fails the call in
time.

An answer is read raw and decoded here, never by httpx: it would inflate every ``Content-Encoding``
layer without bound, so that a few hundred bytes of stacked gzip become gigabytes in memory. We ask
for ``identity``; a single gzip or deflate layer sent anyway is inflated up to
``max_response_bytes``, and a body in stacked or unknown encodings is not kept (its text says so).

Answers come back as :class:`HttpAnswer` whatever their status (an action decides which statuses it
expects); :meth:`HttpAnswer.failure` maps a status to our error tree: 4xx permanent, 429 and 5xx
temporary honouring ``Retry-After``. Transport failures raise at once: a refused connection, a host
that does not resolve and a timeout are temporary, a malformed URL or header permanent. Refused
connections, timeouts and 5xx count against the host's breaker; 4xx do not.

Callers pass ``shown``: the URL as messages and logs may show it. A URL that is a secret (a Slack
webhook) is shown as ``<secret name>``; only its breaker's target (``http/<host:port>``, in the
messages of an open breaker, the metrics and the REST API) still names its host and port, never its
path, query or credentials, which are where such URLs keep their token.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import datetime
import email.utils
import json
import re
import urllib.parse
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pybreaker
import structlog

from kurative import __version__
from kurative.adapters.breaking import call_through
from kurative.errors import PermanentActionError, TemporaryActionError

if TYPE_CHECKING:
    import ssl

    import httpx  # imported where a request is made: the daemon is ready before its first one

log = structlog.get_logger("kurative.adapters.http")

# How much of a remote body ends up in a message (and so in logs and the journal).
MAX_BODY_IN_MESSAGE = 400
# How much of a text body ends up in a step's output.
MAX_BODY_IN_OUTPUT = 16_384
# What is read of an answer at most; the rest is dropped and the answer marked truncated.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# Clients (connection pools) kept at once, the most recently used; an evicted one is closed once its
# last request is done, and the next request to its host opens a new one.
MAX_CLIENTS = 64
# The wbits of zlib.decompressobj for each Content-Encoding we inflate (deflate: zlib-wrapped first).
_INFLATED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HttpRequestInvalid(PermanentActionError):
    """The request cannot be sent as given (malformed URL, method or header, body not JSON)."""


class HttpClientError(PermanentActionError):
    """A 4xx answer (or another status the caller did not expect): the request itself is wrong."""


class HttpThrottled(TemporaryActionError):
    """429: the host asks to slow down; retry after its ``Retry-After``."""


class HttpServerError(TemporaryActionError):
    """A 5xx answer: the host failed; retrying later may help."""


class HttpTimeout(TemporaryActionError):
    """The host did not answer within the request's timeout."""


class HttpUnreachable(TemporaryActionError):
    """The host could not be reached (refused connection, name not resolved, connection dropped)."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Connection pools and timeouts of the HTTP adapter. Frozen: built once from the daemon config."""

    timeout: float = 10.0
    """Seconds a request may take in all (connect, send, answer) unless the caller gives its own."""
    connect_timeout: float = 5.0
    """Seconds to establish a connection (never more than the request's timeout)."""
    max_connections_per_host: int = 10
    """Connections open at once to one host; further requests wait for one (within their timeout)."""
    max_keepalive_per_host: int = 5
    """Idle connections kept open per host for reuse."""
    keepalive_expiry: float = 30.0
    """Seconds an idle connection is kept."""
    max_response_bytes: int = MAX_RESPONSE_BYTES
    """Bytes of an answer read at most; the rest is dropped."""
    verify_tls: bool = True
    """Verify the certificates of https hosts against the system's trust store."""
    user_agent: str = f"kurative/{__version__}"
    """The ``User-Agent`` header sent with every request."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One answer: its status, headers (lower-case names), body (at most ``max_response_bytes``)."""

    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)
    truncated: bool = False
    what: str = ""
    """The request as messages show it (``POST <secret slack-webhook>``)."""
    undecoded: str = ""
    """Why the body was not kept (its ``Content-Encoding`` is stacked, unknown or corrupt); ``content``
    is then empty. Empty when the body was read."""

    @property
    def text(self) -> str:
        """The body decoded with its charset (UTF-8 when that is not a text codec), or a note saying
        why it was not kept."""
        if self.undecoded:
            return f"<body not kept: {self.undecoded}>"
        try:
            return self.content.decode(self._charset(), errors="replace")
        except (LookupError, UnicodeError):  # a text codec that refuses errors="replace" (idna, undefined)
            return self.content.decode("utf-8", errors="replace")

    def _charset(self) -> str:
        match = re.search(r"charset=\"?([\w.:-]+)", self.headers.get("content-type", ""))
        if match:
            with contextlib.suppress(LookupError):
                codec = codecs.lookup(match.group(1))
                if codec._is_text_encoding:  # not base64, rot13, zlib...: they do not decode to text
                    return codec.name
        return "utf-8"

    @property
    def is_json(self) -> bool:
        kind = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return kind == "application/json" or kind.endswith("+json")

    def json(self) -> Any:
        """The body decoded as JSON; ``ValueError`` when it is not (or was truncated)."""
        return json.loads(self.content)

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))

    def failure(
        self, why: str = "", *, scrub: Callable[[str], str] | None = None
    ) -> PermanentActionError | TemporaryActionError:
        """The error of our tree for this answer's status; ``why`` replaces the default wording.

        ``scrub`` is applied to the whole body before it is cut to fit the message: a secret the
        remote quotes back across the cut must not leave its first part behind."""
        text = self.text if scrub is None else scrub(self.text)
        body = " ".join(text.split())[:MAX_BODY_IN_MESSAGE]
        text = f"{self.what}: {why or f'HTTP {self.status}'}" + (f": {body}" if body else "")
        if self.status == 429:
            return HttpThrottled(text, retry_after=self.retry_after)
        if self.status >= 500:
            return HttpServerError(text, retry_after=self.retry_after)
        return HttpClientError(text)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (a number of seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class _FailedAnswer(Exception):
    """A 5xx answer, raised only inside the breaker so that it counts as a failure."""

    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


_NO_JSON = object()
_Origin = tuple[str, str, int]


@dataclass(slots=True)
class _Pool:
    """The client of one origin, and how many requests use it now (an evicted one closes after them)."""

    client: httpx.AsyncClient
    users: int = 0
    evicted: bool = False


class HttpAdapter:
    """HTTP clients by origin, each with its own connection pool and circuit breaker.

    ``breakers`` hands out the breaker of a target (``http/<host:port>``), as the daemon's breaker
    policy does; without it no breaker guards the calls. ``kind`` is the first part of the target
    names (the Prometheus adapter uses ``prometheus``).

    The scheme is not part of a target: a breaker stands for the server listening at host:port, the
    same for ``http://h:443`` and ``https://h``, and an override names it as ``http/h:443``.
    """

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        breakers: Callable[[str], pybreaker.CircuitBreaker] | None = None,
        kind: str = "http",
    ) -> None:
        self.settings = settings or HttpSettings()
        self._breakers = breakers
        self._kind = kind
        self._pools: OrderedDict[_Origin, _Pool] = OrderedDict()
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def target(self, url: str, shown: str | None = None) -> str:
        """The breaker target of ``url``: ``http/<host:port>``."""
        _, host, port = self._origin(self._parse(url, shown or url))
        return f"{self._kind}/{host}:{port}"

    @staticmethod
    def _parse(url: str, shown: str) -> httpx.URL:
        import httpx

        try:
            parsed = httpx.URL(url)
            host = parsed.host  # decoded here, not by httpx.URL: an invalid IDNA name raises now
        except (httpx.InvalidURL, TypeError, UnicodeError) as exc:
            reason = str(exc) if shown == url else "malformed"
            raise HttpRequestInvalid(f"URL {shown} is not a valid URL ({reason})") from None
        if parsed.scheme not in ("http", "https") or not host:
            raise HttpRequestInvalid(
                f"URL {shown} must be an absolute http:// or https:// URL with a host"
            ) from None
        return parsed

    @staticmethod
    def _origin(parsed: httpx.URL) -> _Origin:
        return parsed.scheme, parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)

    def _checkout(self, origin: _Origin) -> tuple[_Pool, list[_Pool]]:
        """The pool of ``origin``, now in use, and the idle pools it evicted (to close)."""
        found = self._pools.get(origin)
        if found is None:
            import httpx

            settings = self.settings
            if self._tls is None:  # loading the CA bundle takes tens of milliseconds: once per adapter
                self._tls = httpx.create_ssl_context(verify=settings.verify_tls)
            found = self._pools[origin] = _Pool(
                httpx.AsyncClient(
                    limits=httpx.Limits(
                        max_connections=settings.max_connections_per_host,
                        max_keepalive_connections=settings.max_keepalive_per_host,
                        keepalive_expiry=settings.keepalive_expiry,
                    ),
                    verify=self._tls,
                    follow_redirects=False,
                    headers={"User-Agent": settings.user_agent, "Accept-Encoding": "identity"},
                )
            )
        else:
            self._pools.move_to_end(origin)
        found.users += 1
        idle: list[_Pool] = []
        while len(self._pools) > MAX_CLIENTS:
            _, oldest = self._pools.popitem(last=False)
            oldest.evicted = True
            if oldest.users == 0:
                idle.append(oldest)
        return found, idle

    @staticmethod
    async def _close(pools: list[_Pool]) -> None:
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = _NO_JSON,
        content: str | bytes | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        shown: str | None = None,
    ) -> HttpAnswer:
        """Send one request and return the answer, whatever its status.

        ``deadline`` (on the event loop's clock) ends the request sooner than ``timeout`` would: the
        deadline of the step it runs for, so that this timeout, which counts against the host's
        breaker, fires before the step is cancelled, which counts as nothing.

        Raises :class:`HttpRequestInvalid` for what cannot be sent, :class:`HttpUnreachable` and
        :class:`HttpTimeout` for transport failures, and :class:`~kurative.errors.BreakerOpen` while
        the host's breaker is open. ``shown`` is the URL as messages may show it (default: ``url``).
        """
        shown = url if shown is None else shown
        what = f"{method} {shown}"
        if self._closed:
            raise TemporaryActionError(f"{what}: the HTTP adapter is shutting down")
        if not isinstance(method, str) or not _TOKEN.match(method):
            raise HttpRequestInvalid(f"{what}: {method!r} is not an HTTP method")
        parsed = self._parse(url, shown)
        sent_headers = _check_headers(headers or {}, what)
        body = _encode_body(json_body, content, sent_headers, what)
        limit = self.settings.timeout if timeout is None else timeout
        if not limit > 0:
            raise HttpRequestInvalid(f"{what}: timeout must be positive, got {limit}")
        origin = self._origin(parsed)
        target = f"{self._kind}/{origin[1]}:{origin[2]}"
        breaker = self._breakers(target) if self._breakers is not None else None
        pool, evicted = self._checkout(origin)
        try:
            await self._close(evicted)

            async def attempt() -> HttpAnswer:
                answer = await self._send(
                    pool.client, method, parsed, sent_headers, body, limit, deadline, what, url != shown
                )
                if answer.status >= 500:
                    raise _FailedAnswer(answer)
                return answer

            try:
                answer = await call_through(breaker, attempt, target=target)
            except _FailedAnswer as failed:
                answer = failed.answer
        finally:
            pool.users -= 1
            if pool.evicted and pool.users == 0:
                await self._close([pool])
        if answer.status >= 500 or answer.status == 429:
            await log.awarning("http_error", request=what, status=answer.status, target=target)
        return answer

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, bytes],
        body: bytes | None,
        limit: float,
        deadline: float | None,
        what: str,
        secret_url: bool,
    ) -> HttpAnswer:
        import httpx

        now = asyncio.get_running_loop().time()
        ends = now + limit if deadline is None else min(now + limit, deadline)
        limit = round(max(ends - now, 0.0), 3)
        timeout = httpx.Timeout(limit, connect=min(self.settings.connect_timeout, limit))
        try:
            async with asyncio.timeout_at(ends):
                raw = {name.encode("ascii"): value for name, value in headers.items()}
                request = client.build_request(method, url, headers=raw, content=body, timeout=timeout)
                response = await client.send(request, stream=True)
                try:
                    content, truncated, undecoded = await _read_body(
                        response, self.settings.max_response_bytes
                    )
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise HttpTimeout(f"{what}: no answer within {limit:g}s") from None
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise HttpRequestInvalid(
                f"{what}: cannot send the request: {_reason(exc, url, secret_url)}"
            ) from None
        except httpx.ConnectError as exc:
            raise HttpUnreachable(f"{what}: cannot connect: {_reason(exc, url, secret_url)}") from None
        except httpx.TransportError as exc:
            raise HttpUnreachable(f"{what}: the connection failed: {_reason(exc, url, secret_url)}") from None
        answer_headers = {key.lower(): value for key, value in response.headers.items()}
        return HttpAnswer(response.status_code, answer_headers, content, truncated, what, undecoded)

    async def aclose(self) -> None:
        """Close every connection pool; later requests fail with a temporary error."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), OrderedDict()
        await self._close(pools)


async def _read_body(response: httpx.Response, cap: int) -> tuple[bytes, bool, str]:
    """(body, truncated, why it was not kept) of ``response``, at most ``cap`` bytes read and kept.

    One gzip or deflate layer is inflated within the same bound; a body in stacked or unknown
    encodings, or whose compressed stream is corrupt, is not kept (and, for the former, not read).
    """
    encoding = response.headers.get("content-encoding", "")
    layers = [part.strip().lower() for part in encoding.split(",")]
    layers = [layer for layer in layers if layer not in ("", "identity")]
    if len(layers) > 1 or (layers and layers[0] not in _INFLATED):
        why = "stacked" if len(layers) > 1 else "unknown"
        return (
            b"",
            False,
            f"Content-Encoding {encoding.strip()!r} is {why}; only one gzip or deflate layer is read",
        )
    inflater = _Inflater(layers[0]) if layers else None
    chunks: list[bytes] = []
    size = read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if inflater is not None:
            try:
                data = inflater.feed(chunk, cap - size + 1)
            except zlib.error:
                return b"", False, f"its {layers[0]} stream is corrupt"
        else:
            data = chunk
        if size + len(data) > cap:
            chunks.append(data[: cap - size])
            return b"".join(chunks), True, ""
        chunks.append(data)
        size += len(data)
        if read > cap:  # a compressed stream this long that inflates to little is not read on
            return b"".join(chunks), True, ""
    cut_short = inflater is not None and read > 0 and not inflater.complete
    return b"".join(chunks), cut_short, ""


class _Inflater:
    """One gzip or deflate layer, inflated a chunk at a time within a bound: gzip members one after
    another (RFC 1952 allows several), deflate with or without its zlib wrapper (told by its first
    two bytes, as httpx tells it), however the chunks fall."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._head = b""
        self._stream: Any = zlib.decompressobj(_INFLATED[encoding]) if self._gzip else None

    def feed(self, chunk: bytes, room: int) -> bytes:
        """What ``chunk`` inflates to, at most ``room`` bytes; raises ``zlib.error`` when corrupt."""
        if self._stream is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._stream = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            chunk, self._head = self._head, b""
        out = self._stream.decompress(chunk, room)
        while self._gzip and self._stream.eof and self._stream.unused_data and len(out) < room:
            rest = self._stream.unused_data
            self._stream = zlib.decompressobj(_INFLATED["gzip"])
            out += self._stream.decompress(rest, room - len(out))
        return bytes(out)

    @property
    def complete(self) -> bool:
        """The stream (its last gzip member) ended: a body cut short is not."""
        return self._stream is not None and bool(self._stream.eof)


def host_port(name: str) -> str | None:
    """``name`` (``Hooks.Slack.com:443``) as breaker targets spell a host and port: lower case, an
    IDNA name decoded (``münchen.de:443``); None when it is not a host with a port."""
    import httpx

    if not re.search(r":\d{1,5}\Z", name) or any(char in name for char in "/?#@"):
        return None
    try:
        parsed = httpx.URL(f"http://{name}")
        host = parsed.host
    except (httpx.InvalidURL, TypeError, UnicodeError):
        return None
    port = parsed.port or 80
    return f"{host}:{port}" if host and port <= 65535 else None


def without_credentials(url: str) -> str:
    """``url`` as messages may show it: without the user name and password it may carry."""
    try:
        split = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if "@" not in split.netloc:
        return url
    return urllib.parse.urlunsplit(split._replace(netloc=split.netloc.rpartition("@")[2]))


def _reason(exc: Exception, url: httpx.URL, secret_url: bool) -> str:
    """The exception's words, without the URL or host when the URL is a secret."""
    text = str(exc) or type(exc).__name__
    if secret_url:
        for part in (str(url), url.host, str(url.raw_path.decode("ascii", "replace"))):
            if part and part != "/":
                text = text.replace(part, "<secret>")
    return text[:MAX_BODY_IN_MESSAGE]


def _check_headers(headers: Mapping[str, str], what: str) -> dict[str, bytes]:
    """Headers as bytes, refusing names that are not tokens and values that could split a header."""
    checked: dict[str, bytes] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise HttpRequestInvalid(f"{what}: header name {str(name)[:80]!r} is not a valid HTTP token")
        if not isinstance(value, str):
            raise HttpRequestInvalid(f"{what}: header {name} must be a string")
        if _BAD_VALUE_CHARS.search(value):
            raise HttpRequestInvalid(f"{what}: header {name} contains a line break or control character")
        try:
            checked[name] = value.strip().encode("latin-1")
        except UnicodeEncodeError:
            raise HttpRequestInvalid(
                f"{what}: header {name} has characters outside Latin-1; HTTP headers cannot carry them"
            ) from None
    return checked


def _encode_body(
    json_body: Any, content: str | bytes | None, headers: dict[str, bytes], what: str
) -> bytes | None:
    has_type = any(name.lower() == "content-type" for name in headers)
    if json_body is not _NO_JSON:
        if content is not None:
            raise HttpRequestInvalid(f"{what}: give a JSON body or a raw body, not both")
        try:
            encoded = json.dumps(json_body, allow_nan=False, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise HttpRequestInvalid(f"{what}: the JSON body cannot be encoded: {exc}") from None
        if not has_type:
            headers["Content-Type"] = b"application/json"
        return encoded
    if content is None:
        return None
    if isinstance(content, str):
        if not has_type:
            headers["Content-Type"] = b"text/plain; charset=utf-8"
        return content.encode("utf-8", errors="replace")
    return content
