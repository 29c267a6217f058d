"""``kurative executions``: list, show, approve, reject and cancel executions in the journal.

Tables read like kubectl's (``-o json`` / ``-o yaml`` for scripts). Approvals and cancellations record
who decided (``--as``, default the login name on this host) and why (``--reason``).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import getpass
import io
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from ruamel.yaml import YAML

from kurative.commands import EXIT_OK
from kurative.commands.migrate import add_journal_argument, journal_url
from kurative.errors import UsageError
from kurative.journal import Decision, ExecutionFilter, ExecutionState, Journal, open_journal

T = TypeVar("T")
OUTPUTS = ("table", "json", "yaml")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "executions", help="list, show, approve, reject or cancel executions"
    )
    actions = parser.add_subparsers(dest="executions_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="executions, newest first")
    add_journal_argument(listing)
    listing.add_argument(
        "--state", action="append", choices=[s.value for s in ExecutionState], help="only these states"
    )
    listing.add_argument("--playbook", help="only this playbook")
    listing.add_argument("--fingerprint", help="only executions of this alert fingerprint")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    listing.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="one execution with its step journal and approvals")
    add_journal_argument(show)
    show.add_argument("id", help="execution id")
    show.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    show.set_defaults(func=run_show)

    for name, what in (
        ("approve", "let an execution awaiting approval run"),
        ("reject", "refuse an execution awaiting approval (it is cancelled)"),
        ("cancel", "cancel an execution that has not finished (a running one stops after its step)"),
    ):
        decide = actions.add_parser(name, help=what)
        add_journal_argument(decide)
        decide.add_argument("id", help="execution id")
        decide.add_argument("--reason", default="", help="why (recorded in the journal)")
        decide.add_argument("--as", dest="who", default=None, help="who decides (default: user@host)")
        decide.set_defaults(func=run_decide, decision=name)


def _who(given: str | None) -> str:
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _with_journal(args: argparse.Namespace, work: Callable[[Journal], Awaitable[T]]) -> T:
    async def run() -> T:
        journal = await open_journal(journal_url(args))
        try:
            return await work(journal)
        finally:
            await journal.close()

    return asyncio.run(run())


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, separated by three spaces, as kubectl prints them."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
             for row in (headers, *rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump(data: Any, output: str) -> str:
    plain = _plain(data)
    if output == "json":
        return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(plain, out)
    return out.getvalue()


def run_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be between 1 and 1000")
    where = ExecutionFilter(
        states=tuple(ExecutionState(s) for s in args.state or ()),
        playbook_name=args.playbook,
        alert_fingerprint=args.fingerprint,
    )
    page = _with_journal(args, lambda journal: journal.list_executions(where, limit=args.limit))
    if args.output != "table":
        sys.stdout.write(_dump([asdict(e) for e in page.items], args.output))
        return EXIT_OK
    now = datetime.now(UTC)
    rows = [
        (e.id, e.playbook_name, str(e.playbook_version), e.state.value + (" (dry-run)" if e.dry_run else ""),
         e.alert_fingerprint[:16], _age(e.created_at, now), (e.error or "")[:60])
        for e in page.items
    ]  # fmt: skip
    if not rows:
        print("No executions found.")
        return EXIT_OK
    sys.stdout.write(table(("ID", "PLAYBOOK", "VERSION", "STATE", "ALERT", "AGE", "ERROR"), rows))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    detail = _with_journal(args, lambda journal: journal.get_execution(args.id))
    if args.output != "table":
        sys.stdout.write(_dump(asdict(detail), args.output))
        return EXIT_OK
    e = detail.execution
    now = datetime.now(UTC)
    fields = [
        ("ID", e.id), ("Playbook", f"{e.playbook_name} v{e.playbook_version} ({e.playbook_hash[:12]})"),
        ("State", e.state.value), ("Dry run", "yes" if e.dry_run else "no"),
        ("Alert", f"{e.alert_id} (fingerprint {e.alert_fingerprint})"), ("Dedupe key", e.dedupe_key or "-"),
        ("Attempt", str(e.attempt)), ("Lease", e.lease_owner or "-"),
        ("Created", f"{e.created_at.isoformat()} ({_age(e.created_at, now)} ago)"),
        ("Finished", e.finished_at.isoformat() if e.finished_at else "-"), ("Error", e.error or "-"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in fields)
    out = [f"{name + ':':<{width + 1}} {value}" for name, value in fields]
    out.append("")
    steps = [
        (str(s.index), s.name, s.action, str(s.attempt), s.status.value,
         f"{s.duration:.3f}s" if s.duration is not None else "-", (s.error or "")[:60])
        for s in detail.steps
    ]  # fmt: skip
    out.append(table(("#", "STEP", "ACTION", "ATTEMPT", "STATUS", "DURATION", "ERROR"), steps).rstrip())
    if detail.approvals:
        out.append("")
        approvals = [(a.decision.value, a.who, a.decided_at.isoformat(), a.reason) for a in detail.approvals]
        out.append(table(("DECISION", "WHO", "WHEN", "REASON"), approvals).rstrip())
    print("\n".join(out))
    return EXIT_OK


def run_decide(args: argparse.Namespace) -> int:
    who = _who(args.who)

    async def decide(journal: Journal) -> str:
        if args.decision == "cancel":
            cancelled = await journal.cancel_execution(args.id, who, args.reason)
            return f"execution {args.id} {'cancelled' if cancelled.state.finished else 'cancel requested'}"
        decision = Decision.APPROVED if args.decision == "approve" else Decision.REJECTED
        await journal.record_approval(args.id, decision, who, args.reason)
        return f"execution {args.id} {decision.value} by {who}"

    print(_with_journal(args, decide))
    return EXIT_OK
