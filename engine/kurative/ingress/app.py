"""The ASGI app: alert webhooks that answer 200 only once the alerts are committed, and health.

``POST /api/v1/alerts`` takes Alertmanager's webhook (version 4), ``POST /api/v2/alerts`` the list
Prometheus sends. Each request is authenticated, its body read up to the size limit (413 beyond),
parsed (400 naming the JSON path and the problem), committed to the journal in one transaction, and
only then answered 200. While the journal cannot commit (unreachable, or its breaker open) the answer
is 503 with ``Retry-After``, and Alertmanager retries. Errors are ``application/problem+json``
(RFC 9457). ``/healthz`` says the process serves; ``/readyz`` whether it should get traffic.
The REST API (:mod:`kurative.ingress.api`) is mounted beside them when the daemon hands in its hooks.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kurative.errors import AlertError, BreakerOpen, JournalError, JournalUnavailable, RecordRejected
from kurative.ingress.api import ApiHooks, api_routes
from kurative.ingress.auth import authenticate
from kurative.ingress.payloads import Endpoint, inbox_records, parse_body
from kurative.ingress.problems import Problem
from kurative.ingress.settings import IngressSettings
from kurative.journal import IncomingAlert

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
    committed: Callable[[tuple[str, ...]], None] = lambda ids: None
    api: ApiHooks | None = None
    """What the REST API under ``/api/v1`` reads; None serves the webhooks and health only."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        detail = f"the body is {declared} bytes; at most {limit} bytes are accepted"
        raise Problem(413, "Payload Too Large", detail)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, "Payload Too Large", f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem(400, "Bad Request", "the client went away before the body was complete") from None
    return b"".join(chunks)


def _unavailable(detail: str, retry_after: float) -> Problem:
    seconds = str(max(1, math.ceil(retry_after)))
    return Problem(503, "Service Unavailable", detail, {"Retry-After": seconds})


def create_app(settings: IngressSettings, hooks: IngressHooks) -> Starlette:
    """The ingress app; ``settings.check()`` has already refused an unsafe listener."""

    def identity(request: Request) -> str:
        who = authenticate(settings.credentials, request.headers.get("authorization"))
        if who is None:
            raise Problem(
                401,
                "Unauthorized",
                "missing or wrong credentials: send Authorization: Bearer <token> or basic auth",
                {"WWW-Authenticate": 'Bearer realm="kurative", Basic realm="kurative"'},
            )
        return who

    async def receive(request: Request, endpoint: Endpoint) -> dict[str, Any]:
        who = identity(request)
        if "json" not in request.headers.get("content-type", "application/json"):
            raise Problem(415, "Unsupported Media Type", "send the alerts as application/json")
        body = await _read_body(request, settings.max_body_bytes)
        try:
            notification = parse_body(body, endpoint)
        except AlertError as exc:
            raise Problem(400, "Bad Request", str(exc)) from None
        records = inbox_records(notification, endpoint)
        if not records:
            return {"received": 0}
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
        hooks.committed(ids)
        group = notification.group
        if group is not None and group.truncated_alerts:
            log.warning("alerts_truncated", endpoint=endpoint, truncated=group.truncated_alerts, who=who)
        log.debug("alerts_committed", endpoint=endpoint, alerts=len(ids), who=who)
        return {"received": len(ids)}

    def webhook(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return JSONResponse(await receive(request, endpoint))
            except Problem as problem:
                return problem.response(request.url.path)

        return handle

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reasons = list(await hooks.readiness())
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return Problem(404, "Not Found", f"no such endpoint: {request.url.path}").response(request.url.path)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return Problem(405, "Method Not Allowed", f"{request.method} is not allowed here").response(
            request.url.path
        )

    api = api_routes(hooks.api, identity, settings.retry_after) if hooks.api is not None else []
    return Starlette(
        routes=[
            *api,
            Route("/api/v1/alerts", webhook("alertmanager"), methods=["POST"]),
            Route("/api/v2/alerts", webhook("prometheus"), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
