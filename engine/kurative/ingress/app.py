"""The ASGI app: alert webhooks that answer 200 only once the alerts are committed, and health.

``POST /api/v1/alerts`` takes Alertmanager's webhook (version 4), ``POST /api/v2/alerts`` the list
Prometheus sends. Each request is authenticated, its body read up to the size limit (413 beyond),
parsed (400 naming the JSON path and the problem), committed to the journal in one transaction, and
only then answered 200. While the journal cannot commit (unreachable, or its breaker open) the answer
is 503 with ``Retry-After``, and Alertmanager retries. Errors are ``application/problem+json``
(RFC 9457). ``/healthz`` says the process serves; ``/readyz`` whether it should get traffic.
The REST API (:mod:`kurative.ingress.api`) is mounted beside them when the daemon hands in its hooks.

The two webhooks are the hot path (one POST per Alertmanager group flush, thousands a second): they
are plain ASGI handlers that read the three headers they need and the body straight from the
server, and the app hands a POST to their exact paths to them before Starlette's middleware and
router. Everything else, and every other method on those paths (405), goes through Starlette.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kurative.alerts import Notification
from kurative.errors import AlertError, BreakerOpen, JournalError, JournalUnavailable, RecordRejected
from kurative.ingress.api import ApiHooks, api_routes
from kurative.ingress.auth import authenticate
from kurative.ingress.payloads import Endpoint, inbox_records, parse_body
from kurative.ingress.problems import Problem
from kurative.ingress.settings import IngressSettings
from kurative.journal import IncomingAlert
from kurative.metrics import CONTENT_TYPE, Metrics

log = structlog.get_logger("kurative.ingress")

Commit = Callable[[Sequence[IncomingAlert]], Awaitable[tuple[str, ...]]]
"""Commit a batch of inbox records durably and return their ids (the journal, behind its breaker)."""
Readiness = Callable[[], Awaitable[Sequence[str]]]
"""What keeps the daemon from being ready (journal unreachable, no ruleset, shutting down); empty: ready."""


@dataclass(frozen=True, slots=True)
class IngressHooks:
    """What the app calls into: the commit, readiness, and who to wake once alerts are committed."""

    commit: Commit
    readiness: Readiness
    committed: Callable[[tuple[str, ...], Notification], None] = lambda ids, notification: None
    api: ApiHooks | None = None
    """What the REST API under ``/api/v1`` reads; None serves the webhooks and health only."""
    metrics: Metrics | None = None
    """What ``/metrics`` serves (no credentials needed, like the health endpoints); None: no route."""
    scraped: Callable[[], Awaitable[None]] | None = None
    """Brings the gauges read from elsewhere (the journal's backlog) up to date before a scrape."""


REJECTED = {400: "invalid", 401: "unauthorized", 413: "too_large", 415: "unsupported_media_type"}
"""Why a webhook POST was refused, as the ``reason`` label (503: ``unavailable``)."""


def _over(digits: str, limit: int) -> bool:
    """Whether the decimal ``digits`` say more than ``limit``, without turning thousands of digits
    into an int (Python refuses more than 4,300)."""
    significant = digits.lstrip("0")
    return len(significant) > len(str(limit)) or int(significant or "0") > limit


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    if declared is not None and declared.isascii() and declared.isdigit() and _over(declared, limit):
        detail = f"the body is {declared} bytes; at most {limit} bytes are accepted"
        raise Problem(413, "Payload Too Large", detail)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise Problem(400, "Bad Request", "the client went away before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Problem(413, "Payload Too Large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Authorization, Content-Type and Content-Length (the first of each), as Starlette decodes them."""
    authorization = content_type = content_length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = authorization if authorization is not None else value.decode("latin-1")
        elif name == b"content-type":
            content_type = content_type if content_type is not None else value.decode("latin-1")
        elif name == b"content-length":
            content_length = content_length if content_length is not None else value.decode("latin-1")
    return authorization, content_type, content_length


async def _received(send: Send, count: int) -> None:
    """The 200 answer, as ``JSONResponse({"received": count})`` writes it."""
    body = b'{"received":%d}' % count
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _unavailable(detail: str, retry_after: float) -> Problem:
    seconds = str(max(1, math.ceil(retry_after)))
    return Problem(503, "Service Unavailable", detail, {"Retry-After": seconds})


def create_app(settings: IngressSettings, hooks: IngressHooks) -> Starlette:
    """The ingress app; ``settings.check()`` has already refused an unsafe listener."""

    def identity(authorization: str | None) -> str:
        who = authenticate(settings.credentials, authorization)
        if who is None:
            raise Problem(
                401,
                "Unauthorized",
                "missing or wrong credentials: send Authorization: Bearer <token> or basic auth",
                {"WWW-Authenticate": 'Bearer realm="kurative", Basic realm="kurative"'},
            )
        return who

    def count_received(endpoint: Endpoint, records: Sequence[IncomingAlert]) -> None:
        metrics = hooks.metrics
        assert metrics is not None
        counts: dict[str, int] = {}
        for record in records:
            status = str(record.status)  # firing or resolved: the records passed the journal's check
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            metrics.child(metrics.alerts_received, endpoint, status).inc(count)

    async def receive(scope: Scope, receive_message: Receive, endpoint: Endpoint) -> int:
        """Commit the alerts of one POST; how many were committed."""
        authorization, content_type, content_length = _headers(scope)
        who = identity(authorization)
        if "json" not in (content_type if content_type is not None else "application/json"):
            raise Problem(415, "Unsupported Media Type", "send the alerts as application/json")
        body = await _read_body(receive_message, content_length, settings.max_body_bytes)
        try:
            notification = parse_body(body, endpoint)
        except AlertError as exc:
            raise Problem(400, "Bad Request", str(exc)) from None
        records = inbox_records(notification, endpoint)
        if not records:
            return 0
        try:
            ids = await hooks.commit(records)
        except BreakerOpen as exc:
            raise _unavailable(
                f"the journal is failing; its breaker is open: {exc}", exc.retry_after
            ) from None
        except JournalUnavailable as exc:
            log.warning("alerts_not_committed", endpoint=endpoint, alerts=len(records), error=str(exc))
            raise _unavailable(f"the journal cannot commit: {exc}", settings.retry_after) from None
        except (RecordRejected, AlertError) as exc:
            raise Problem(400, "Bad Request", str(exc)) from None
        except JournalError as exc:  # any other refusal: not the sender's fault, so worth a retry
            log.warning("alerts_not_committed", endpoint=endpoint, alerts=len(records), error=str(exc))
            raise _unavailable(f"the journal did not commit: {exc}", settings.retry_after) from None
        hooks.committed(ids, notification)
        if hooks.metrics is not None:
            count_received(endpoint, records)
        group = notification.group
        if group is not None and group.truncated_alerts:
            log.warning("alerts_truncated", endpoint=endpoint, truncated=group.truncated_alerts, who=who)
        log.debug("alerts_committed", endpoint=endpoint, alerts=len(ids), who=who)
        return len(ids)

    def webhook(endpoint: Endpoint) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        async def handle(scope: Scope, receive_message: Receive, send: Send) -> None:
            try:
                count = await receive(scope, receive_message, endpoint)
            except Problem as problem:
                if hooks.metrics is not None:
                    reason = REJECTED.get(problem.status, "unavailable")
                    hooks.metrics.alerts_rejected.labels(endpoint, reason).inc()
                await problem.response(scope["path"])(scope, receive_message, send)
                return
            await _received(send, count)

        return handle

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reasons = list(await hooks.readiness())
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        assert hooks.metrics is not None
        if hooks.scraped is not None:
            await hooks.scraped()
        return Response(hooks.metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return Problem(404, "Not Found", f"no such endpoint: {request.url.path}").response(request.url.path)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allow = dict(getattr(exc, "headers", None) or {})  # Starlette's Allow: a 405 must carry it
        return Problem(405, "Method Not Allowed", f"{request.method} is not allowed here", allow).response(
            request.url.path
        )

    def request_identity(request: Request) -> str:
        return identity(request.headers.get("authorization"))

    api = api_routes(hooks.api, request_identity, settings.retry_after) if hooks.api is not None else []
    webhooks = {"/api/v1/alerts": webhook("alertmanager"), "/api/v2/alerts": webhook("prometheus")}
    return _IngressApp(
        webhooks,
        routes=[
            *api,
            *(Route(path, _Endpoint(handle), methods=["POST"]) for path, handle in webhooks.items()),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *([Route("/metrics", metrics, methods=["GET"])] if hooks.metrics is not None else []),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )


class _Endpoint:
    """An ASGI handler as a Starlette route's endpoint (a class instance: Starlette calls it as ASGI)."""

    def __init__(self, handle: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send)


class _IngressApp(Starlette):
    """Starlette, with a POST to a webhook's exact path handed straight to its handler."""

    def __init__(
        self, webhooks: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]], **options: Any
    ) -> None:
        super().__init__(**options)
        self._webhooks = webhooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handle = self._webhooks.get(scope["path"])
            if handle is not None:
                await handle(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
