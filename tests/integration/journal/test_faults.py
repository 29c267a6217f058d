"""The database failing under the journal: unreachable, locked, and killed in the middle of commits.

The kill test runs its own PostgreSQL (not the session one) and stops it with ``pg_ctl -m immediate``
while writers are committing alert batches and creating executions; after a restart, everything that
was acknowledged must be there and nothing half-written may be.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from kurative.errors import AlertError, ExecutionNotFound, JournalUnavailable
from kurative.journal import CreationStatus, IncomingAlert, LimitRequest, open_journal
from tests.support.postgres import free_port, start_postgres

from .helpers import alert, eventually, raw_sql, request

BATCH = 10


async def test_unreachable_postgres_is_journal_unavailable() -> None:
    url = f"postgresql://kurative:s3cret@127.0.0.1:{free_port()}/journal"
    with pytest.raises(JournalUnavailable, match="unavailable") as caught:
        await open_journal(url)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(JournalUnavailable, match=r"couldn't reach the journal at .* after \d+\.\d s"):
        await open_journal(url, wait=1.2)


async def test_sqlite_in_a_missing_directory_is_journal_unavailable(tmp_path: Path) -> None:
    with pytest.raises(JournalUnavailable, match="does not exist"):
        await open_journal(f"sqlite:///{tmp_path / 'nowhere' / 'journal.sqlite'}", migrate=True)


async def test_sqlite_locked_past_the_busy_timeout_is_journal_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    journal = await open_journal(url, migrate=True, busy_timeout=0.2)
    other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(JournalUnavailable, match="locked"):
            await journal.commit_alerts([alert()])
        other.execute("ROLLBACK")
        assert len(await journal.commit_alerts([alert()])) == 1
    finally:
        other.close()
        await journal.close()


@pytest.mark.postgres
async def test_killed_mid_commit_keeps_every_acknowledged_alert_and_nothing_half_written() -> None:
    with start_postgres() as server:
        url = server.create_database("journal")
        journal = await open_journal(url, migrate=True, pool_timeout=2.0, connect_timeout=1.0)
        acked: list[str] = []
        acked_batches: set[str] = set()
        failures: Counter[str] = Counter()
        stop = asyncio.Event()

        async def writer(number: int) -> None:
            sequence = 0
            while not stop.is_set():
                tag = f"w{number}-{sequence}"
                sequence += 1
                batch = [
                    IncomingAlert(
                        f"{tag}-{i}", "firing", {"alertname": "Load", "batch": tag}, {"i": i}, "test"
                    )
                    for i in range(BATCH)
                ]
                try:
                    ids = await journal.commit_alerts(batch)
                except JournalUnavailable:
                    failures["commit"] += 1
                    await asyncio.sleep(0.02)
                    continue
                acked.extend(ids)
                acked_batches.add(tag)

        async def creator() -> None:
            limit = LimitRequest("load", 1_000_000, 3600.0, "labels.alertname")
            while not stop.is_set():
                if not acked:
                    await asyncio.sleep(0.01)
                    continue
                alert_id = acked[-1]
                try:
                    await journal.create_executions(
                        alert_id,
                        [request("p1", key=f"{alert_id}/1", limits=(limit,)), request("p2", key=None)],
                    )
                except (JournalUnavailable, ExecutionNotFound):
                    failures["create"] += 1
                    await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(writer(n)) for n in range(4)] + [asyncio.create_task(creator())]
        await eventually(lambda: asyncio.sleep(0, len(acked) >= 40 * BATCH), within=60)
        before = len(acked)
        await asyncio.to_thread(server.stop, "immediate")
        await eventually(lambda: asyncio.sleep(0, failures["commit"] > 0), within=30)
        await asyncio.to_thread(server.start)
        # the pool reconnects by itself: new commits are acknowledged again
        await eventually(lambda: asyncio.sleep(0, len(acked) > before + 20 * BATCH), within=60)
        stop.set()
        await asyncio.gather(*tasks)
        await journal.close()

        stored = {row[0] for row in raw_sql(url, "SELECT id FROM alerts")}
        assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged alerts lost"
        per_batch = Counter(row[0] for row in raw_sql(url, "SELECT labels->>'batch' FROM alerts"))
        assert set(per_batch.values()) == {BATCH}, "a batch was committed in part"
        assert acked_batches <= set(per_batch)
        # executions: every one has both its playbooks, its dedupe key and its limit count, or none
        per_alert = raw_sql(
            url,
            "SELECT count(*) FILTER (WHERE playbook_name = 'p1'), "
            "count(*) FILTER (WHERE playbook_name = 'p2') FROM executions GROUP BY alert_id",
        )
        assert per_alert
        assert all(p1 == 1 and p2 >= 1 for p1, p2 in per_alert), "an alert got one playbook but not the other"
        orphans = raw_sql(
            url,
            "SELECT count(*) FROM executions e WHERE e.playbook_name = 'p1' AND NOT EXISTS "
            "(SELECT 1 FROM dedupe_keys d WHERE d.execution_id = e.id)",
        )
        assert orphans == [(0,)]
        hits = raw_sql(url, "SELECT count(*) FROM rate_limit_hits")[0][0]
        p1 = raw_sql(url, "SELECT count(*) FROM executions WHERE playbook_name = 'p1'")[0][0]
        assert hits == p1 > 0
        assert failures["commit"] > 0


@pytest.mark.postgres
async def test_a_restarted_server_is_used_again_without_reopening() -> None:
    with start_postgres() as server:
        url = server.create_database("journal")
        journal = await open_journal(url, migrate=True, pool_timeout=2.0, connect_timeout=1.0)
        try:
            (alert_id,) = await journal.commit_alerts([alert()])
            await asyncio.to_thread(server.stop, "fast")
            with pytest.raises(JournalUnavailable):
                await journal.create_executions(alert_id, [request()])
            with pytest.raises(AlertError):  # bad input is still refused first, without the database
                await journal.commit_alerts([IncomingAlert("fp", "bogus", {}, {}, "am")])
            await asyncio.to_thread(server.start)

            async def works_again() -> bool:
                try:
                    (outcome,) = await journal.create_executions(alert_id, [request()])
                except JournalUnavailable:
                    return False
                return outcome.status is CreationStatus.CREATED

            assert await eventually(works_again, within=30)
        finally:
            await journal.close()


_SQLITE_WRITER = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from kurative.journal import IncomingAlert, open_journal

async def main():
    journal = await open_journal(sys.argv[1])
    n = 0
    while True:
        tag = f"b{n}"
        batch = [IncomingAlert(f"{tag}-{i}", "firing", {"batch": tag}, {"i": i}, "test") for i in range(10)]
        ids = await asyncio.gather(journal.commit_alerts(batch), journal.commit_alerts(batch[:3]))
        print(tag, *ids[0], *ids[1], flush=True)  # acknowledged: committed
        n += 1

asyncio.run(main())
"""


async def test_sqlite_process_killed_mid_commit_keeps_every_acknowledged_alert(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    journal = await open_journal(url, migrate=True)
    await journal.close()
    root = str(Path(__file__).resolve().parents[3])
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SQLITE_WRITER, url, root, stdout=asyncio.subprocess.PIPE
    )
    assert writer.stdout is not None
    acked: list[str] = []
    for _ in range(30):
        line = await asyncio.wait_for(writer.stdout.readline(), timeout=30)
        acked.extend(line.decode().split()[1:])
    writer.kill()  # SIGKILL while it is committing the next batches
    await writer.wait()

    stored = {row[0] for row in raw_sql(url, "SELECT id FROM alerts")}
    assert set(acked) <= stored
    sizes = Counter(row[0] for row in raw_sql(url, "SELECT fingerprint FROM alerts"))
    # every batch of 10 and every batch of 3 went in whole: b<n>-0..2 appear twice, b<n>-3..9 once
    batches = Counter(row[0] for row in raw_sql(url, "SELECT json_extract(labels, '$.batch') FROM alerts"))
    assert set(batches.values()) <= {3, 10, 13}  # either batch, or both, never a part of one
    assert all(count in (1, 2) for count in sizes.values())
    reopened = await open_journal(url)
    try:
        assert len(await reopened.commit_alerts([alert()])) == 1
    finally:
        await reopened.close()
