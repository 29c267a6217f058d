"""``kurative journal prune``: delete finished executions and old alerts past a retention age.

The daemon runs the same prune periodically; this command is for cron jobs, one-off clean-ups and
databases no daemon is attached to. Unfinished work is never deleted, whatever the age.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kurative.commands import EXIT_OK
from kurative.commands.migrate import add_journal_argument, journal_url
from kurative.durations import DurationError, parse_duration
from kurative.errors import UsageError
from kurative.journal import open_journal, redact_url


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("journal", help="maintain the journal (prune)")
    actions = parser.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    prune = actions.add_parser(
        "prune", help="delete finished executions and alerts older than --older-than, in batches"
    )
    add_journal_argument(prune)
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="retention age: finished longer ago than this (7d, 36h, 90m) is deleted",
    )
    prune.add_argument(
        "--batch", type=int, default=1000, metavar="N", help="rows per transaction (default: 1000)"
    )
    prune.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    try:
        age = parse_duration(args.older_than)
    except DurationError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    return asyncio.run(_prune(journal_url(args), age, args.batch))


async def _prune(url: str, age: float, batch: int) -> int:
    journal = await open_journal(url)
    try:
        report = await journal.prune(age, batch=batch)
    finally:
        await journal.close()
    print(
        f"journal {redact_url(url)}: deleted {report.executions} finished executions, "
        f"{report.alerts} alerts, {report.dedupe_keys} expired dedupe keys, "
        f"{report.limit_hits} expired limit counts"
    )
    return EXIT_OK
