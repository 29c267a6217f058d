"""Subcommands of the ``kurative`` CLI, one module each, each exposing ``register(subparsers)``.

A command module parses its arguments, calls into the engine and turns the outcome into output and a
named exit code; it holds no logic of its own that another entry point (the daemon) would need.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kurative.errors import UsageError

if TYPE_CHECKING:
    from kurative.matching.ruleset import Ruleset

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and found errors (lint errors, failed tests, journal unreachable)
EXIT_USAGE = 2  # the command line or an input file was not usable
EXIT_SOFTWARE = 70  # a bug in kurative (an unexpected exception), as sysexits.h's EX_SOFTWARE


def require_paths(paths: Iterable[str], what: str = "") -> None:
    """Raise :class:`UsageError` (exit 2) naming every path in ``paths`` that does not exist or is
    neither a file nor a folder (a FIFO, a device)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{what}no such file or directory: {', '.join(missing)}")
    odd = [p for p in paths if not (Path(p).is_file() or Path(p).is_dir())]
    if odd:
        raise UsageError(f"{what}not a regular file or directory: {', '.join(odd)}")


def printable(text: str) -> str:
    """``text`` with every lone surrogate written as its ``\\uXXXX`` escape, so that output always encodes.

    File names that are not UTF-8 reach Python as lone surrogates (one per undecodable byte), and so
    does a ``"\\ud800"`` escape in JSON input; a strict UTF-8 stdout cannot write either. The escape is
    also valid inside a JSON string, so JSON output stays parseable and means the same.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class PrintableWriter:
    """A text stream whose writes go through :func:`printable`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(printable(text))


def add_rules_argument(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``, repeatable: where the playbooks of simulate, test and rbac come from."""
    parser.add_argument(
        "--rules",
        action="append",
        required=True,
        metavar="DIR",
        help="playbook directory or file (repeatable)",
    )


def ruleset_or_report(paths: list[str]) -> Ruleset | None:
    """The ruleset of ``paths``, or ``None`` after printing its errors (and warnings) to stderr.
    A path that does not exist is a usage error."""
    from kurative.linting.rulesets import load_ruleset  # not needed by every command that imports this

    require_paths(paths, "--rules: ")
    loaded = load_ruleset(paths)
    for diagnostic in loaded.diagnostics:
        print(printable(diagnostic.format()), file=sys.stderr)
    return loaded.ruleset if loaded.ok else None
