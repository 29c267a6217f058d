"""``kurative executions``: list, show, approve, reject and cancel executions.

Against a running daemon (``--server URL --token-file F``, over its REST API) or straight on the
journal (``--journal URL``). Tables read like kubectl's (``-o json`` / ``-o yaml`` for scripts;
``list --watch`` prints each change as it happens). Approvals and cancellations record who decided
and why (``--reason``): over the API who is the name of the caller's credential; on the journal it is
``--as``, by default the login name on this host.
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
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from ruamel.yaml import YAML

from kurative.commands import EXIT_OK
from kurative.commands._client import ApiClient, add_server_arguments
from kurative.commands.migrate import add_journal_argument, journal_url
from kurative.errors import ExecutionNotFound, UsageError
from kurative.journal import Decision, ExecutionFilter, ExecutionState, Journal, open_journal

T = TypeVar("T")
OUTPUTS = ("table", "json", "yaml")


def _add_source(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    add_journal_argument(parser)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "executions", help="list, show, approve, reject or cancel executions"
    )
    actions = parser.add_subparsers(dest="executions_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="executions, newest first")
    _add_source(listing)
    listing.add_argument(
        "--state", action="append", choices=[s.value for s in ExecutionState], help="only these states"
    )
    listing.add_argument("--playbook", help="only this playbook")
    listing.add_argument("--alertname", help="only executions of alerts with this alertname")
    listing.add_argument("--fingerprint", help="only executions of this alert fingerprint")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    listing.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    listing.add_argument(
        "-w", "--watch", action="store_true", help="after the list, print every execution that changes"
    )
    listing.add_argument(
        "--interval", type=float, default=2.0, help="seconds between looks with --watch (default: 2)"
    )
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="one execution with its alert, step journal and approvals")
    _add_source(show)
    show.add_argument("id", help="execution id")
    show.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    show.set_defaults(func=run_show)

    for name, what in (
        ("approve", "let an execution awaiting approval run"),
        ("reject", "refuse an execution awaiting approval (it is cancelled)"),
        ("cancel", "cancel an execution that has not finished (a running one stops after its step)"),
    ):
        decide = actions.add_parser(name, help=what)
        _add_source(decide)
        decide.add_argument("id", help="execution id")
        decide.add_argument("--reason", default="", help="why (recorded in the journal)")
        decide.add_argument(
            "--as", dest="who", default=None,
            help="who decides, with --journal (default: user@host; over --server: the token's name)",
        )  # fmt: skip
        decide.set_defaults(func=run_decide, decision=name)


def _who(given: str | None) -> str:
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _over_server(args: argparse.Namespace) -> bool:
    """``--server`` wins over ``--journal``; without either, say what is missing."""
    if getattr(args, "server", None):
        if getattr(args, "who", None):
            raise UsageError("--as works with --journal only: over --server who is the token's name")
        return True
    return False


def _with_journal(args: argparse.Namespace, work: Callable[[Journal], Awaitable[T]]) -> T:
    url = journal_url_or_usage(args)

    async def run() -> T:
        journal = await open_journal(url)
        try:
            return await work(journal)
        finally:
            await journal.close()

    return asyncio.run(run())


def journal_url_or_usage(args: argparse.Namespace) -> str:
    if not args.journal:
        raise UsageError("no daemon and no journal: pass --server URL --token-file F, or --journal URL")
    return journal_url(args)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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


def dump(data: Any, output: str) -> str:
    """``data`` (JSON values, or journal models) as ``json`` or ``yaml``."""
    plain = _plain(data)
    if output == "json":
        return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(plain, out)
    return out.getvalue()


LIST_HEADERS = ("ID", "PLAYBOOK", "VERSION", "STATE", "ALERT", "AGE", "ERROR")


def _row(e: dict[str, Any], now: datetime) -> tuple[str, ...]:
    state = e["state"] + (" (dry-run)" if e["dry_run"] else "")
    age = _age(_time(e["created_at"]), now)
    return (e["id"], e["playbook_name"], str(e["playbook_version"]), state,
            e["alert_fingerprint"][:16], age, (e["error"] or "")[:60])  # fmt: skip


def _fetch_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    if _over_server(args):
        params: dict[str, Any] = {"limit": args.limit}
        for key, value in (
            ("state", args.state), ("playbook", args.playbook), ("alertname", args.alertname),
            ("fingerprint", args.fingerprint),
        ):  # fmt: skip
            if value:
                params[key] = value
        with ApiClient(args.server, args.token_file) as client:
            items: list[dict[str, Any]] = client.get("/executions", params=params)["items"]
            return items
    where = ExecutionFilter(
        states=tuple(ExecutionState(s) for s in args.state or ()),
        playbook_name=args.playbook,
        alert_fingerprint=args.fingerprint,
        alertname=args.alertname,
    )
    page = _with_journal(args, lambda journal: journal.list_executions(where, limit=args.limit))
    return [_plain(asdict(e)) for e in page.items]


def run_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 500:
        raise UsageError("--limit must be between 1 and 500")
    if args.watch and not 0.1 <= args.interval <= 3600:
        raise UsageError("--interval must be from 0.1 to 3600 seconds")
    items = _fetch_list(args)
    if args.output != "table":
        if args.watch:  # one compact document per line, a stream for scripts
            for item in items:
                _emit(item, args.output)
        else:
            sys.stdout.write(dump(items, args.output))
    elif not items and not args.watch:
        print("No executions found.")
    else:
        sys.stdout.write(table(LIST_HEADERS, [_row(e, datetime.now(UTC)) for e in items]))
    sys.stdout.flush()
    if args.watch:
        _watch(args, {e["id"]: _version(e) for e in items})
    return EXIT_OK


def _version(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["state"], e["updated_at"], e["error"])


def _emit(e: dict[str, Any], output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(e, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("---\n" + dump(e, "yaml"))


def _watch(args: argparse.Namespace, seen: dict[str, tuple[Any, ...]]) -> None:
    """Like ``kubectl get -w``: every execution that appears or changes, as one more row, until ^C."""
    widths = None
    while True:
        time.sleep(args.interval)
        changed = [e for e in reversed(_fetch_list(args)) if seen.get(e["id"]) != _version(e)]
        for e in changed:
            seen[e["id"]] = _version(e)
            if args.output != "table":
                _emit(e, args.output)
                continue
            row = _row(e, datetime.now(UTC))
            widths = widths or [max(len(h), 12) for h in LIST_HEADERS]
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())
        sys.stdout.flush()


def _fetch_detail(args: argparse.Namespace) -> dict[str, Any]:
    if _over_server(args):
        with ApiClient(args.server, args.token_file) as client:
            detail: dict[str, Any] = client.get(f"/executions/{_quoted(args.id)}")
            return detail

    async def read(journal: Journal) -> dict[str, Any]:
        found = await journal.get_execution(args.id)
        try:
            alert: Any = asdict(await journal.get_alert(found.execution.alert_id))
        except ExecutionNotFound:
            alert = None
        return {
            "execution": asdict(found.execution),
            "alert": alert,
            "steps": [asdict(s) for s in found.steps],
            "approvals": [asdict(a) for a in found.approvals],
        }

    plain: dict[str, Any] = _plain(_with_journal(args, read))
    return plain


def _quoted(execution_id: str) -> str:
    # "." and ".." are unreserved, so quoting leaves them as they are and the URL would name another
    # resource; no execution has such an id
    if execution_id.strip(".") == "":
        raise UsageError(f"no execution has the id {execution_id!r}: pass an id from `executions list`")
    return urllib.parse.quote(execution_id, safe="")


def _duration(step: dict[str, Any]) -> str:
    started, finished = _time(step.get("started_at")), _time(step.get("finished_at"))
    if started is None or finished is None:
        return "-"
    return f"{(finished - started).total_seconds():.3f}s"


def run_show(args: argparse.Namespace) -> int:
    detail = _fetch_detail(args)
    if args.output != "table":
        sys.stdout.write(dump(detail, args.output))
        return EXIT_OK
    e = detail["execution"]
    now = datetime.now(UTC)
    created = _time(e["created_at"])
    alert = detail.get("alert") or {}
    fields = [
        ("ID", e["id"]),
        ("Playbook", f"{e['playbook_name']} v{e['playbook_version']} ({e['playbook_hash'][:12]})"),
        ("State", e["state"]), ("Dry run", "yes" if e["dry_run"] else "no"),
        ("Alert", f"{e['alert_id']} (fingerprint {e['alert_fingerprint']})"),
        ("Alert name", (alert.get("labels") or {}).get("alertname", "-")),
        ("Dedupe key", e["dedupe_key"] or "-"),
        ("Attempt", str(e["attempt"])), ("Lease", e["lease_owner"] or "-"),
        ("Created", f"{e['created_at']} ({_age(created, now)} ago)"),
        ("Finished", e["finished_at"] or "-"), ("Error", e["error"] or "-"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in fields)
    out = [f"{name + ':':<{width + 1}} {value}" for name, value in fields]
    out.append("")
    steps = [
        (str(s["index"]), s["name"], s["action"], str(s["attempt"]), s["status"], _duration(s),
         (s["error"] or "")[:60])
        for s in detail["steps"]
    ]  # fmt: skip
    out.append(table(("#", "STEP", "ACTION", "ATTEMPT", "STATUS", "DURATION", "ERROR"), steps).rstrip())
    if detail["approvals"]:
        out.append("")
        approvals = [(a["decision"], a["who"], a["decided_at"], a["reason"]) for a in detail["approvals"]]
        out.append(table(("DECISION", "WHO", "WHEN", "REASON"), approvals).rstrip())
    print("\n".join(out))
    return EXIT_OK


def run_decide(args: argparse.Namespace) -> int:
    if _over_server(args):
        with ApiClient(args.server, args.token_file) as client:
            answer = client.post(f"/executions/{_quoted(args.id)}/{args.decision}", {"reason": args.reason})
        if args.decision == "cancel":
            finished = answer["state"] in {s.value for s in ExecutionState if s.finished}
            print(f"execution {args.id} {'cancelled' if finished else 'cancel requested'}")
        else:
            print(f"execution {args.id} {answer['decision']} by {answer['who']}")
        return EXIT_OK
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
