"""``kurative simulate``: what alerts would do with these playbooks, with no side effects.

Each FILE holds an Alertmanager webhook payload, a Prometheus alert list, or a single alert (JSON, or
YAML for hand-written files; ``-`` reads standard input). Prints, per alert, the matched playbooks in run
order with the reason each matched, the dedupe key and every step with its params rendered; with
``--explain`` also why each other playbook did not start. ``--format json`` is a stable interface for CI
scripts (see :mod:`kurative.matching.simulation`). Exit 0; 1 when the playbooks do not load; 2 when an
input file is unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kurative.alerts import MAX_PAYLOAD_BYTES, load_json, parse_notification
from kurative.commands import EXIT_FAILURE, EXIT_OK, add_rules_argument, printable, ruleset_or_report
from kurative.errors import AlertError, UsageError
from kurative.journal.episodes import EpisodeTracker
from kurative.matching.simulation import format_text, simulate
from kurative.playbooks.yamlload import MAX_FILE_BYTES, load_yaml_text


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="show what alerts would do with the playbooks (no side effects)",
        description="Match alerts against the playbooks in --rules and print, per alert, the playbooks "
        "that would start in run order, why, their dedupe keys and their steps with params rendered.",
    )
    add_rules_argument(parser)
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--explain", action="store_true", help="also say why each other playbook did not start"
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="Alertmanager payload, Prometheus alert list or one alert (JSON or YAML; - for stdin)",
    )
    parser.set_defaults(func=run)


# A file that starts like JSON but is not JSON is tried as (flow-style) YAML only when it is this small.
_FLOW_YAML_BYTES = 64 * 1024


def read_payload(name: str) -> Any:
    """The JSON (or YAML) value in file ``name``; raises :class:`UsageError` when unusable.

    The size is checked before the file is read, and it is read with that bound. JSON is tried first;
    YAML only for a file no larger than a hand-written one (a big file is a machine's JSON, and a
    truncated one must not spend a minute in the YAML parser), through the playbook loader's guards
    (alias bombs, depth, tags)."""
    raw = _read_bounded(name)
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    suffix = Path(name).suffix.lower()
    looks_like_json = text.lstrip()[:1] in ("{", "[")
    json_error: AlertError | None = None
    if suffix not in (".yaml", ".yml"):
        try:
            return load_json(text, name)
        except AlertError as exc:
            json_error = exc
        if suffix == ".json" or len(raw) > (_FLOW_YAML_BYTES if looks_like_json else MAX_FILE_BYTES):
            raise UsageError(str(json_error)) from None
    elif len(raw) > MAX_FILE_BYTES:
        raise UsageError(
            f"{name}: {len(raw) / 1_048_576:.1f} MiB is more than the {MAX_FILE_BYTES // 1024} KiB a YAML "
            "alerts file may hold (write large payloads as JSON)"
        )
    loaded = load_yaml_text(name, text)
    if loaded.diagnostics:
        if json_error is not None and looks_like_json:
            raise UsageError(str(json_error)) from None
        problem = " ".join(loaded.diagnostics[0].format().split())  # one line, whatever the parser said
        raise UsageError(problem if json_error is None else f"neither JSON nor YAML: {problem}")
    if len(loaded.documents) != 1:
        raise UsageError(f"{name}: {len(loaded.documents)} YAML documents; write one payload per file")
    return loaded.documents[0].data


def _read_bounded(name: str) -> bytes:
    limit = MAX_PAYLOAD_BYTES
    too_big = f"{name}: {{}} than the {limit // 1_048_576} MiB an alerts file may hold"
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(name, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > limit:
                    raise UsageError(too_big.format(f"{size / 1_048_576:.1f} MiB, more"))
                raw = file.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise UsageError(too_big.format("more"))
    return raw


def run(args: argparse.Namespace) -> int:
    ruleset = ruleset_or_report(args.rules)
    if ruleset is None:
        return EXIT_FAILURE
    reports = []
    episodes = EpisodeTracker()  # a start-less alert joins its episode across the files, in order
    for name in args.files:
        payload = read_payload(name)
        try:
            notification = parse_notification(payload)
        except AlertError as exc:
            raise UsageError(f"{name}: {exc}") from None
        reports.extend(simulate(ruleset, notification, explain=args.explain, source=name, episodes=episodes))
    if args.format == "json":
        sys.stdout.write(printable(json.dumps(reports, indent=2, ensure_ascii=False) + "\n"))
    else:
        sys.stdout.write(printable(format_text(reports)))
    return EXIT_OK
