"""The live playbooks: loaded file by file, reloaded when their files change, swapped as one ruleset.

:class:`LiveRules` keeps, for every playbook file under the rules paths, a digest of its content and
the playbooks it gave at its last check. A reload (a watched change, SIGHUP, ``POST /api/v1/reload``)
lists the files again, reads them, and checks only those whose content changed, completely (schema,
expressions, actions: what lint checks). Then it builds the next ruleset and swaps it in one
assignment, so the matcher sees the old ruleset or the new one, never a mix:

- a file that no longer checks keeps the last good version of each of its playbooks active, and its
  diagnostics are what :meth:`LiveRules.problems` reports until it is fixed;
- a deleted file removes its playbooks;
- a name already active from another file is refused (the active one stays), and so is new content
  under a version that is already active or recorded in the journal (raise ``metadata.version``);
- every version that becomes active is recorded in the journal's ruleset history first; executions
  already running finish on the version they started with (the runner reads it by name, version and
  content hash).

A reload never raises for bad content and never stops the daemon: what it did is returned as a
:class:`ReloadReport` and logged with what was added, updated, removed and refused.

:func:`watch_roots` says what to watch so that atomic swaps are seen: a Kubernetes ConfigMap volume
replaces its ``..data`` symlink (inside the watched folder) and git-sync flips a symlink such as
``current`` that is part of the rules path itself, so the folder holding each symlink on the way is
watched as well, and the watch is set up again when a symlink points elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from kurative.diagnostics import Diagnostic, Severity, has_errors
from kurative.errors import KurativeError, RecordRejected
from kurative.execution.matcher import ActiveRuleset
from kurative.execution.runner import PlaybookCache, playbook_record_body
from kurative.journal import Journal, PlaybookVersion, PlaybookVersionConflict
from kurative.linting.checks import check_ruleset
from kurative.linting.lint import lint_bytes
from kurative.linting.rulesets import PlaybookState, ruleset_version
from kurative.matching.ruleset import Ruleset
from kurative.metrics import Metrics
from kurative.playbooks.loading import discover, is_gone
from kurative.playbooks.models import Playbook
from kurative.playbooks.yamlload import read_bounded

log = structlog.get_logger("kurative.reload")

ACTIVE = "active"
STALE = "stale"
"""A playbook whose file no longer says what is active (it does not check, or was refused): the
last good version stays active."""
REFUSED = "refused"
"""A version that was not put in force (a duplicate name, new content under an old version)."""


def _state(playbook: Playbook, status: str, reason: str = "", path: str | None = None) -> PlaybookState:
    """``path``: the file it is in force from, when that is not where this object was read."""
    where = f"{path or playbook.source.path}:{playbook.source.line}:{playbook.source.column}"
    return PlaybookState(playbook.name, playbook.version, playbook.content_hash, where, status, reason)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    trigger: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    refused: tuple[Diagnostic, ...] = ()
    problems: tuple[Diagnostic, ...] = ()
    """Everything wrong in the files now, refusals included, sorted."""
    files_checked: int = 0
    ruleset: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def errors(self) -> int:
        return sum(d.severity is Severity.ERROR for d in self.problems)


@dataclass(frozen=True, slots=True)
class _File:
    digest: str
    playbooks: tuple[Playbook, ...]
    """The playbooks of this file that passed every check at its last check."""
    diagnostics: tuple[Diagnostic, ...]
    signature: tuple[int, ...] | None = None
    """What ``stat`` said of the file when its content was last read, and when that was."""

    @property
    def broken(self) -> bool:
        return has_errors(self.diagnostics)


@dataclass(slots=True)
class _Scan:
    files: dict[str, _File] = field(default_factory=dict)
    missing: list[Diagnostic] = field(default_factory=list)
    """A rules path that does not exist (E001): what was last read under it stays in force."""
    checked: int = 0

    def under_missing(self, path: str) -> bool:
        """``path`` (a file read before) lies under a rules path that is missing now."""
        return any(path == d.path or path.startswith(d.path.rstrip(os.sep) + os.sep) for d in self.missing)


SETTLED_NS = 1_000_000_000
"""A file last modified this long before it was read is not read again while ``stat`` says the same
(file times are coarse: a file written just before or while it was read may change again without its
time or size moving, so such a file is read on every pass until it has settled, as git does)."""


def _signature(path: str) -> tuple[int, ...] | None:
    try:
        info = os.stat(path)  # through symlinks: a ConfigMap swap changes what the path leads to
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, time.time_ns())


def _unchanged(previous: _File, now: tuple[int, ...] | None) -> bool:
    before = previous.signature
    if before is None or now is None or before[:5] != now[:5]:
        return False
    read_at, modified_at = before[5], max(before[3], before[4])
    return modified_at < read_at - SETTLED_NS


def _read(path: str) -> tuple[str, bytes | None, Diagnostic | None]:
    """What the file holds now: a digest, and the bytes it is of or why they cannot be read (then the
    digest is of that reason, so the file is checked again when it changes)."""
    raw, problem = read_bounded(path)
    if raw is None:
        return f"unreadable:{problem.message if problem else ''}", None, problem
    return hashlib.sha256(raw).hexdigest(), raw, None


def _check_file(
    path: str, digest: str, content: tuple[bytes | None, Diagnostic | None], signature: tuple[int, ...] | None
) -> _File:
    # the content checked is the content digested: a write meanwhile shows as a new digest next time
    raw, problem = content
    if raw is None:
        return _File(digest, (), (problem,) if problem else (), signature)
    result = lint_bytes(path, raw)
    return _File(digest, result.playbooks, tuple(result.diagnostics), signature)


def _scan(paths: Sequence[str], known: dict[str, _File]) -> _Scan:
    found, missing = discover(paths)
    hint = "check the path; the playbooks read under it before stay in force until it is back"
    scan = _Scan(missing=[replace(d, hint=hint) for d in missing])
    for file in found:
        name = str(file)
        previous = known.get(name)
        signature = _signature(name)
        if previous is not None and _unchanged(previous, signature):
            scan.files[name] = previous
            continue
        digest, raw, problem = _read(name)
        if raw is None and is_gone(file):
            continue  # deleted since it was listed (or the target of its symlink): its playbooks go
        if previous is not None and previous.digest == digest:
            scan.files[name] = replace(previous, signature=signature)
        else:
            scan.files[name] = _check_file(name, digest, (raw, problem), signature)
            scan.checked += 1
    listed = {d.path for d in scan.missing}
    for given in paths:  # a path gone while it was read (unmounted): its unread files did not go
        path = Path(given)
        if str(path) not in listed and not path.exists():
            listed.add(str(path))
            scan.missing.append(Diagnostic.make(str(path), 0, 0, "E001", "no such file or directory", hint))
    return scan


def _refusal(playbook: Playbook, code: str, message: str, hint: str) -> Diagnostic:
    line, column = playbook.source.position(("metadata", "version"))
    return Diagnostic.make(playbook.source.path, line, column, code, message, hint)


def _same(one: Playbook, other: Playbook) -> bool:
    return one.version == other.version and one.content_hash == other.content_hash


class LiveRules:
    """The playbooks under ``paths`` as the daemon runs them; :attr:`active` is what the matcher uses."""

    def __init__(
        self,
        paths: Sequence[str],
        journal: Journal,
        cache: PlaybookCache,
        *,
        swapped: Callable[[ActiveRuleset], None] | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self._wanted = frozenset(str(Path(p)) for p in self.paths)
        self._journal = journal
        self._cache = cache
        self._swapped = swapped
        self._lock = asyncio.Lock()
        self._files: dict[str, _File] = {}
        self._origin: dict[str, str] = {}
        """Active playbook name -> the file it came from."""
        self._playbooks: dict[str, Playbook] = {}
        self._problems: tuple[Diagnostic, ...] = ()
        self._missing: frozenset[str] = frozenset()
        """The rules paths that did not exist at the last reload."""
        self._refused: tuple[PlaybookState, ...] = ()
        self._logged: frozenset[Diagnostic] = frozenset()
        """The problems already logged: a reload logs only those that are new."""
        self.active: ActiveRuleset | None = None
        self.last: ReloadReport | None = None

    # -- what is in force ----------------------------------------------------------------------------

    def playbooks(self) -> tuple[PlaybookState, ...]:
        """Every playbook in force (``active``, or ``stale``: its file says something else now), then
        the versions refused at the last reload."""
        states = []
        for name in sorted(self._playbooks):
            playbook = self._playbooks[name]
            current = self._files.get(self._origin[name])
            stale = current is None or not any(_same(p, playbook) for p in current.playbooks)
            states.append(_state(playbook, STALE if stale else ACTIVE, path=self._origin[name]))
        return (*states, *self._refused)

    def problems(self) -> tuple[Diagnostic, ...]:
        return self._problems

    def absent(self) -> tuple[str, ...]:
        """Every rules path, when none of them exists and no playbook is in force (a git-sync clone
        not there yet, a mistyped path): then there is nothing to match against yet, which is not
        the same as an empty ruleset."""
        if self._playbooks or not self._wanted or not self._wanted <= self._missing:
            return ()
        return tuple(sorted(self._wanted))

    # -- reload --------------------------------------------------------------------------------------

    async def reload(self, trigger: str) -> ReloadReport:
        """Check what changed under the paths and swap in the ruleset it gives. Never raises for bad
        content; a journal that cannot record the new versions keeps the current ruleset (and raises,
        so that the caller can try again)."""
        async with self._lock:
            scan = await asyncio.to_thread(_scan, self.paths, dict(self._files))
            report = await self._apply(trigger, scan)
        self.last = report
        _log_report(report, self._logged)
        self._logged = frozenset(report.problems)
        return report

    async def _apply(self, trigger: str, scan: _Scan) -> ReloadReport:
        order = _order(scan)

        def rank(playbook: Playbook) -> tuple[bool, bool, tuple[int, int]]:
            # Of a name offered twice: the version in force keeps it (wherever its file went), then
            # the one from the file it came from, then the first in file order.
            current = self._playbooks.get(playbook.name)
            same = current is not None and _same(current, playbook)
            return not same, self._origin.get(playbook.name) != playbook.source.path, order(playbook)

        ordered = sorted(self._offered(scan), key=rank)
        refused = check_ruleset(ordered)
        rejected: list[PlaybookState] = []
        kept: dict[str, Playbook] = {}
        origin: dict[str, str] = {}
        for playbook in ordered:
            name = playbook.name
            if name in kept:
                if all(playbook is not p for p in self._playbooks.values()):
                    reason = f"the name is already in force from {origin[name]}"
                    rejected.append(_state(playbook, REFUSED, reason))
                continue
            origin[name] = playbook.source.path
            current = self._playbooks.get(name)
            if current is not None and _same(current, playbook):
                kept[name] = current  # the same version: nothing to compile or record again
            elif current is not None and current.version == playbook.version:
                refused.append(
                    _refusal(
                        playbook,
                        "E401",
                        f"playbook {name!r} changed but metadata.version is still "
                        f"{playbook.version}: the version in force stays",
                        "raise metadata.version when the content changes",
                    )
                )
                rejected.append(_state(playbook, REFUSED, "content changed under the same version"))
                kept[name] = current
            else:
                kept[name] = playbook
        await self._record(kept, refused, rejected)
        self._refused = tuple(rejected)
        return self._swap(trigger, scan, kept, origin, tuple(refused), order)

    async def _record(
        self, kept: dict[str, Playbook], refused: list[Diagnostic], rejected: list[PlaybookState]
    ) -> None:
        """Record the versions new to this process in the journal; one the journal refuses is not put
        in force (the version in force stays, or the journal's own, recorded by an earlier process)."""
        fresh = [p for p in kept.values() if self._playbooks.get(p.name) is not p]
        if not fresh:
            return
        versions = {
            p.name: PlaybookVersion(p.name, p.version, p.content_hash, playbook_record_body(p)) for p in fresh
        }
        try:
            conflicts = list(await self._journal.record_playbooks(list(versions.values())))
        except RecordRejected:  # one of them is more than the journal keeps: find which, keep the rest
            conflicts = []
            for playbook in fresh:
                try:
                    conflicts.extend(await self._journal.record_playbooks([versions[playbook.name]]))
                except RecordRejected as exc:
                    refused.append(
                        _refusal(playbook, "E402", f"the journal refused it: {exc}", "make it smaller")
                    )
                    rejected.append(_state(playbook, REFUSED, f"the journal refused it: {exc}"))
                    await self._keep_previous(kept, playbook.name, None)
        for conflict in conflicts:
            playbook = kept[conflict.name]
            message = (
                f"playbook {playbook.name!r} version {playbook.version} is already recorded in the "
                "journal with other content"
            )
            refused.append(
                _refusal(playbook, "E401", message, "raise metadata.version when the content changes")
            )
            rejected.append(_state(playbook, REFUSED, "the journal holds other content under this version"))
            await self._keep_previous(kept, conflict.name, conflict)

    async def _keep_previous(
        self, kept: dict[str, Playbook], name: str, conflict: PlaybookVersionConflict | None
    ) -> None:
        previous = self._playbooks.get(name)
        if previous is not None:
            kept[name] = previous
            return
        del kept[name]
        if conflict is not None:  # recorded by an earlier process: that version stays in force
            with contextlib.suppress(KurativeError):
                known = await self._cache.get(conflict.name, conflict.version, conflict.known_hash)
                kept[name] = known.playbook

    def _offered(self, scan: _Scan) -> list[Playbook]:
        """The playbooks each file offers: those that pass now, and for a file that does not, the last
        good version of each of its other playbooks. A rules path that is missing (an unmounted volume,
        a link flipped onto nothing) is a fault of the setup, not a deletion: what was read under it
        stays in force, stale, until it is back; a file deleted under a rules path that is there goes."""
        offered: list[Playbook] = []
        for path, file in scan.files.items():
            offered.extend(file.playbooks)
            if file.broken:
                passing = {p.name for p in file.playbooks}
                offered.extend(
                    self._playbooks[name]
                    for name, source in self._origin.items()
                    if source == path and name not in passing
                )
        if scan.missing:
            offered.extend(
                self._playbooks[name]
                for name, source in self._origin.items()
                if source not in scan.files and scan.under_missing(source)
            )
        return offered

    def _swap(
        self,
        trigger: str,
        scan: _Scan,
        kept: dict[str, Playbook],
        origin: dict[str, str],
        refused: tuple[Diagnostic, ...],
        order: Callable[[Playbook], tuple[int, int]],
    ) -> ReloadReport:
        before = self._playbooks
        added = tuple(sorted(set(kept) - set(before)))
        removed = tuple(sorted(set(before) - set(kept)))
        updated = tuple(sorted(n for n in set(kept) & set(before) if kept[n] is not before[n]))
        problems = [*scan.missing, *refused]
        for file in scan.files.values():
            problems.extend(file.diagnostics)
        self._files = scan.files
        self._missing = frozenset(d.path for d in scan.missing)
        self._origin = {name: origin.get(name, playbook.source.path) for name, playbook in kept.items()}
        self._problems = tuple(sorted(set(problems)))
        if added or updated or removed or self.active is None:
            for name in (*added, *updated):
                self._cache.remember(kept[name])
            previous = self.active.ruleset if self.active is not None else None
            ruleset = Ruleset.compile(sorted(kept.values(), key=order), previous)
            self._playbooks = kept
            self.active = ActiveRuleset(ruleset, ruleset_version(ruleset))
            if self._swapped is not None:
                self._swapped(self.active)
        return ReloadReport(
            trigger,
            added,
            updated,
            removed,
            refused,
            self._problems,
            scan.checked,
            self.active.version if self.active else "",
        )


def _order(scan: _Scan) -> Callable[[Playbook], tuple[int, int]]:
    """Files in the order they were found, playbooks in the order of their file."""
    rank = {path: i for i, path in enumerate(scan.files)}

    def key(playbook: Playbook) -> tuple[int, int]:
        return rank.get(playbook.source.path, len(rank)), playbook.source.position(("metadata", "name"))[0]

    return key


def _log_report(report: ReloadReport, logged: frozenset[Diagnostic]) -> None:
    for diagnostic in report.problems:
        if diagnostic in logged:
            continue  # said at an earlier reload, and still true: see /api/v1/playbooks
        level = "error" if diagnostic.severity is Severity.ERROR else "warning"
        getattr(log, level)(
            "playbook_problem", where=f"{diagnostic.path}:{diagnostic.line}:{diagnostic.column}",
            code=diagnostic.code, message=diagnostic.message, hint=diagnostic.hint,
        )  # fmt: skip
    if report.changed or set(report.refused) - logged or report.trigger != "watch":
        log.info(
            "playbooks_reloaded",
            trigger=report.trigger,
            added=list(report.added),
            updated=list(report.updated),
            removed=list(report.removed),
            refused=[f"{d.path}:{d.line}:{d.column} {d.message}" for d in report.refused],
            errors=report.errors,
            checked=report.files_checked,
            ruleset=report.ruleset,
        )


def watch_roots(paths: Iterable[str]) -> tuple[set[Path], set[Path]]:
    """(folders to watch, folders holding a symlink on the way): each rules path that exists (the
    folder of a file), and the folder of each symlink on the way to it. A missing path is not watched
    (watching its nearest ancestor could mean watching ``/``): the watch looks for it every
    :data:`LOOK_AGAIN_SECONDS`."""
    recursive: set[Path] = set()
    links: set[Path] = set()
    for given in paths:
        path = Path(os.path.abspath(given))
        if path.exists():
            recursive.add(path if path.is_dir() else path.parent)
        walked = Path(path.anchor)
        for part in path.parts[1:]:
            walked = walked / part
            if walked.is_symlink():
                links.add(walked.parent)
    return recursive, links - recursive


def resolved(paths: Iterable[str]) -> tuple[str, ...]:
    """Where the rules paths lead now: when this changes, the watch must be set up again."""
    return tuple(os.path.realpath(p) for p in paths)


RETRY_SECONDS = 2.0
"""A reload the journal could not record is tried again after this long."""
LOOK_AGAIN_SECONDS = 1.0
"""Without events, the watch checks this often whether a symlink on the way now points elsewhere or
a missing rules path appeared."""


class Reloader:
    """Runs reloads: on a watched change (``watch``), on :meth:`request` (SIGHUP), and again after one
    the journal could not record. One at a time; a reload in progress is never interrupted."""

    def __init__(
        self,
        rules: LiveRules,
        *,
        watch: bool,
        metrics: Metrics | None = None,
        step_ms: int = 20,
        debounce_ms: int = 400,
    ) -> None:
        self.rules = rules
        self._metrics = metrics
        self._watch = watch
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        self._requested: asyncio.Queue[str] = asyncio.Queue()
        self._retry: asyncio.TimerHandle | None = None

    def request(self, trigger: str) -> None:
        self._requested.put_nowait(trigger)

    def _retry_later(self) -> None:
        """One retry pending at most, however many reloads failed meanwhile."""
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.request("retry")

    async def reload(self, trigger: str, *, retry: bool = True) -> ReloadReport | None:
        """One reload. When it fails (a journal outage, a file system error) it is logged and, with
        ``retry``, tried again shortly and None returned; without, the error is raised to the caller
        (``POST /api/v1/reload`` answers it)."""
        try:
            report = await self.rules.reload(trigger)
        except Exception as exc:
            log.warning("reload_failed", trigger=trigger, error=f"{type(exc).__name__}: {exc}")
            self._count("failed")
            if not retry:
                raise
            self._retry_later()
            return None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._count("changed" if report.changed else "refused" if report.refused else "unchanged")
        return report

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.reloads.labels(result).inc()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self._watch:
                tasks.create_task(self._watch_files(stop))
            tasks.create_task(self._serve_requests(stop))

    async def _serve_requests(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            get = asyncio.ensure_future(self._requested.get())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([get, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not get.done():
                get.cancel()
                return
            await self.reload(get.result())

    async def _watch_files(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        while not stop.is_set():
            roots = watch_roots(self.rules.paths)
            where = resolved(self.rules.paths)
            watched = sorted(str(p) for p in roots[0] | roots[1])
            if not watched:  # no rules path exists (yet): look again shortly
                await _pause(stop, RETRY_SECONDS)
                await self.reload("watch")
                continue
            armed = False
            try:
                async for changes in awatch(
                    *watched,
                    watch_filter=_relevant,
                    step=self._step_ms,
                    debounce=self._debounce_ms,
                    stop_event=stop,
                    recursive=True,
                    ignore_permission_denied=True,
                    rust_timeout=int(LOOK_AGAIN_SECONDS * 1000),
                    yield_on_timeout=True,
                ):
                    if changes or not armed:
                        # the first pass after the watch is set up also catches what changed while
                        # there was no watch (at start, after a symlink flip, after a failure)
                        await self.reload("watch")
                    armed = True
                    if resolved(self.rules.paths) != where or watch_roots(self.rules.paths) != roots:
                        break  # a symlink on the way points elsewhere, a path appeared: watch anew
            except Exception as exc:  # the watcher failed (a folder vanished, inotify's limit): anew
                log.warning("rules_watch_failed", error=f"{type(exc).__name__}: {exc}", folders=watched)
                await _pause(stop, RETRY_SECONDS)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def _relevant(change: object, path: str) -> bool:
    """Everything but what happens inside a git repository's own folder (git-sync fetching)."""
    return ".git" not in Path(path).parts
