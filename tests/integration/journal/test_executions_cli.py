"""``kurative executions``: tables and JSON for people and scripts, approvals with who and why."""

from __future__ import annotations

import asyncio
import json

import pytest

from kurative.cli import main
from kurative.journal import ExecutionState, open_journal

from .helpers import new_execution


def seed(journal_url: str, count: int = 2) -> list[str]:
    async def make() -> list[str]:
        journal = await open_journal(journal_url, migrate=True)
        try:
            return [await new_execution(journal, key=f"k{i}", approval=True) for i in range(count)]
        finally:
            await journal.close()

    return asyncio.run(make())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["executions", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_approve_reject_and_cancel(journal_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = seed(journal_url)
    code, out, _ = run(capsys, "list", "--journal", journal_url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "PLAYBOOK", "VERSION", "STATE", "ALERT", "AGE", "ERROR"]
    assert {row.split()[0] for row in rows} == {first, second}
    assert all("awaiting_approval" in row for row in rows)

    code, out, _ = run(capsys, "approve", first, "--journal", journal_url, "--as", "alice", "--reason", "ok")
    assert (code, out.strip()) == (0, f"execution {first} approved by alice")
    code, _, err = run(capsys, "approve", first, "--journal", journal_url, "--as", "bob")
    assert code == 1
    assert "not awaiting approval" in err

    code, out, _ = run(capsys, "show", first, "--journal", journal_url, "-o", "json")
    shown = json.loads(out)
    assert shown["execution"]["state"] == "pending"
    assert shown["approvals"] == [
        {
            "execution_id": first,
            "decision": "approved",
            "who": "alice",
            "reason": "ok",
            "decided_at": shown["approvals"][0]["decided_at"],
        }
    ]
    code, out, _ = run(capsys, "show", first, "--journal", journal_url)
    assert "approved   alice" in out

    code, out, _ = run(capsys, "reject", second, "--journal", journal_url, "--reason", "not now")
    assert code == 0
    assert "rejected" in out
    code, out, _ = run(capsys, "list", "--journal", journal_url, "--state", "cancelled", "-o", "yaml")
    assert f"id: {second}" in out
    code, out, _ = run(capsys, "cancel", first, "--journal", journal_url, "--reason", "changed my mind")
    assert code == 0
    assert "cancelled" in out
    code, out, _ = run(capsys, "list", "--journal", journal_url, "--state", ExecutionState.PENDING.value)
    assert out.strip() == "No executions found."


def test_unknown_ids_and_bad_limits(journal_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(journal_url, 1)
    code, _, err = run(capsys, "show", "no-such-id", "--journal", journal_url)
    assert code == 1
    assert "no-such-id" in err
    code, _, err = run(capsys, "list", "--journal", journal_url, "--limit", "0")
    assert code == 2
    assert "--limit" in err
