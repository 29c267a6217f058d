"""How the REST API answers what goes wrong: every error an RFC 9457 problem document with the status
a client can act on (400 bad parameters, 404 unknown, 409 not in that state, 503 + Retry-After while
the journal cannot answer)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from kurative.errors import BreakerOpen, ExecutionNotFound, JournalConflict, JournalUnavailable
from kurative.ingress.api import ApiHooks, PlaybooksView
from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import Journal

pytestmark = pytest.mark.timeout(30)


class Failing:
    """A journal whose every read raises ``error``; records the filters it was asked for."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    async def list_executions(self, where: Any = None, *, limit: int = 50, cursor: str | None = None) -> Any:
        self.calls.append(("list_executions", (where, limit, cursor)))
        raise self.error or AssertionError

    async def record_approval(self, execution_id: str, decision: Any, who: str, reason: str = "") -> Any:
        self.calls.append(("record_approval", (execution_id, decision, who, reason)))
        raise self.error or AssertionError


class Client:
    """Requests straight into the ASGI app (no socket), one event loop per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            headers = {"Authorization": "Bearer t", **kwargs.pop("headers", {})}
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                return await http.request(method, path, headers=headers, **kwargs)

        return asyncio.run(send())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(journal: Failing, reload: Any = None) -> Client:
    async def commit(records: Any) -> tuple[str, ...]:
        return ()

    async def ready() -> list[str]:
        return []

    api = ApiHooks(
        journal=cast(Journal, journal), playbooks=lambda: PlaybooksView("", datetime.now(UTC)), reload=reload
    )
    settings = IngressSettings(credentials=Credentials(("t",), bearer_names=("alice",)), retry_after=7)
    app = create_app(settings, IngressHooks(commit=commit, readiness=ready, api=api))
    return Client(app)


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("state=sleeping", "state"),
        ("since=yesterday", "since"),
        ("until=0001-01-01T00:00:00%2B01:00", "until"),
        ("playbook=a%00b", "NUL"),
    ],
)
def test_bad_parameters_are_400_before_the_journal(query: str, word: str) -> None:
    journal = Failing()
    answer = client(journal).get(f"/api/v1/executions?{query}")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert word in answer.json()["detail"]
    assert journal.calls == []


def test_filters_reach_the_journal() -> None:
    journal = Failing(JournalUnavailable("connection refused"))
    query = "state=running&state=failed&alertname=WebDown&since=2026-12-01T08:00:00Z&limit=5&cursor=abc"
    answer = client(journal).get(f"/api/v1/executions?{query}")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "7"
    ((_, (where, limit, cursor)),) = journal.calls
    assert [s.value for s in where.states] == ["running", "failed"]
    assert where.alertname == "WebDown"
    assert where.created_after == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert (limit, cursor) == (5, "abc")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ExecutionNotFound("no execution 'x'"), 404),
        (JournalConflict("execution x is running, not awaiting approval"), 409),
        (BreakerOpen("journal", 12.0), 503),
    ],
)
def test_journal_refusals_become_problems(error: Exception, status: int) -> None:
    journal = Failing(error)
    answer = client(journal).post("/api/v1/executions/x/approve", json={"reason": "ok"})
    assert answer.status_code == status
    assert answer.json()["status"] == status
    assert journal.calls[0][1][2:] == ("alice", "ok")  # who is the token's name


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[1]", 400),
        (b'{"reason": 3}', 400),
        (b'{"why": "x"}', 400),
        (b"not json", 400),
        (b"[" * 60_000, 400),  # deeper than the JSON parser recurses
    ],
)
def test_a_decision_body_is_a_reason_or_nothing(body: bytes, status: int) -> None:
    journal = Failing()
    answer = client(journal).post(
        "/api/v1/executions/x/reject", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status
    assert journal.calls == []


@pytest.mark.parametrize(
    ("error", "status"),
    [(PermissionError(13, "Permission denied"), 503), (JournalUnavailable("down"), 503)],
)
def test_a_reload_that_fails_is_a_problem_not_a_crash(error: Exception, status: int) -> None:
    async def reload() -> PlaybooksView:
        raise error

    answer = client(Failing(), reload).post("/api/v1/reload")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "7"
