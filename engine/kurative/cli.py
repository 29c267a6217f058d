"""The ``kurative`` command line: one subcommand per module of :mod:`kurative.commands`.

Subcommands register themselves (``register(subparsers)``), so that adding a command touches only its
own module. Only the module of the command being run is imported: the others appear in ``--help``
from :data:`COMMANDS` (a unit test keeps it equal to what the modules register), so that starting
``kurative serve`` does not pay for importing what ``rbac`` or ``simulate`` need.

Our own errors print as one line on stderr. Exit codes: 0 clean, 1 findings (lint errors,
failed tests, an unreachable journal), 2 usage errors and unusable input, 70 a bug: an unexpected
exception prints one line saying so (``--debug`` or ``KURATIVE_DEBUG=1`` prints its traceback), so
that CI can tell a crash from a finding.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Collection, Sequence

import kurative
from kurative.commands import EXIT_FAILURE, EXIT_SOFTWARE, EXIT_USAGE
from kurative.errors import KurativeError, UsageError

DEBUG_ENV = "KURATIVE_DEBUG"

COMMANDS: dict[str, str] = {
    "actions": "list the action catalogue (params, risk, RBAC, repeat-safety, dry-run)",
    "executions": "list, show, approve, reject or cancel executions",
    "journal": "maintain the journal (prune)",
    "lint": "check playbook files (schema, expressions, actions, references, versions)",
    "migrate": "apply the journal's schema migrations (--status: only show the version)",
    "playbooks": "the playbooks a running daemon has in force, with the loader's errors",
    "rbac": "print the least-privilege Role/ClusterRole the playbooks need, as YAML",
    "schema": "print a JSON Schema (playbook, config, alerts, test)",
    "serve": "run the daemon: receive alerts, match them, run the playbooks",
    "simulate": "show what alerts would do with the playbooks (no side effects)",
    "test": "run playbook unit tests (alerts in, expected playbooks and params out)",
}
"""Each subcommand (a module of :mod:`kurative.commands`) and its one-line help."""


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` runs, or None (``--help``, ``--version``, no or an unknown command)."""
    for token in argv:
        if token == "--debug":
            continue
        return token if token in COMMANDS else None
    return None


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``commands``, only those are imported and registered in full,
    the others are listed by name and help."""
    parser = argparse.ArgumentParser(
        prog="kurative",
        description="Turns Prometheus alerts into safe, audited remediation on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kurative {kurative.__version__}")
    _add_debug(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(f"kurative.commands.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    for command in subparsers.choices.values():
        _add_debug_everywhere(command)
    return parser


def _add_debug(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help=f"print the traceback of an unexpected error (also: {DEBUG_ENV}=1)",
    )


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after any (sub)command too; SUPPRESS keeps a subcommand from resetting it."""
    _add_debug(parser, default=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_debug_everywhere(child)


def _debugging(args: argparse.Namespace | None) -> bool:
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def main(argv: Sequence[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        command = chosen_command(arguments)
        args = build_parser(() if command is None else (command,)).parse_args(arguments)
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line, or the traceback when asked for
        debugging = _debugging(args)
        if debugging:
            traceback.print_exc()
        where = f"kurative {args.command}" if args is not None else "kurative"
        detail = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]
        hint = "" if debugging else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(
            f"{where}: internal error (a bug in kurative, please report it): {detail}{hint}", file=sys.stderr
        )
        return EXIT_SOFTWARE


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"kurative {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KurativeError as exc:
        print(f"kurative {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader went away (``kurative lint … | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
