"""Reloading the playbooks file by file against a real journal: what stays, what goes, what is refused."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog.testing

from kurative.diagnostics import Diagnostic
from kurative.execution.reloading import ACTIVE, REFUSED, STALE, LiveRules, watch_roots
from kurative.execution.runner import PlaybookCache
from kurative.journal import Journal

pytestmark = pytest.mark.timeout(60)


def playbook(name: str, version: int = 1, message: str = "hello", alertname: str = "Probe") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: kurative/v1
        kind: Playbook
        metadata: {{name: {name}, version: {version}}}
        spec:
          trigger: {{alertname: [{alertname}]}}
          steps:
            - {{name: say, action: log, params: {{message: "{message}"}}}}
        """
    )


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    return folder


def live(rules: Path, journal: Journal) -> LiveRules:
    return LiveRules([str(rules)], journal, PlaybookCache(journal))


def versions(live_rules: LiveRules) -> dict[str, tuple[int, str]]:
    return {s.name: (s.version, s.status) for s in live_rules.playbooks() if s.status != REFUSED}


def refused(live_rules: LiveRules) -> list[tuple[str, int, str]]:
    return [(s.name, s.version, s.source) for s in live_rules.playbooks() if s.status == REFUSED]


async def test_first_load_then_only_changed_files_are_checked(rules: Path, journal: Journal) -> None:
    for n in range(5):
        (rules / f"p{n}.yaml").write_text(playbook(f"p{n}"))
    live_rules = live(rules, journal)
    first = await live_rules.reload("start")
    assert first.added == ("p0", "p1", "p2", "p3", "p4")
    assert first.files_checked == 5
    assert live_rules.active is not None
    assert len(live_rules.active.ruleset.playbooks) == 5
    before = live_rules.active
    again = await live_rules.reload("watch")
    assert again.files_checked == 0
    assert not again.changed
    assert live_rules.active is before

    (rules / "p2.yaml").write_text(playbook("p2", version=2, message="changed"))
    report = await live_rules.reload("watch")
    assert report.files_checked == 1
    assert report.updated == ("p2",)
    assert live_rules.active is not before
    assert live_rules.active.version != before.version
    assert versions(live_rules)["p2"] == (2, ACTIVE)


async def test_a_broken_file_keeps_the_last_good_version(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a"))
    (rules / "b.yaml").write_text(playbook("b"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (rules / "a.yaml").write_text(playbook("a", version=2).replace("action: log", "action: no.such"))
    report = await live_rules.reload("watch")
    assert not report.changed
    assert report.errors >= 1
    problem = next(d for d in live_rules.problems() if d.path.endswith("a.yaml"))
    assert problem.line > 0
    assert problem.column > 0
    assert "no.such" in problem.message
    assert versions(live_rules) == {"a": (1, STALE), "b": (1, ACTIVE)}
    # unparseable YAML: still the last good version
    (rules / "a.yaml").write_text("metadata: {name: a\n")
    await live_rules.reload("watch")
    assert versions(live_rules)["a"] == (1, STALE)
    (rules / "a.yaml").write_text(playbook("a", version=2))
    fixed = await live_rules.reload("watch")
    assert fixed.updated == ("a",)
    assert not fixed.problems
    assert versions(live_rules)["a"] == (2, ACTIVE)


async def test_deleted_file_removes_its_playbooks(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a") + "---\n" + playbook("a2"))
    (rules / "b.yaml").write_text(playbook("b"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (rules / "a.yaml").unlink()
    report = await live_rules.reload("watch")
    assert report.removed == ("a", "a2")
    assert set(versions(live_rules)) == {"b"}


async def test_a_missing_rules_path_keeps_what_was_read_under_it(
    rules: Path, journal: Journal, tmp_path: Path
) -> None:
    """An unmounted volume or a link flipped onto nothing is a fault, not a deletion: the playbooks
    stay in force (stale, E001 reported) until the path is back; then it is read as usual."""
    other = tmp_path / "other.yaml"
    other.write_text(playbook("o"))
    (rules / "team").mkdir()
    (rules / "team" / "a.yaml").write_text(playbook("a"))
    (rules / "b.yaml").write_text(playbook("b"))
    live_rules = LiveRules([str(rules), str(other)], journal, PlaybookCache(journal))
    await live_rules.reload("start")
    before = live_rules.active
    rules.rename(tmp_path / "away")
    other.unlink()
    report = await live_rules.reload("watch")
    assert report.removed == ()
    assert live_rules.active is before
    assert versions(live_rules) == {"a": (1, STALE), "b": (1, STALE), "o": (1, STALE)}
    assert sorted((d.code, d.path) for d in live_rules.problems()) == [
        ("E001", str(other)),
        ("E001", str(rules)),
    ]
    assert all("stay in force" in d.hint for d in live_rules.problems())
    assert live_rules.absent() == ()  # every path is missing, but playbooks are in force
    (tmp_path / "away").rename(rules)
    (rules / "b.yaml").write_text(playbook("b", version=2))
    (rules / "team" / "a.yaml").unlink()  # deleted while the path is there: it goes
    report = await live_rules.reload("watch")
    assert report.removed == ("a",)
    assert report.updated == ("b",)
    assert versions(live_rules) == {"b": (2, ACTIVE), "o": (1, STALE)}
    other.write_text(playbook("o"))
    await live_rules.reload("watch")
    assert versions(live_rules) == {"b": (2, ACTIVE), "o": (1, ACTIVE)}
    assert not live_rules.problems()


async def test_a_rules_path_gone_while_it_is_read_keeps_its_playbooks(
    rules: Path, journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unmounted between the listing of its files and their reading: the files read as deleted, but
    the path is missing, so what was read under it stays in force."""
    import kurative.execution.reloading as reloading

    (rules / "a.yaml").write_text(playbook("a"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.yaml").write_text(playbook("b"))
    live_rules = LiveRules([str(rules), str(other)], journal, PlaybookCache(journal))
    await live_rules.reload("start")
    listed = reloading.discover

    def then_unmounted(paths: Sequence[str]) -> tuple[list[Path], list[Diagnostic]]:
        found = listed(paths)
        shutil.rmtree(rules)
        return found

    monkeypatch.setattr(reloading, "discover", then_unmounted)
    report = await live_rules.reload("watch")
    assert report.removed == ()
    assert versions(live_rules) == {"a": (1, STALE), "b": (1, ACTIVE)}
    assert [(d.code, d.path) for d in live_rules.problems()] == [("E001", str(rules))]


async def test_absent_while_no_rules_path_exists_and_nothing_is_in_force(
    rules: Path, journal: Journal, tmp_path: Path
) -> None:
    later = tmp_path / "later"
    live_rules = LiveRules([str(later), str(later) + "/"], journal, PlaybookCache(journal))
    await live_rules.reload("start")
    assert live_rules.absent() == (str(later),)
    both = LiveRules([str(later), str(rules)], journal, PlaybookCache(journal))
    await both.reload("start")
    assert both.absent() == ()  # one path is there, empty: an empty ruleset is what it says
    later.mkdir()
    await live_rules.reload("watch")
    assert live_rules.absent() == ()


async def test_a_symlinked_playbook_whose_target_is_deleted_is_removed(
    rules: Path, journal: Journal, tmp_path: Path
) -> None:
    """A git-sync checkout or a store of links: deleting the target deletes the playbook; the link
    left dangling is no broken file that would keep the last good version in force."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.yaml").write_text(playbook("a"))
    (rules / "a.yaml").symlink_to(store / "a.yaml")
    (rules / "b.yaml").write_text(playbook("b"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (store / "a.yaml").unlink()
    report = await live_rules.reload("watch")
    assert report.removed == ("a",)
    assert versions(live_rules) == {"b": (1, ACTIVE)}
    assert not live_rules.problems()


async def test_a_link_loop_or_a_fifo_keeps_the_last_good_version(rules: Path, journal: Journal) -> None:
    """Unlike a deleted target, a link that turned into a loop or a FIFO is a broken file."""
    (rules / "a.yaml").write_text(playbook("a"))
    (rules / "b.yaml").write_text(playbook("b"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (rules / "a.yaml").unlink()
    (rules / "a.yaml").symlink_to("a.yaml")
    (rules / "b.yaml").unlink()
    os.mkfifo(rules / "b.yaml")
    report = await live_rules.reload("watch")
    assert report.removed == ()
    assert versions(live_rules) == {"a": (1, STALE), "b": (1, STALE)}
    assert sorted(d.code for d in live_rules.problems()) == ["E001", "E001"]


async def test_duplicate_name_in_another_file_is_refused(rules: Path, journal: Journal) -> None:
    (rules / "b.yaml").write_text(playbook("shared", message="from b"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (rules / "a.yaml").write_text(playbook("shared", version=5, message="from a"))  # sorts first
    report = await live_rules.reload("watch")
    assert not report.changed
    assert [d.code for d in report.refused] == ["E306"]
    assert report.refused[0].path.endswith("a.yaml")
    state = live_rules.playbooks()[0]
    assert state.source.endswith("b.yaml:1:1")
    assert state.version == 1
    assert [(name, version, source.rsplit("/", 1)[-1]) for name, version, source in refused(live_rules)] == [
        ("shared", 5, "a.yaml:1:1")
    ]


async def test_new_content_under_the_same_version_is_refused(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    first_hash = live_rules.playbooks()[0].content_hash
    (rules / "a.yaml").write_text(playbook("a", message="other words"))
    report = await live_rules.reload("watch")
    assert not report.changed
    assert [d.code for d in report.refused] == ["E401"]
    assert live_rules.playbooks()[0].content_hash == first_hash
    assert live_rules.playbooks()[0].status == STALE
    assert [(n, v) for n, v, _ in refused(live_rules)] == [("a", 1)]


async def test_content_recorded_by_an_earlier_process_is_refused(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a"))
    first = live(rules, journal)
    await first.reload("start")
    recorded = first.playbooks()[0].content_hash
    (rules / "a.yaml").write_text(playbook("a", message="edited without a new version"))
    restarted = live(rules, journal)
    report = await restarted.reload("start")
    assert [d.code for d in report.refused] == ["E401"]
    assert "journal" in report.refused[0].message
    # the version the journal holds stays in force, as it would have in the earlier process
    assert versions(restarted) == {"a": (1, STALE)}
    assert restarted.playbooks()[0].content_hash == recorded
    assert restarted.active is not None
    assert [c.playbook.content_hash for c in restarted.active.ruleset.playbooks] == [recorded]
    assert [(n, v) for n, v, _ in refused(restarted)] == [("a", 1)]
    again = await restarted.reload("watch")  # and stays so
    assert not again.changed
    assert versions(restarted) == {"a": (1, STALE)}
    (rules / "a.yaml").write_text(playbook("a", version=2, message="edited without a new version"))
    fixed = await restarted.reload("watch")
    assert fixed.updated == ("a",)
    assert versions(restarted) == {"a": (2, ACTIVE)}


async def test_new_versions_go_to_the_journal_history(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a"))
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    (rules / "a.yaml").write_text(playbook("a", version=2, message="v2"))
    await live_rules.reload("watch")
    states = {s.version: s.content_hash for s in live_rules.playbooks()}
    stored = await journal.get_playbook("a", 2, states[2])
    assert "v2" in stored.body


async def test_configmap_swap_is_one_change(rules: Path, journal: Journal) -> None:
    """The kubelet's layout: visible symlinks into ..data, which points at a timestamped folder."""
    first = rules / "..2026_12_01_10_00_00.1"
    first.mkdir()
    (first / "a.yaml").write_text(playbook("a"))
    (rules / "..data").symlink_to(first.name)
    (rules / "a.yaml").symlink_to("..data/a.yaml")
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    second = rules / "..2026_12_01_10_05_00.2"
    second.mkdir()
    (second / "a.yaml").write_text(playbook("a", version=2))
    (rules / "..data_tmp").symlink_to(second.name)
    os.replace(rules / "..data_tmp", rules / "..data")
    for leftover in first.iterdir():
        leftover.unlink()
    first.rmdir()
    report = await live_rules.reload("watch")
    assert report.updated == ("a",)
    assert versions(live_rules) == {"a": (2, ACTIVE)}
    assert not report.problems


async def test_configmap_key_removal_removes_the_playbook(rules: Path, journal: Journal) -> None:
    """The kubelet swaps ..data before it removes the visible link of a key that is gone: a reload
    in between sees that link dangling, and the playbook is removed then, without an error."""
    first = rules / "..2026_12_01_10_00_00.1"
    first.mkdir()
    (first / "a.yaml").write_text(playbook("a"))
    (first / "b.yaml").write_text(playbook("b"))
    (rules / "..data").symlink_to(first.name)
    (rules / "a.yaml").symlink_to("..data/a.yaml")
    (rules / "b.yaml").symlink_to("..data/b.yaml")
    live_rules = live(rules, journal)
    await live_rules.reload("start")
    second = rules / "..2026_12_01_10_05_00.2"
    second.mkdir()
    (second / "b.yaml").write_text(playbook("b"))
    (rules / "..data_tmp").symlink_to(second.name)
    os.replace(rules / "..data_tmp", rules / "..data")
    report = await live_rules.reload("watch")  # a.yaml still there, dangling
    assert report.removed == ("a",)
    assert versions(live_rules) == {"b": (1, ACTIVE)}
    assert not report.problems
    (rules / "a.yaml").unlink()
    assert not (await live_rules.reload("watch")).changed


def test_watch_roots_include_the_folder_of_each_symlink(tmp_path: Path) -> None:
    worktree = tmp_path / "git" / "worktrees" / "abc"
    (worktree / "playbooks").mkdir(parents=True)
    (tmp_path / "git" / "current").symlink_to(worktree)
    recursive, links = watch_roots([str(tmp_path / "git" / "current" / "playbooks")])
    assert recursive == {tmp_path / "git" / "current" / "playbooks"}
    assert links == {tmp_path / "git"}
    missing, links = watch_roots([str(tmp_path / "not-yet" / "rules")])
    assert missing == set()  # not its ancestors (that could be /): looked for again every second
    assert links == set()


async def test_a_problem_is_logged_once_not_at_every_reload(rules: Path, journal: Journal) -> None:
    (rules / "a.yaml").write_text(playbook("a").replace("action: log", "action: no.such"))
    live_rules = live(rules, journal)
    with structlog.testing.capture_logs() as first:
        await live_rules.reload("start")
    with structlog.testing.capture_logs() as later:
        await live_rules.reload("watch")
        await live_rules.reload("watch")
    assert [e["event"] for e in first].count("playbook_problem") >= 1
    assert [e["event"] for e in later] == []
    assert live_rules.problems()  # still reported where it is asked for
