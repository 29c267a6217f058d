"""Subcommands of the ``kurative`` CLI, one module each, each exposing ``register(subparsers)``.

A command module parses its arguments, calls into the engine and turns the outcome into output and a
named exit code; it holds no logic of its own that another entry point (the daemon) would need.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from kurative.errors import UsageError

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and found errors (lint errors, failed tests, journal unreachable)
EXIT_USAGE = 2  # the command line or an input file was not usable
EXIT_SOFTWARE = 70  # a bug in kurative (an unexpected exception), as sysexits.h's EX_SOFTWARE


def require_paths(paths: Iterable[str], what: str = "") -> None:
    """Raise :class:`UsageError` (exit 2) naming every path in ``paths`` that does not exist."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{what}no such file or directory: {', '.join(missing)}")


def add_rules_argument(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``, repeatable: where the playbooks of simulate, test and rbac come from."""
    parser.add_argument(
        "--rules",
        action="append",
        required=True,
        metavar="DIR",
        help="playbook directory or file (repeatable)",
    )
