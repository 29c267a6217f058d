"""``lint --against REV``: a playbook whose content changed since REV must have a higher version.

The journal records the name, version and content hash each execution ran; two different contents
under one version would make that record ambiguous. The previous contents are read with ``git show``
(no checkout, no change to the work tree); content means the parsed document, so comments and
formatting can change freely.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kurative.diagnostics import Diagnostic
from kurative.errors import UsageError
from kurative.playbooks.loading import YAML_SUFFIXES, is_test_file, load_bytes
from kurative.playbooks.models import Playbook
from kurative.playbooks.validation import content_hash


def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise UsageError("--against needs git on PATH") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}")
    return done.stdout


@functools.cache
def _repo_root(path: Path) -> Path:
    anchor = path if path.is_dir() else path.parent
    try:
        root = _git(anchor, "rev-parse", "--show-toplevel")
    except UsageError:
        raise UsageError(f"--against: {path} is not inside a git repository") from None
    return Path(root.decode().strip())


def playbooks_at(revision: str, paths: Sequence[str | Path]) -> list[Playbook]:
    """The playbooks that the given paths held at ``revision`` (files that did not parse are ignored).

    Their source paths read ``REV:path-in-repository``; a file reached through two of the given paths
    (a folder and a file inside it) is read once."""
    found: list[Playbook] = []
    seen: set[tuple[Path, str]] = set()
    for given in paths:
        path = Path(given).resolve() if Path(given).exists() else Path(given).absolute()
        root = _repo_root(path if path.exists() else path.parent)
        try:
            _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except UsageError:
            raise UsageError(f"--against: unknown git revision {revision!r}") from None
        relative = path.relative_to(root).as_posix() if path != root else "."
        listing = _git(root, "ls-tree", "-r", "--name-only", "-z", revision, "--", relative)
        for name in filter(None, listing.decode("utf-8", "replace").split("\0")):
            parts = Path(name).parts
            if not name.endswith(YAML_SUFFIXES) or any(p.startswith(".") for p in parts):
                continue
            if is_test_file(Path(name)) or (root, name) in seen:
                continue
            seen.add((root, name))
            raw = _git(root, "show", f"{revision}:{name}")
            found.extend(load_bytes(f"{revision}:{name}", raw).playbooks)
    return found


def _file_key(path: str, revision: str) -> str:
    """The file a playbook came from as a path in its repository, for the work tree and ``REV:`` alike."""
    prefix = f"{revision}:"
    if path.startswith(prefix):
        return path[len(prefix) :]
    file = Path(path).resolve()
    try:
        return file.relative_to(_repo_root(file.parent)).as_posix()
    except UsageError:
        return file.as_posix()


def _pair(
    revision: str, current: Sequence[Playbook], previous: Sequence[Playbook]
) -> list[tuple[Playbook, Playbook]]:
    """Each current playbook with its earlier self: the same name in the same file, or else the one
    playbook of that name at ``revision`` (a file renamed or moved). Two folders may hold playbooks of
    one name (E306 reports that); each is compared with its own file's history, never with the other."""
    by_file = {(_file_key(p.source.path, revision), p.name): p for p in previous}
    by_name: dict[str, list[Playbook]] = {}
    for earlier in previous:
        by_name.setdefault(earlier.name, []).append(earlier)
    pairs: list[tuple[Playbook, Playbook]] = []
    for playbook in current:
        old = by_file.get((_file_key(playbook.source.path, revision), playbook.name))
        if old is None and len(by_name.get(playbook.name, ())) == 1:
            old = by_name[playbook.name][0]
        if old is not None:
            pairs.append((playbook, old))
    return pairs


def _content(playbook: Playbook) -> str:
    """The content hash without the version itself, so that raising only the version is no change."""
    body = dict(playbook.body)
    body["metadata"] = {k: v for k, v in body.get("metadata", {}).items() if k != "version"}
    return content_hash(body)


def compare_versions(
    revision: str, current: Sequence[Playbook], previous: Sequence[Playbook]
) -> list[Diagnostic]:
    """E401 for changed content without a higher version; N403 for playbooks that are gone."""
    now = {p.name for p in current}
    found: list[Diagnostic] = []
    for playbook, old in _pair(revision, current, previous):
        if _content(playbook) != _content(old) and playbook.version <= old.version:
            message = (
                f"playbook {playbook.name!r} changed since {revision} but metadata.version is "
                f"{playbook.version} (was {old.version})"
            )
            hint = f"raise metadata.version to {old.version + 1}"
        elif playbook.version < old.version:
            message = (
                f"metadata.version of {playbook.name!r} went down from {old.version} to {playbook.version}"
            )
            hint = f"versions only grow: use {old.version} or higher"
        else:
            continue
        line, column = playbook.source.position(("metadata", "version"))
        found.append(Diagnostic.make(playbook.source.path, line, column, "E401", message, hint))
    for old in sorted(previous, key=lambda p: (p.name, p.source.path)):
        if old.name not in now:
            line, column = old.source.position(("metadata", "name"))
            found.append(
                Diagnostic.make(
                    old.source.path,
                    line,
                    column,
                    "N403",
                    f"playbook {old.name!r} was removed since {revision}",
                    "executions in the journal keep its recorded version",
                )
            )
    return found
