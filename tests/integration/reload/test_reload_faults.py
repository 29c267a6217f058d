"""The reloader under faults: a journal outage, a watcher that fails, a change during a reload that
sets the watch up again, edits that change nothing, a renamed file, a playbook the journal refuses."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from kurative.errors import JournalUnavailable
from kurative.execution import reloading
from kurative.execution.reloading import REFUSED, LiveRules, Reloader, ReloadReport
from kurative.execution.runner import PlaybookCache
from kurative.journal import Journal, PlaybookVersion, PlaybookVersionConflict
from tests.integration.reload.test_live_rules import playbook

pytestmark = pytest.mark.timeout(60)


class Outage:
    """The real journal, except that recording playbooks fails while ``down``."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.down = False
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    async def record_playbooks(
        self, versions: Sequence[PlaybookVersion]
    ) -> tuple[PlaybookVersionConflict, ...]:
        self.calls += 1
        if self.down:
            raise JournalUnavailable("the database is down")
        return await self._journal.record_playbooks(versions)


def in_force(live: LiveRules) -> dict[str, int]:
    return {s.name: s.version for s in live.playbooks() if s.status != REFUSED}


async def test_failed_reloads_are_retried_by_one_chain(
    tmp_path: Path,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(playbook("a"))
    outage = Outage(journal)
    live = LiveRules([str(rules)], cast(Journal, outage), PlaybookCache(journal))
    await live.reload("start")
    monkeypatch.setattr(reloading, "RETRY_SECONDS", 0.1)
    reloader = Reloader(live, watch=False)
    stop = asyncio.Event()
    task = asyncio.create_task(reloader.run(stop))
    outage.down = True
    (rules / "a.yaml").write_text(playbook("a", version=2))
    for _ in range(10):  # ten SIGHUPs during one outage
        reloader.request("sighup")
    await asyncio.sleep(0.5)
    before = outage.calls
    await asyncio.sleep(1.0)
    per_second = outage.calls - before
    outage.down = False
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert per_second <= 15  # one chain: about 10 a second
    assert in_force(live) == {"a": 2}  # and the change went live once the journal was back


async def test_a_failing_watcher_is_set_up_again_not_fatal(
    tmp_path: Path,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import watchfiles
    from watchfiles._rust_notify import WatchfilesRustInternalError

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(playbook("a"))
    live = LiveRules([str(rules)], journal, PlaybookCache(journal))
    await live.reload("start")
    failures = 0

    async def failing(*args: Any, **options: Any) -> Any:  # as watchfiles fails at inotify's limit
        nonlocal failures
        failures += 1
        raise WatchfilesRustInternalError("error in underlying watcher: max files watch")
        yield  # pragma: no cover

    monkeypatch.setattr(watchfiles, "awatch", failing)
    monkeypatch.setattr(reloading, "RETRY_SECONDS", 0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(Reloader(live, watch=True).run(stop))
    await asyncio.sleep(0.6)
    assert not task.done()
    stop.set()
    await task
    assert failures >= 2


async def test_a_change_while_the_watch_follows_a_flip_is_not_lost(
    tmp_path: Path,
    journal: Journal,
) -> None:
    base = tmp_path / "sync"
    (base / "v1").mkdir(parents=True)
    (base / "v2").mkdir(parents=True)
    (base / "v1" / "a.yaml").write_text(playbook("a"))
    (base / "v2" / "a.yaml").write_text(playbook("a", version=2))
    current = base / "current"
    current.symlink_to("v1")
    live = LiveRules([str(current)], journal, PlaybookCache(journal))
    await live.reload("start")
    original = live.reload
    written = asyncio.Event()

    async def slow_reload(trigger: str) -> ReloadReport:
        report = await original(trigger)
        if trigger == "watch" and report.updated and not written.is_set():
            written.set()
            (base / "v2" / "b.yaml").write_text(playbook("b"))  # written while this reload runs
            await asyncio.sleep(0.6)
        return report

    live.reload = slow_reload  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(Reloader(live, watch=True, debounce_ms=200).run(stop))
    await asyncio.sleep(0.5)
    (base / "tmp-link").symlink_to("v2")
    os.replace(base / "tmp-link", current)  # git-sync's atomic flip
    await asyncio.wait_for(written.wait(), 10)
    async with asyncio.timeout(10):
        while in_force(live) != {"a": 2, "b": 1}:
            await asyncio.sleep(0.05)
    stop.set()
    await task


async def test_an_edit_that_changes_no_playbook_changes_nothing(tmp_path: Path, journal: Journal) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ab.yaml").write_text(playbook("a") + "---\n" + playbook("b"))
    live = LiveRules([str(rules)], journal, PlaybookCache(journal))
    await live.reload("start")
    before = live.active
    (rules / "ab.yaml").write_text("# a comment\n" + playbook("a") + "---\n" + playbook("b"))
    report = await live.reload("watch")
    assert report.files_checked == 1
    assert not report.changed
    assert live.active is before


async def test_renaming_the_file_in_force_keeps_its_version(tmp_path: Path, journal: Journal) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "b.yaml").write_text(playbook("x", message="from b"))
    live = LiveRules([str(rules)], journal, PlaybookCache(journal))
    await live.reload("start")
    (rules / "a.yaml").write_text(playbook("x", version=2, message="a duplicate in a"))
    await live.reload("watch")
    assert in_force(live) == {"x": 1}
    os.rename(rules / "b.yaml", rules / "c.yaml")
    report = await live.reload("watch")
    assert not report.changed
    (state,) = [s for s in live.playbooks() if s.status != REFUSED]
    assert (state.version, state.status) == (1, "active")
    assert state.source.split(":")[0].endswith("c.yaml")
    (rules / "c.yaml").unlink()  # the duplicate's turn, now that the name is free
    assert (await live.reload("watch")).updated == ("x",)
    assert in_force(live) == {"x": 2}


async def test_a_playbook_the_journal_refuses_does_not_hold_up_the_others(
    tmp_path: Path,
    journal: Journal,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(playbook("a"))
    live = LiveRules([str(rules)], journal, PlaybookCache(journal))
    await live.reload("start")
    quotes = '"' * 600_000  # under 1 MB of YAML, over 1 MB as the JSON the journal keeps
    (rules / "big.yaml").write_text(
        "apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: big, version: 1}\nspec:\n"
        "  trigger: {alertname: [Probe]}\n  steps:\n    - name: say\n      action: log\n"
        f"      params:\n        message: |\n          {quotes}\n"
    )
    (rules / "b.yaml").write_text(playbook("b"))
    report = await live.reload("watch")
    assert report.added == ("b",)
    assert [d.code for d in report.refused] == ["E402"]
    assert in_force(live) == {"a": 1, "b": 1}
