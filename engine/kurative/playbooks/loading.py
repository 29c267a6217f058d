"""Finding and loading playbook files into models, collecting every problem on the way.

A directory is searched recursively for ``*.yaml`` and ``*.yml``. Hidden entries are skipped, which
also skips the ``..data`` and timestamped folders of a Kubernetes ConfigMap mount (their files are
reached through the visible symlinks), and so are playbook test files (``*.test.yaml``,
``*_test.yaml``). One broken file never stops the others from loading.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kurative.diagnostics import Diagnostic
from kurative.playbooks.configs import config_diagnostics
from kurative.playbooks.models import Playbook
from kurative.playbooks.validation import CONFIG_KIND, build_playbook, schema_diagnostics
from kurative.playbooks.yamlload import Document, LoadedFile, load_yaml_bytes, load_yaml_file

YAML_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = tuple(f"{mark}{suffix}" for mark in (".test", "_test") for suffix in YAML_SUFFIXES)


@dataclass(slots=True)
class LoadResult:
    """Playbooks that passed the schema, and every diagnostic found on the way."""

    playbooks: tuple[Playbook, ...] = ()
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: tuple[str, ...] = ()
    # Documents that failed the schema, modelled as far as possible so that lint can check the rest.
    rejected: tuple[Playbook, ...] = ()
    # Daemon configurations (``kind: Config``) met on the way: checked against their own schema, never
    # taken for playbooks, so a playbook repository can keep its config beside its playbooks.
    configs: tuple[Document, ...] = ()


def is_test_file(path: Path) -> bool:
    return path.name.endswith(TEST_SUFFIXES)


def files_under(directory: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files below ``directory`` that ``keep`` accepts, sorted, skipping hidden files and folders.

    Every entry that is not a folder counts, not only regular files: a FIFO, a device, a symlink to
    one or a looping symlink named like a playbook is refused when it is read (a diagnostic naming
    it), not skipped without a word. A symlink whose target is gone is a deleted file, though: a
    git-sync checkout or a ConfigMap key removal (its ``..data`` is swapped before the visible link is
    removed) deletes a playbook that way."""
    return sorted(
        p
        for p in directory.rglob("*")
        if not p.is_dir()
        and keep(p)
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and not is_gone(p)
    )


def is_gone(path: Path) -> bool:
    """``path`` (a symlink's target, or the file itself) no longer exists: not a broken file, a
    deleted one. A looping symlink or one that cannot be followed for another reason is not gone."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def is_playbook_file(path: Path) -> bool:
    return path.suffix in YAML_SUFFIXES and not is_test_file(path)


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """The playbook files under ``paths`` in a stable order; a missing path is a diagnostic."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files.extend(files_under(path, is_playbook_file))
        elif path.exists():
            files.append(path)  # a FIFO or a device is refused when read, before anything is read
        else:
            problems.append(
                Diagnostic.make(str(path), 0, 0, "E001", "no such file or directory", "check the path")
            )
    unique: dict[Path, None] = {}
    for file in files:
        unique.setdefault(file, None)
    return list(unique), problems


def load_document(doc: Document) -> tuple[Playbook, list[Diagnostic]]:
    """Validate one document and build its model; the model is valid only without diagnostics."""
    return build_playbook(doc), schema_diagnostics(doc)


def load_bytes(path: str, raw: bytes) -> LoadResult:
    """Load every playbook of one file's content (also used for files read from git)."""
    return _documents(load_yaml_bytes(path, raw))


def _documents(loaded: LoadedFile) -> LoadResult:
    result = LoadResult(diagnostics=list(loaded.diagnostics), files=(loaded.path,))
    playbooks: list[Playbook] = []
    rejected: list[Playbook] = []
    configs: list[Document] = []
    for doc in loaded.documents:
        if is_config(doc):
            result.diagnostics.extend(config_diagnostics(doc))
            configs.append(doc)
            continue
        playbook, problems = load_document(doc)
        result.diagnostics.extend(problems)
        (rejected if problems else playbooks).append(playbook)
    result.playbooks = tuple(playbooks)
    result.rejected = tuple(rejected)
    result.configs = tuple(configs)
    return result


def is_config(doc: Document) -> bool:
    """A daemon configuration rather than a playbook: it says ``kind: Config``."""
    return isinstance(doc.data, dict) and doc.data.get("kind") == CONFIG_KIND


def load_playbooks(paths: Sequence[str | Path]) -> LoadResult:
    """Load every playbook file under ``paths``. Never raises for bad content: see ``diagnostics``."""
    files, problems = discover(paths)
    result = LoadResult(diagnostics=problems, files=tuple(str(f) for f in files))
    playbooks: list[Playbook] = []
    rejected: list[Playbook] = []
    configs: list[Document] = []
    for file in files:
        loaded = _documents(load_yaml_file(file))
        result.diagnostics.extend(loaded.diagnostics)
        playbooks.extend(loaded.playbooks)
        rejected.extend(loaded.rejected)
        configs.extend(loaded.configs)
    result.playbooks = tuple(playbooks)
    result.rejected = tuple(rejected)
    result.configs = tuple(configs)
    return result
