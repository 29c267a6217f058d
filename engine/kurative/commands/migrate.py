"""``kurative migrate``: bring the journal's schema up to this build, or show where it stands.

Run it before starting a new version (a Helm pre-upgrade hook, an init container), or let the daemon
do it with ``--migrate``. Several replicas running it at once is safe: migrations serialize.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from kurative.commands import EXIT_FAILURE, EXIT_OK
from kurative.errors import UsageError
from kurative.journal import open_journal, redact_url

JOURNAL_ENV = "KURATIVE_JOURNAL"


def add_journal_argument(parser: argparse.ArgumentParser) -> None:
    """``--journal URL``, defaulting to ``$KURATIVE_JOURNAL``; shared by the journal commands."""
    parser.add_argument(
        "--journal",
        metavar="URL",
        default=os.environ.get(JOURNAL_ENV),
        help=f"sqlite:///path.db or postgresql://user@host/db (default: ${JOURNAL_ENV})",
    )


MAX_WAIT_SECONDS = 86_400


def wait_seconds(text: str) -> float:
    """``--wait``: a finite number of seconds from 0 to a day (``nan`` or ``1e400`` would never end)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r}: write a number of seconds from 0 to {MAX_WAIT_SECONDS}")
    return seconds


def journal_url(args: argparse.Namespace) -> str:
    url: str | None = args.journal
    if not url:
        raise UsageError(f"no journal: pass --journal URL or set {JOURNAL_ENV}")
    return url


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "migrate", help="apply the journal's schema migrations (--status: only show the version)"
    )
    add_journal_argument(parser)
    parser.add_argument(
        "--status", action="store_true", help="only show the schema version; exit 1 when behind"
    )
    parser.add_argument(
        "--wait",
        type=wait_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep retrying an unreachable database this long, backing off from 1 s "
        f"(default: 0, at most {MAX_WAIT_SECONDS})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(journal_url(args), status_only=args.status, wait=args.wait))


async def _run(url: str, *, status_only: bool, wait: float) -> int:
    shown = redact_url(url)
    journal = await open_journal(url, wait=wait, check_schema=False)
    try:
        if status_only:
            status = await journal.schema_status()
            behind = status.current < status.latest
            print(
                f"journal {shown}: schema version {status.current}, this kurative needs {status.latest}"
                + (" (run `kurative migrate`)" if behind else " (up to date)")
            )
            return EXIT_FAILURE if behind else EXIT_OK
        status = await journal.migrate()
    finally:
        await journal.close()
    if status.applied:
        applied = ", ".join(f"{version:04d}" for version in status.applied)
        print(f"journal {shown}: applied migration {applied}; schema version {status.current}")
    else:
        print(f"journal {shown}: schema version {status.current} is up to date")
    return EXIT_OK
