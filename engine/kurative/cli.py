"""The ``kurative`` command line: one subcommand per module of :mod:`kurative.commands`.

Subcommands register themselves (``register(subparsers)``), so that adding a command touches only its
own module. Our own errors print as one line on stderr. Exit codes: 0 clean, 1 findings (lint errors,
failed tests, an unreachable journal), 2 usage errors and unusable input, 70 a bug: an unexpected
exception prints one line saying so (``--debug`` or ``KURATIVE_DEBUG=1`` prints its traceback), so
that CI can tell a crash from a finding.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence

import kurative
import kurative.commands
from kurative.commands import EXIT_FAILURE, EXIT_SOFTWARE, EXIT_USAGE
from kurative.errors import KurativeError, UsageError

DEBUG_ENV = "KURATIVE_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kurative",
        description="Turns Prometheus alerts into safe, audited remediation on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kurative {kurative.__version__}")
    _add_debug(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(kurative.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kurative.commands.{info.name}")
        module.register(subparsers)
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
        args = build_parser().parse_args(argv)
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
