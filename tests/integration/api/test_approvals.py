"""The approval flow end to end over HTTP: a high-risk playbook waits, ``kurative executions approve
--server`` lets it run and records who (the name of the caller's token); a resolved alert cancels a
waiting one; two approvers racing get one 200 and one 409. Also the CLI's list (with ``--watch``),
show and ``kurative playbooks`` against the daemon, and a reload."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import BROKEN, TOKENS, WAITS_FOR_APPROVAL, auth_config, token_env
from tests.integration.daemon.conftest import Running, Setup, StartDaemon, alert_payload

pytestmark = pytest.mark.timeout(120)


def settings_for(setup: Setup) -> Any:
    auth = auth_config()
    tokens: list[dict[str, str]] = [{"secretRef": "am-token", "name": "alertmanager"}]
    tokens += auth["auth"]["bearerTokens"]  # type: ignore[index]
    secrets = {"am-token": {"env": "TEST_AM_TOKEN"}, **auth["secrets"]}  # type: ignore[dict-item]
    setup.env.update(token_env())
    return setup.settings(auth={"bearerTokens": tokens}, secrets=secrets)


def token_file(setup: Setup, who: str) -> Path:
    path = setup.folder / f"{who}.token"
    path.write_text(TOKENS[who] + "\n")
    return path


async def kurative(*args: str) -> tuple[int, str, str]:
    """The CLI as a separate process, as a person would run it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kurative.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def post_alert(client: httpx.AsyncClient, pod: str, status: str = "firing") -> None:
    payload = alert_payload({"labels": {"alertname": "WebDown", "pod": pod}}, status=status)
    answer = await client.post("/api/v1/alerts", json=payload)
    assert answer.status_code == 200, answer.text


async def waiting(client: httpx.AsyncClient, count: int) -> dict[str, str]:
    """Pod -> id of the executions awaiting approval, once there are ``count`` of them."""
    async with asyncio.timeout(30):
        while True:
            page = (await client.get("/api/v1/executions", params={"state": "awaiting_approval"})).json()
            if len(page["items"]) >= count:
                break
            await asyncio.sleep(0.1)
    found = {}
    for item in page["items"]:
        detail = (await client.get(f"/api/v1/executions/{item['id']}")).json()
        found[detail["alert"]["labels"]["pod"]] = item["id"]
    return found


async def state_of(client: httpx.AsyncClient, execution_id: str, *states: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            detail: dict[str, Any] = (await client.get(f"/api/v1/executions/{execution_id}")).json()
            if detail["execution"]["state"] in states:
                return detail
            await asyncio.sleep(0.1)


def api_client(running: Running, who: str) -> httpx.AsyncClient:
    assert running.daemon.url is not None
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    return httpx.AsyncClient(base_url=running.daemon.url, headers=headers, timeout=30)


async def test_approve_over_http_runs_and_records_who_a_resolved_alert_cancels_a_waiting_one(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.playbook("restart", textwrap.dedent(WAITS_FOR_APPROVAL))
    async with (
        start_daemon(settings_for(setup), setup.env) as running,
        running.client() as alertmanager,
        api_client(running, "alice") as alice,
    ):
        await post_alert(alertmanager, "web-1")
        await post_alert(alertmanager, "web-2")
        by_pod = await waiting(alice, 2)
        url = running.daemon.url
        assert url is not None

        code, out, err = await kurative(
            "executions", "approve", by_pod["web-1"], "--server", url,
            "--token-file", str(token_file(setup, "alice")), "--reason", "web-1 is stuck",
        )  # fmt: skip
        assert (code, out.strip()) == (0, f"execution {by_pod['web-1']} approved by alice"), err
        approved = await state_of(alice, by_pod["web-1"], "succeeded", "failed")
        assert approved["execution"]["state"] == "succeeded", approved["execution"]["error"]
        assert [(a["decision"], a["who"], a["reason"]) for a in approved["approvals"]] == [
            ("approved", "alice", "web-1 is stuck")
        ]
        assert [s["status"] for s in approved["steps"]] == ["started", "succeeded"]

        await post_alert(alertmanager, "web-2", status="resolved")
        cancelled = await state_of(alice, by_pod["web-2"], "cancelled")
        assert "resolved" in cancelled["execution"]["error"]
        code, _, err = await kurative(
            "executions", "approve", by_pod["web-2"], "--server", url,
            "--token-file", str(token_file(setup, "alice")),
        )  # fmt: skip
        assert code == 1
        assert "409 Conflict" in err
        assert "not awaiting approval" in err

        code, out, err = await kurative(
            "executions", "list", "--server", url, "--token-file", str(token_file(setup, "bob")), "-o", "json"
        )
        assert code == 0, err
        assert {e["id"]: e["state"] for e in json.loads(out)} == {
            by_pod["web-1"]: "succeeded",
            by_pod["web-2"]: "cancelled",
        }
        code, out, err = await kurative(
            "executions",
            "show",
            by_pod["web-1"],
            "--server",
            url,
            "--token-file",
            str(token_file(setup, "bob")),
        )
        assert code == 0, err
        assert "Alert name: WebDown" in out
        assert "approved   alice" in out
        code, out, err = await kurative(
            "executions", "show", by_pod["web-1"], "-o", "yaml",
            "--server", url, "--token-file", str(token_file(setup, "bob")),
        )  # fmt: skip
        assert code == 0, err
        assert "who: alice" in out
        assert "reason: web-1 is stuck" in out
        inbox = (await alice.get("/api/v1/alerts", params={"alertname": "WebDown"})).json()["items"]
        assert [(i["alert"]["status"], i["alert"]["labels"]["pod"]) for i in inbox] == [
            ("resolved", "web-2"),
            ("firing", "web-2"),
            ("firing", "web-1"),
        ]
        assert all(i["matched_at"] is not None for i in inbox)


async def test_two_approvers_racing_get_one_200_and_one_409(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.playbook("restart", textwrap.dedent(WAITS_FOR_APPROVAL))
    async with (
        start_daemon(settings_for(setup), setup.env) as running,
        running.client() as alertmanager,
        api_client(running, "alice") as alice,
        api_client(running, "bob") as bob,
    ):
        await post_alert(alertmanager, "web-1")
        (execution_id,) = (await waiting(alice, 1)).values()
        path = f"/api/v1/executions/{execution_id}/approve"
        answers = await asyncio.gather(
            alice.post(path, json={"reason": "mine"}), bob.post(path, json={"reason": "no, mine"})
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        (won,) = [a for a in answers if a.status_code == 200]
        (lost,) = [a for a in answers if a.status_code == 409]
        assert lost.headers["content-type"] == "application/problem+json"
        assert lost.json()["title"] == "Conflict"
        assert "not awaiting approval" in lost.json()["detail"]
        detail = await state_of(alice, execution_id, "succeeded")
        assert [a["who"] for a in detail["approvals"]] == [won.json()["who"]]
        assert won.json()["who"] in TOKENS


async def test_watch_playbooks_and_reload_against_the_daemon(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.playbook("restart", textwrap.dedent(WAITS_FOR_APPROVAL))
    setup.playbook("broken", textwrap.dedent(BROKEN))
    async with (
        start_daemon(settings_for(setup), setup.env) as running,
        running.client() as alertmanager,
        api_client(running, "alice") as alice,
    ):
        url = running.daemon.url
        assert url is not None
        bob = str(token_file(setup, "bob"))
        code, out, err = await kurative("playbooks", "--server", url, "--token-file", bob)
        assert code == 0, err
        header, row, *problems = out.splitlines()
        assert header.split() == ["NAME", "VERSION", "STATUS", "HASH", "SOURCE", "REASON"]
        assert row.split()[:3] == ["restart-web", "1", "active"]
        assert any(p.startswith(f"{setup.rules / 'broken.yaml'}:5:") for p in problems), problems

        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kurative.cli", "executions", "list", "--watch", "--interval", "0.2",
            "--server", url, "--token-file", bob, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert watch.stdout is not None
            first = await asyncio.wait_for(watch.stdout.readline(), 30)
            assert first.split()[:2] == [b"ID", b"PLAYBOOK"]  # the (empty) table's header
            await post_alert(alertmanager, "web-1")
            appeared = await asyncio.wait_for(watch.stdout.readline(), 30)
            assert b"awaiting_approval" in appeared
            execution_id = appeared.split()[0].decode()
            assert (await alice.post(f"/api/v1/executions/{execution_id}/cancel")).status_code == 200
            changed = await asyncio.wait_for(watch.stdout.readline(), 30)
            assert changed.split()[0].decode() == execution_id
            assert b"cancelled" in changed
        finally:
            watch.terminate()
            await asyncio.wait_for(watch.wait(), 30)

        setup.playbook("broken", textwrap.dedent(BROKEN).replace("labels.x == ]", "labels.x == 'y'"))
        reloaded = (await alice.post("/api/v1/reload")).json()
        assert reloaded["reloaded"] is True
        assert reloaded["errors"] == []
        assert {p["name"]: p["status"] for p in reloaded["playbooks"]} == {
            "broken": "active",
            "restart-web": "active",
        }
        (setup.rules / "bad.yaml").write_text("apiVersion: kurative/v1\nkind: Playbook\nspec: [\n")
        refused = (await alice.post("/api/v1/reload")).json()
        assert refused["reloaded"] is False
        assert [e["path"] for e in refused["errors"]] == [str(setup.rules / "bad.yaml")]
        assert len(refused["playbooks"]) == 2  # the ruleset in force stays
        assert running.daemon.url == url
