"""Upgrades with several replicas on one PostgreSQL: migrations run once, an older replica keeps going.

Processes, not coroutines: ``kurative migrate`` and ``kurative serve --migrate`` started at the same
moment on an empty database all succeed and apply each migration once between them (the journal
serializes them with an advisory lock, ``journal/postgres.py`` ``_MIGRATION_LOCK``). Then a rolling
upgrade for real: the build from just before the newest migration (taken from this repository's
history with ``git archive``) runs and handles alerts, a replica of this build starts with
``--migrate`` next to it and migrates, and the old replica goes on committing, matching and running
executions on the migrated schema. What it cannot do is start again: an older build refuses a journal
newer than it knows (docs/operations.md, "Upgrade" and "Known limits").
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kurative.journal import ExecutionState, open_journal
from kurative.journal.schema import load_migrations
from tests.reliability.test_backup_restore import TOKEN, Serve, notification, ready, wait_for
from tests.support.postgres import PostgresServer, free_port, start_postgres

pytestmark = [pytest.mark.timeout(240), pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
LATEST = len(load_migrations("postgresql"))

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: note, version: 1}
spec:
  trigger: {alertname: [Upgrade]}
  approval: auto
  steps:
    - {name: first, action: log, params: {message: "one ${labels.pod}"}}
    - {name: second, action: log, params: {message: "two ${labels.pod}"}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with start_postgres() as started:
        yield started


def config(folder: Path, journal: str, port: int) -> Path:
    rules = folder / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "note.yaml").write_text(PLAYBOOK)
    path = folder / f"config-{port}.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "kurative/v1",
                "kind": "Config",
                "listen": {"host": "127.0.0.1", "port": port},
                "auth": {"bearerTokens": [{"secretRef": "am-token"}]},
                "journal": {"url": journal},
                "playbooks": {"paths": [str(rules)]},
                "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
                "secrets": {"am-token": {"env": "DRILL_AM_TOKEN"}},
                "logging": {"format": "json", "level": "info"},
            }
        )
    )
    return path


def applied_rows(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [int(r[0]) for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def kurative(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kurative.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_migrate_run_by_three_processes_at_once_applies_each_migration_once(server: PostgresServer) -> None:
    url = server.create_database("migrate_race")
    processes = [kurative("migrate", "--journal", url) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    applied: list[int] = []
    for out in outputs:
        found = re.search(r"applied migration ([\d, ]+);", out)
        if found:
            applied += [int(v) for v in found.group(1).split(", ")]
        else:
            assert "is up to date" in out, out
    # between them, every migration exactly once, and the table says so
    assert sorted(applied) == list(range(1, LATEST + 1)), outputs
    assert applied_rows(url) == list(range(1, LATEST + 1))


async def test_two_replicas_started_with_migrate_at_once_both_come_up(
    server: PostgresServer, tmp_path: Path
) -> None:
    url = server.create_database("serve_race")
    ports = [free_port(), free_port()]
    replicas = [
        Serve(["--config", str(config(tmp_path, url, port)), "--migrate"], tmp_path / f"serve-{port}.log")
        for port in ports
    ]
    try:
        for replica in replicas:
            replica.start()
        await asyncio.gather(
            *(ready(f"http://127.0.0.1:{p}", r) for p, r in zip(ports, replicas, strict=True))
        )
        assert applied_rows(url) == list(range(1, LATEST + 1))
        assert [r.terminate() for r in replicas] == [0, 0]
    finally:
        for replica in replicas:
            replica.kill()


def previous_build(folder: Path) -> Path:
    """The ``engine/`` of the commit before the newest migration was added, unpacked under ``folder``."""
    newest = sorted((ROOT / "engine/kurative/journal/migrations/postgresql").glob("*.sql"))[-1]
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shallow.stdout.strip() == "true":  # a CI checkout of depth 1: fetch the history the test needs
        subprocess.run(["git", "fetch", "--quiet", "--unshallow"], cwd=ROOT, capture_output=True, check=False)
    found = subprocess.run(
        ["git", "log", "--format=%H", "--diff-filter=A", "-1", "--", str(newest.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if found.returncode != 0 or not found.stdout.strip():
        message = f"no git history for {newest.name} here: {found.stderr.strip()[:200]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    archive = subprocess.run(
        ["git", "archive", f"{found.stdout.strip()}^", "engine"], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        message = f"no commit before {newest.name} here: {archive.stderr.decode(errors='replace')[:200]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "engine"


async def post(url: str, *pods: str) -> None:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "Upgrade", "pod": pod},
            "annotations": {},
            "startsAt": "2026-12-01T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
        }
        for pod in pods
    ]
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answer = await client.post(f"{url}/api/v1/alerts", json=notification(*alerts))
        assert answer.status_code == 200, answer.text


async def test_an_older_replica_keeps_working_while_a_newer_one_migrates(
    server: PostgresServer, tmp_path: Path
) -> None:
    engine = previous_build(tmp_path / "previous")
    old_latest = len(list((engine / "kurative/journal/migrations/postgresql").glob("*.sql")))
    assert old_latest == LATEST - 1
    url = server.create_database("rolling")
    old_port, new_port = free_port(), free_port()
    old_env = {"PYTHONPATH": str(engine)}
    old = Serve(["--config", str(config(tmp_path, url, old_port)), "--migrate"], tmp_path / "old.log")
    new = Serve(["--config", str(config(tmp_path, url, new_port)), "--migrate"], tmp_path / "new.log")
    old_url, new_url = f"http://127.0.0.1:{old_port}", f"http://127.0.0.1:{new_port}"
    journal: Any = None
    try:
        old.start(env=old_env)
        await ready(old_url, old)
        assert applied_rows(url) == list(range(1, old_latest + 1))
        await post(old_url, "before-1", "before-2")
        new.start()
        await ready(new_url, new)
        assert applied_rows(url) == list(range(1, LATEST + 1))
        # the old replica on the migrated schema: it commits, matches and runs, as does the new one
        await post(old_url, "during-1", "during-2", "during-3")
        await post(new_url, "during-4")
        await post(old_url, "before-1")  # a repeat, deduplicated across builds
        journal = await open_journal(url)

        async def settled(count: int) -> list[Any]:
            items = (await journal.list_executions(limit=100)).items
            done = len(items) == count and all(e.state.finished for e in items)
            return list(items) if done and not await journal.unmatched_alerts() else []

        await wait_for(lambda: settled(6), 60, "executions of both replicas finished")
        # the new replica stops (a rolling update in progress): the old one alone does the work
        assert new.terminate() == 0
        await post(old_url, "alone-1", "alone-2")

        async def finished() -> list[Any]:
            items = (await journal.list_executions(limit=100)).items
            done = len(items) == 8 and all(e.state.finished for e in items)
            return list(items) if done and not await journal.unmatched_alerts() else []

        executions = await wait_for(finished, 60, "executions on the migrated schema finished")
        assert {e.state for e in executions} == {ExecutionState.SUCCEEDED}
        assert old.process is not None
        assert old.process.poll() is None, "the old replica still runs"
        # ... but an old build does not start again on a journal newer than it knows
        assert old.terminate() == 0
        again = kurative(
            "serve",
            "--config",
            str(config(tmp_path, url, old_port)),
            env={**old_env, "DRILL_AM_TOKEN": TOKEN},
        )
        out = again.communicate(timeout=60)[0]
        assert again.returncode != 0
        assert f"has schema version {LATEST}, newer than version {old_latest}" in out, out
        logged = [
            json.loads(line) for line in (tmp_path / "old.log").read_text().splitlines() if line[:1] == "{"
        ]
        assert [e for e in logged if e.get("level") in {"error", "critical"}] == []
    finally:
        if journal is not None:
            await journal.close()
        old.kill()
        new.kill()
