"""The REST API under ``/api/v1``: what the daemon did and is doing, and the decisions a human takes.

Executions (filtered, paged by cursor), one execution with its alert, step journal and approvals,
``approve`` / ``reject`` / ``cancel`` (who comes from the authenticated credential, why from the
body), the alert inbox with its matched state, the playbooks in force with the loader's problems,
the breakers, and a reload of the playbooks. Every route needs credentials; every error is an RFC 9457
``application/problem+json`` document. The OpenAPI document (``kurative/schemas/openapi.v1.json``,
written by hand) is served at ``/api/v1/openapi.json`` and a test holds it equal to these routes.

The daemon hands in what the API reads through :class:`ApiHooks`: the journal, a snapshot of the
playbooks, the breakers, the reload and who to wake once an approval lets an execution run.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kurative.alerts import parse_rfc3339
from kurative.diagnostics import Diagnostic
from kurative.errors import (
    AlertError,
    BreakerOpen,
    ExecutionNotFound,
    JournalConflict,
    JournalError,
    JournalUnavailable,
    RecordRejected,
)
from kurative.ingress.problems import Problem
from kurative.journal import Decision, ExecutionFilter, ExecutionState, Journal
from kurative.linting.rulesets import PlaybookState

MAX_LIMIT = 500
"""The largest page the API hands out; the default is 50."""
DEFAULT_LIMIT = 50
MAX_REASON_BYTES = 64 * 1024
"""A decision's body is a reason, not a document."""


class BreakerView(Protocol):
    """One breaker as the API shows it (the execution layer's snapshot has these fields)."""

    @property
    def target(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def failures(self) -> int: ...
    @property
    def retry_after(self) -> float: ...


@dataclass(frozen=True, slots=True)
class PlaybooksView:
    """The playbooks in force and what the last load reported."""

    ruleset: str
    loaded_at: datetime
    playbooks: tuple[PlaybookState, ...] = ()
    problems: tuple[Diagnostic, ...] = ()
    """Errors and warnings with ``file:line:column``, as ``kurative lint`` prints them."""
    reloaded: bool = True
    """False when the last reload found errors and kept the ruleset that was in force."""


@dataclass(frozen=True, slots=True)
class ApiHooks:
    """What the REST API reads and calls; the daemon builds it."""

    journal: Journal
    playbooks: Callable[[], PlaybooksView]
    breakers: Callable[[], Sequence[BreakerView]] = lambda: ()
    reload: Callable[[], Awaitable[PlaybooksView]] | None = None
    """Load the playbooks again and swap the ruleset the matcher uses; None: no reload route."""
    decided: Callable[[], None] = lambda: None
    """An execution became runnable (approved): wake the workers."""


@cache
def openapi_document() -> dict[str, Any]:
    """The hand-written OpenAPI 3.1 document of every route the ingress serves."""
    text = resources.files("kurative").joinpath("schemas/openapi.v1.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


# -- JSON out -----------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A journal model as JSON values: enums by value, times as RFC 3339 in UTC."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping | list | tuple):
        return _tree(value)
    return value


def _tree(root: Mapping[Any, Any] | list[Any] | tuple[Any, ...]) -> Any:
    """:func:`plain` of nested mappings and sequences, walked without recursion: a step's output is
    stored JSON, which may nest as deep as the journal takes (about a thousand levels)."""

    def empty(node: Any) -> dict[str, Any] | list[Any]:
        return {} if isinstance(node, Mapping) else []

    out = empty(root)
    stack: list[tuple[Any, Any]] = [(root, out)]
    while stack:
        source, target = stack.pop()
        for key, item in source.items() if isinstance(source, Mapping) else enumerate(source):
            if isinstance(item, Mapping | list | tuple):
                converted: Any = empty(item)
                stack.append((item, converted))  # filled in later: the same object, in its place
            else:
                converted = plain(item)
            if isinstance(target, dict):
                target[str(key)] = converted
            else:
                target.append(converted)
    return out


def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    return {
        "where": f"{d.path}:{d.line}:{d.column}",
        "path": d.path,
        "line": d.line,
        "column": d.column,
        "code": d.code,
        "severity": d.severity.value,
        "message": d.message,
        "hint": d.hint,
    }


def playbooks_json(view: PlaybooksView) -> dict[str, Any]:
    return {
        "ruleset": view.ruleset,
        "loaded_at": plain(view.loaded_at),
        "reloaded": view.reloaded,
        "playbooks": [plain(p) for p in view.playbooks],
        "errors": [diagnostic_json(d) for d in view.problems],
    }


# -- query and body in --------------------------------------------------------------------------------


def _text(request: Request, name: str) -> str | None:
    given = request.query_params.getlist(name)
    if not given:
        return None
    if len(given) > 1:
        raise Problem(
            400, "Bad Request", f"query parameter {name!r} is given {len(given)} times; give it once"
        )
    value = given[0]
    if "\x00" in value:
        raise Problem(400, "Bad Request", f"query parameter {name!r} must not contain NUL")
    return value


def _limit(request: Request) -> int:
    given = _text(request, "limit")
    if given is None:
        return DEFAULT_LIMIT
    # the digits' count first: int() refuses more than 4,300 of them
    digits = given.lstrip("0")
    if (
        not given.isascii()
        or not given.isdigit()
        or len(digits) > 6
        or not 1 <= int(digits or "0") <= MAX_LIMIT
    ):
        raise Problem(
            400, "Bad Request", f"limit must be an integer from 1 to {MAX_LIMIT}, got {given[:40]!r}"
        )
    return int(digits)


def _moment(request: Request, name: str) -> datetime | None:
    given = _text(request, name)
    if given is None:
        return None
    try:
        return parse_rfc3339(given, name, any_fraction=True)  # as the webhooks, with any fraction
    except AlertError as exc:
        raise Problem(400, "Bad Request", str(exc)) from None


def _states(request: Request) -> tuple[ExecutionState, ...]:
    states = []
    for given in request.query_params.getlist("state"):
        try:
            states.append(ExecutionState(given))
        except ValueError:
            choices = ", ".join(s.value for s in ExecutionState)
            raise Problem(400, "Bad Request", f"state must be one of {choices}, got {given[:40]!r}") from None
    return tuple(states)


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, "Payload Too Large", f"a decision's body is at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem(400, "Bad Request", "the client went away before the body was complete") from None
    return b"".join(chunks)


def _execution_id(request: Request) -> str:
    execution_id: str = request.path_params["id"]
    if "\x00" in execution_id:  # no database stores it, so no execution has it
        raise Problem(404, "Not Found", "no execution has an id with NUL in it")
    return execution_id


async def _reason(request: Request) -> str:
    body = await _body(request, MAX_REASON_BYTES)
    if not body.strip():
        return ""
    if "json" not in request.headers.get("content-type", "application/json"):
        raise Problem(415, "Unsupported Media Type", 'send {"reason": "..."} as application/json')
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem(400, "Bad Request", 'the body is not JSON: send {"reason": "..."}') from None
    if not isinstance(data, dict) or set(data) - {"reason"}:
        raise Problem(400, "Bad Request", 'the body must be an object with at most "reason"')
    reason = data.get("reason", "")
    if not isinstance(reason, str) or "\x00" in reason:
        raise Problem(400, "Bad Request", "reason must be a string without NUL")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(400, "Bad Request", "reason must be valid Unicode") from None
    return reason


def _journal_problem(exc: JournalError | BreakerOpen, retry_after: float) -> Problem:
    if isinstance(exc, ExecutionNotFound):
        return Problem(404, "Not Found", str(exc))
    if isinstance(exc, JournalConflict):
        return Problem(409, "Conflict", str(exc))
    if isinstance(exc, RecordRejected):
        return Problem(400, "Bad Request", str(exc))
    wait = exc.retry_after if isinstance(exc, BreakerOpen) else retry_after
    what = "unreachable" if isinstance(exc, JournalUnavailable | BreakerOpen) else "failing"
    return Problem(
        503, "Service Unavailable", f"the journal is {what}: {exc}", {"Retry-After": str(max(1, round(wait)))}
    )


# -- the routes ---------------------------------------------------------------------------------------

Identify = Callable[[Request], str]


def api_routes(hooks: ApiHooks, identify: Identify, retry_after: float) -> list[Route]:
    """The ``/api/v1`` routes; ``identify`` answers who is calling or raises a 401 :class:`Problem`."""
    journal = hooks.journal

    def endpoint(work: Callable[[Request, str], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                who = identify(request)
                return JSONResponse(await work(request, who))
            except Problem as problem:
                return problem.response(request.url.path)
            except (JournalError, BreakerOpen) as exc:
                return _journal_problem(exc, retry_after).response(request.url.path)

        return handle

    async def list_executions(request: Request, who: str) -> Any:
        where = ExecutionFilter(
            states=_states(request),
            playbook_name=_text(request, "playbook"),
            alert_fingerprint=_text(request, "fingerprint"),
            alertname=_text(request, "alertname"),
            created_after=_moment(request, "since"),
            created_before=_moment(request, "until"),
        )
        page = await journal.list_executions(where, limit=_limit(request), cursor=_text(request, "cursor"))
        return {"items": plain(page.items), "next_cursor": page.next_cursor}

    async def show_execution(request: Request, who: str) -> Any:
        detail = await journal.get_execution(_execution_id(request))
        try:
            alert: Any = plain(await journal.get_alert(detail.execution.alert_id))
        except ExecutionNotFound:
            alert = None  # pruned before its execution
        return {
            "execution": plain(detail.execution),
            "alert": alert,
            "steps": plain(detail.steps),
            "approvals": plain(detail.approvals),
        }

    def decide(decision: Decision) -> Callable[[Request, str], Awaitable[Any]]:
        async def work(request: Request, who: str) -> Any:
            reason = await _reason(request)
            approval = await journal.record_approval(_execution_id(request), decision, who, reason)
            if decision is Decision.APPROVED:
                hooks.decided()
            return plain(approval)

        return work

    async def cancel(request: Request, who: str) -> Any:
        reason = await _reason(request)
        return plain(await journal.cancel_execution(_execution_id(request), who, reason))

    async def list_alerts(request: Request, who: str) -> Any:
        page = await journal.list_alerts(
            alertname=_text(request, "alertname"),
            fingerprint=_text(request, "fingerprint"),
            limit=_limit(request),
            cursor=_text(request, "cursor"),
        )
        return {"items": plain(page.items), "next_cursor": page.next_cursor}

    async def playbooks(request: Request, who: str) -> Any:
        return playbooks_json(hooks.playbooks())

    async def breakers(request: Request, who: str) -> Any:
        return {
            "items": [
                {"target": b.target, "state": b.state, "failures": b.failures, "retry_after": b.retry_after}
                for b in hooks.breakers()
            ]
        }

    async def openapi(request: Request, who: str) -> Any:
        return openapi_document()

    routes = [
        Route("/api/v1/openapi.json", endpoint(openapi), methods=["GET"]),
        Route("/api/v1/executions", endpoint(list_executions), methods=["GET"]),
        Route("/api/v1/executions/{id}", endpoint(show_execution), methods=["GET"]),
        Route("/api/v1/executions/{id}/approve", endpoint(decide(Decision.APPROVED)), methods=["POST"]),
        Route("/api/v1/executions/{id}/reject", endpoint(decide(Decision.REJECTED)), methods=["POST"]),
        Route("/api/v1/executions/{id}/cancel", endpoint(cancel), methods=["POST"]),
        Route("/api/v1/alerts", endpoint(list_alerts), methods=["GET"]),
        Route("/api/v1/playbooks", endpoint(playbooks), methods=["GET"]),
        Route("/api/v1/breakers", endpoint(breakers), methods=["GET"]),
    ]
    if hooks.reload is not None:
        reload = hooks.reload

        async def do_reload(request: Request, who: str) -> Any:
            try:
                return playbooks_json(await reload())
            except (JournalError, BreakerOpen):
                raise  # the journal's own answer
            except Exception as exc:  # the files could not be read: the playbooks in force stay
                wait = {"Retry-After": str(max(1, round(retry_after)))}
                detail = f"the reload failed, the playbooks in force stay: {type(exc).__name__}: {exc}"
                raise Problem(503, "Service Unavailable", detail, wait) from None

        routes.append(Route("/api/v1/reload", endpoint(do_reload), methods=["POST"]))
    return routes
