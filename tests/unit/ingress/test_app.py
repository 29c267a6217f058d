"""The webhook handlers as plain ASGI: the same answers Starlette gave, header by header."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse

from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import IncomingAlert

pytestmark = pytest.mark.timeout(30)

TOKEN = {"authorization": "Bearer t0ken"}


def _webhook(count: int = 1) -> dict[str, Any]:
    alerts = [{"status": "firing", "labels": {"alertname": "Down", "pod": f"p{i}"}} for i in range(count)]
    return {"version": "4", "status": "firing", "receiver": "k", "groupKey": "g", "alerts": alerts}


def _app(committed: list[IncomingAlert], **settings: Any) -> Any:
    async def commit(records: Sequence[IncomingAlert]) -> tuple[str, ...]:
        committed.extend(records)
        return tuple(str(i) for i in range(len(records)))

    async def ready() -> list[str]:
        return []

    config = IngressSettings(credentials=Credentials(bearer_tokens=("t0ken",)), **settings)
    return create_app(config, IngressHooks(commit, ready))


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_200_is_what_jsonresponse_wrote() -> None:
    committed: list[IncomingAlert] = []
    async with _client(_app(committed)) as client:
        answer = await client.post("/api/v1/alerts", json=_webhook(3), headers=TOKEN)
    assert answer.status_code == 200
    assert answer.content == JSONResponse({"received": 3}).body
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(answer.content))
    assert len(committed) == 3


async def test_each_refusal_is_a_problem_document_naming_the_path() -> None:
    committed: list[IncomingAlert] = []
    wrong = {"authorization": "Bearer no"}
    xml = {**TOKEN, "content-type": "text/xml"}
    async with _client(_app(committed, max_body_bytes=2000)) as client:
        cases = [
            (401, await client.post("/api/v1/alerts", json=_webhook())),
            (401, await client.post("/api/v1/alerts", json=_webhook(), headers=wrong)),
            (415, await client.post("/api/v1/alerts", content=b"{}", headers=xml)),
            (413, await client.post("/api/v1/alerts", json=_webhook(100), headers=TOKEN)),
            (400, await client.post("/api/v1/alerts", content=b"{nope", headers=TOKEN)),
            (400, await client.post("/api/v2/alerts", json=_webhook(), headers=TOKEN)),
        ]  # fmt: skip
        for status, answer in cases:
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["status"] == status
            assert problem["instance"] in ("/api/v1/alerts", "/api/v2/alerts")
        assert "Bearer" in cases[0][1].headers["www-authenticate"]
        assert "line 1, column 2" in cases[4][1].json()["detail"]
        # other methods on the webhook paths, and other paths, still go through Starlette's router
        assert (await client.get("/api/v1/alerts", headers=TOKEN)).status_code == 405
        assert (await client.post("/api/v1/alerts/extra", headers=TOKEN)).status_code == 404
    assert committed == []


async def test_the_first_of_repeated_headers_counts_as_starlette_read_it() -> None:
    committed: list[IncomingAlert] = []
    app = _app(committed)
    body = json.dumps(_webhook()).encode()
    headers = [
        (b"authorization", b"Bearer t0ken"),
        (b"authorization", b"Bearer wrong"),
        (b"content-type", b"application/json"),
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
    ]
    sent = await _call(app, headers, [{"type": "http.request", "body": body}])
    assert sent[0]["status"] == 200
    assert len(committed) == 1


async def test_a_body_streamed_past_the_limit_or_cut_short_is_refused() -> None:
    committed: list[IncomingAlert] = []
    app = _app(committed, max_body_bytes=100)
    headers = [(b"authorization", b"Bearer t0ken")]
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 2
    sent = await _call(app, headers, chunks)
    assert sent[0]["status"] == 413
    went_away = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    sent = await _call(app, headers, went_away)
    assert sent[0]["status"] == 400
    assert b"went away" in sent[1]["body"]
    assert committed == []


async def test_a_declared_length_of_thousands_of_digits_is_413_not_a_crash() -> None:
    committed: list[IncomingAlert] = []
    app = _app(committed, max_body_bytes=100)
    for declared in (b"0" * 5000 + b"2", b"9" * 5001, b"0" * 5000 + b"101"):
        headers = [(b"authorization", b"Bearer t0ken"), (b"content-length", declared)]
        sent = await _call(app, headers, [{"type": "http.request", "body": b"{}"}])
        expected = 413 if declared.lstrip(b"0") not in (b"2",) else 400  # "{}" is no webhook
        assert sent[0]["status"] == expected, declared[-5:]
    assert committed == []


async def _call(app: Any, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]]) -> list[Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/v1/alerts", "raw_path": b"/api/v1/alerts", "query_string": b"",
        "root_path": "", "headers": headers, "server": ("127.0.0.1", 9095), "client": ("127.0.0.1", 1),
    }  # fmt: skip
    queue = list(messages)
    sent: list[Any] = []

    async def receive() -> Any:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
