"""``kurative migrate`` and ``kurative journal prune`` against both backends, through the real CLI."""

from __future__ import annotations

import asyncio

import pytest

from kurative.cli import main
from kurative.journal import ExecutionState, open_journal
from kurative.journal.schema import load_migrations

from .helpers import new_execution, running


def test_migrate_status_then_migrate_then_up_to_date(
    journal_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    latest = len(load_migrations("sqlite" if journal_url.startswith("sqlite") else "postgresql"))
    assert main(["migrate", "--status", "--journal", journal_url]) == 1
    assert f"schema version 0, this kurative needs {latest}" in capsys.readouterr().out
    assert main(["migrate", "--journal", journal_url]) == 0
    applied = ", ".join(f"{n:04d}" for n in range(1, latest + 1))
    assert f"applied migration {applied}; schema version {latest}" in capsys.readouterr().out
    assert main(["migrate", "--journal", journal_url]) == 0
    assert "is up to date" in capsys.readouterr().out
    assert main(["migrate", "--status", "--journal", journal_url]) == 0


def test_prune_deletes_finished_work_only(journal_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def seed() -> tuple[str, str]:
        journal = await open_journal(journal_url, migrate=True)
        try:
            claim = await running(journal)
            await journal.release_execution(claim.lease, ExecutionState.FAILED, error="boom")
            return claim.execution.id, await new_execution(journal, key="still-pending")
        finally:
            await journal.close()

    finished, pending = asyncio.run(seed())
    assert main(["journal", "prune", "--journal", journal_url, "--older-than", "1h"]) == 0
    assert "deleted 0 finished executions" in capsys.readouterr().out
    assert main(["journal", "prune", "--journal", journal_url, "--older-than", "0s", "--batch", "1"]) == 0
    assert "deleted 1 finished executions, 1 alerts" in capsys.readouterr().out

    async def remaining() -> list[str]:
        journal = await open_journal(journal_url)
        try:
            return [e.id for e in (await journal.list_executions()).items]
        finally:
            await journal.close()

    assert asyncio.run(remaining()) == [pending]
    assert finished != pending


def test_bad_arguments_are_usage_errors(journal_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "prune", "--journal", journal_url, "--older-than", "7 days"]) == 2
    assert "invalid duration" in capsys.readouterr().err
    assert main(["journal", "prune", "--journal", journal_url, "--older-than", "7d", "--batch", "0"]) == 2
    assert main(["journal", "prune", "--journal", "mysql://x", "--older-than", "7d"]) == 2
    assert "unsupported journal URL" in capsys.readouterr().err
    # an unmigrated journal is refused with the command to run
    assert main(["journal", "prune", "--journal", journal_url, "--older-than", "7d"]) == 1
    assert "kurative migrate" in capsys.readouterr().err
