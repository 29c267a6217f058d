"""The ``kurative`` command line: one subcommand per module of :mod:`kurative.commands`.

Subcommands register themselves (``register(subparsers)``), so that adding a command touches only its
own module. Our own errors print as one line on stderr; only a bug prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import kurative
import kurative.commands
from kurative.commands import EXIT_FAILURE, EXIT_USAGE
from kurative.errors import KurativeError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kurative",
        description="Turns Prometheus alerts into safe, audited remediation on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kurative {kurative.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(kurative.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kurative.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"kurative {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KurativeError as exc:
        print(f"kurative {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``kurative lint … | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
