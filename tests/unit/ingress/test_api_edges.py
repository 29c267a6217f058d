"""The REST API at its edges, on the real app and a real SQLite journal: huge and repeated query
parameters, times that are not RFC 3339, a deeply nested step output, long reasons, a 405's Allow,
a bearer token that is not ASCII."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from kurative.ingress.api import ApiHooks, PlaybooksView
from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import (
    CreationStatus,
    ExecutionRequest,
    IncomingAlert,
    Journal,
    StepFinish,
    StepStart,
    StepStatus,
    open_journal,
)

pytestmark = pytest.mark.timeout(60)

TOKEN = "api-edges-t0ken"


def _alert() -> IncomingAlert:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop"}
    payload = {"status": "firing", "labels": labels, "annotations": {}, "startsAt": "2026-11-26T06:00:00Z"}
    return IncomingAlert("fp-1", "firing", labels, payload, "alertmanager")


def _request(playbook: str = "restart", approval: bool = False) -> ExecutionRequest:
    return ExecutionRequest(playbook, 1, f"sha256:{playbook}", requires_approval=approval)


@dataclass
class Api:
    journal: Journal
    http: httpx.AsyncClient

    async def execution(self, *playbooks: str, approval: bool = False) -> list[str]:
        (alert_id,) = await self.journal.commit_alerts([_alert()])
        outcomes = await self.journal.create_executions(
            alert_id, [_request(p, approval) for p in playbooks or ("restart",)]
        )
        assert all(o.status is CreationStatus.CREATED for o in outcomes)
        return [o.execution_id for o in outcomes if o.execution_id is not None]


async def _api(tmp_path: Path, credentials: Credentials) -> AsyncIterator[Api]:
    journal = await open_journal(f"sqlite:///{tmp_path / 'j.sqlite'}", migrate=True)

    async def commit(records: Any) -> tuple[str, ...]:
        return await journal.commit_alerts(records)

    async def ready() -> list[str]:
        return []

    hooks = ApiHooks(journal=journal, playbooks=lambda: PlaybooksView("r", datetime.now(UTC)))
    app = create_app(IngressSettings(credentials=credentials), IngressHooks(commit, ready, api=hooks))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as http:
        try:
            yield Api(journal, http)
        finally:
            await journal.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in _api(tmp_path, Credentials((TOKEN,), bearer_names=("alice",))):
        yield served


@pytest.mark.parametrize("path", ["/api/v1/executions", "/api/v1/alerts"])
@pytest.mark.parametrize("limit", ["0" * 4300 + "1000", "9" * 5000])
async def test_a_limit_of_thousands_of_digits_is_a_400_naming_it(api: Api, path: str, limit: str) -> None:
    answer = await api.http.get(path, params={"limit": limit})
    assert answer.status_code == 400, answer.text[:200]
    assert answer.headers["content-type"] == "application/problem+json"
    assert "limit must be an integer from 1 to 500" in answer.json()["detail"]
    assert (await api.http.get(path, params={"limit": "0" * 4300 + "50"})).status_code == 200


@pytest.mark.parametrize(
    "query", ["playbook=a&playbook=b", "limit=5&limit=6", "since=2026-01-01T00:00:00Z&since=x"]
)
async def test_a_filter_given_twice_is_a_400_not_half_ignored(api: Api, query: str) -> None:
    await api.execution("a", "b")
    answer = await api.http.get(f"/api/v1/executions?{query}")
    assert answer.status_code == 400, answer.text
    assert "is given 2 times; give it once" in answer.json()["detail"]


async def test_state_given_twice_still_means_any_of(api: Api) -> None:
    await api.execution()
    answer = await api.http.get("/api/v1/executions?state=pending&state=running")
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == 1


@pytest.mark.parametrize(
    "given",
    [
        "2026-W01-1",
        "2026-12-01",
        "20261201T080000Z",
        "2026-12-01T08Z",
        "2026-12-01x08:00:00Z",
        "9999-12-31T23:59:59-01:00",
    ],
)
async def test_since_and_until_take_rfc_3339_times_only(api: Api, given: str) -> None:
    for name in ("since", "until"):
        answer = await api.http.get("/api/v1/executions", params={name: given})
        assert answer.status_code == 400, f"{name}={given!r} accepted"
        assert answer.json()["detail"].startswith(f"{name}: ")
    for taken in ("2026-12-01T08:00:00+01:00", "2026-12-01T07:00:00.123456789012Z"):
        answer = await api.http.get("/api/v1/executions", params={"since": taken, "until": taken})
        assert answer.status_code == 200, answer.text


async def test_an_execution_whose_step_output_nests_deep_can_be_shown(api: Api) -> None:
    (execution_id,) = await api.execution()
    (claim,) = await api.journal.claim_executions("worker-1")
    output: Any = []
    for _ in range(899):  # an http.request step keeps a JSON answer of up to 16 KiB: this is 1.8 KB
        output = [output]
    await api.journal.record_step_started(claim.lease, StepStart(0, "notify", "http.request", 1, {}))
    finished = StepFinish(0, "notify", StepStatus.SUCCEEDED, 1, "http.request", {"body": output})
    await api.journal.record_step_finished(claim.lease, finished)
    answer = await api.http.get(f"/api/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text[:200]
    shown = answer.json()["steps"][-1]["output"]["body"]
    depth = 0
    while shown:
        (shown,) = shown
        depth += 1
    assert depth == 899


@pytest.mark.parametrize("decision", ["approve", "reject", "cancel"])
async def test_a_long_reason_is_recorded_whole(api: Api, decision: str) -> None:
    (execution_id,) = await api.execution(approval=True)
    reason = "incident INC-1234: " + "x" * 5000
    answer = await api.http.post(f"/api/v1/executions/{execution_id}/{decision}", json={"reason": reason})
    assert answer.status_code == 200, answer.text
    detail = (await api.http.get(f"/api/v1/executions/{execution_id}")).json()
    recorded = [a["reason"] for a in detail["approvals"]] + [detail["execution"]["error"] or ""]
    assert any(reason in text for text in recorded)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/executions", "GET"),
        ("GET", "/api/v1/executions/x/approve", "POST"),
        ("GET", "/api/v1/alerts", None),
    ],
)
async def test_a_405_says_which_methods_are_allowed(
    api: Api, method: str, path: str, allow: str | None
) -> None:
    answer = await api.http.request(method, path)
    if allow is None:  # GET /api/v1/alerts lists the inbox
        assert answer.status_code == 200
        return
    assert answer.status_code == 405
    assert allow in answer.headers["allow"]
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_bearer_token_that_is_not_ascii_authenticates_and_a_near_miss_does_not(
    tmp_path: Path,
) -> None:
    async for served in _api(tmp_path, Credentials(("tökén-1",), bearer_names=("carol",))):
        sent = {"Authorization": "Bearer tökén-1".encode()}
        assert (await served.http.get("/api/v1/breakers", headers=sent)).status_code == 200
        latin = {"Authorization": "Bearer tökén-1".encode("latin-1")}  # the same text, other bytes
        assert (await served.http.get("/api/v1/breakers", headers=latin)).status_code == 401
