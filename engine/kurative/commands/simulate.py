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
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from kurative.alerts import format_timestamp, parse_notification
from kurative.commands import EXIT_FAILURE, EXIT_OK, add_rules_argument, printable
from kurative.diagnostics import has_errors
from kurative.errors import AlertError, UsageError
from kurative.linting.lint import lint_paths
from kurative.matching.ruleset import Ruleset
from kurative.matching.simulation import format_text, simulate


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


def read_payload(name: str) -> Any:
    """The JSON (or YAML) value in file ``name``; raises :class:`UsageError` when unusable."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{name}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{name}: nested too deeply") from None
    except ValueError:
        pass
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return _plain(YAML(typ="safe", pure=True).load(text))
    except (YAMLError, RecursionError) as exc:
        raise UsageError(f"{name}: neither JSON nor YAML: {exc}") from None


def _plain(value: Any) -> Any:
    """YAML's unquoted timestamps back to the RFC 3339 text an alert carries."""
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_ruleset(paths: list[str]) -> Ruleset | None:
    """The ruleset of ``paths``, or ``None`` after printing the load errors to stderr.

    The playbooks get every lint check, so an alert is never simulated against a ruleset the daemon
    would refuse."""
    result = lint_paths(paths)
    for diagnostic in result.diagnostics:
        print(printable(diagnostic.format()), file=sys.stderr)
    if has_errors(result.diagnostics):
        return None
    return Ruleset.compile(result.playbooks)


def run(args: argparse.Namespace) -> int:
    ruleset = load_ruleset(args.rules)
    if ruleset is None:
        return EXIT_FAILURE
    reports = []
    for name in args.files:
        payload = read_payload(name)
        try:
            notification = parse_notification(payload)
        except AlertError as exc:
            raise UsageError(f"{name}: {exc}") from None
        reports.extend(simulate(ruleset, notification, explain=args.explain, source=name))
    if args.format == "json":
        sys.stdout.write(printable(json.dumps(reports, indent=2, ensure_ascii=False) + "\n"))
    else:
        sys.stdout.write(printable(format_text(reports)))
    return EXIT_OK
