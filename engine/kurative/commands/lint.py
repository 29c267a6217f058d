"""``kurative lint``: every problem of a playbook repository, positioned, in the format CI wants."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kurative.commands import EXIT_FAILURE, EXIT_OK, printable, require_paths
from kurative.diagnostics import has_errors
from kurative.linting.against import compare_versions, playbooks_at
from kurative.linting.formats import FORMATS, FORMATTERS
from kurative.linting.lint import lint_paths


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lint",
        help="check playbook files (schema, expressions, actions, references, versions)",
        description="Check playbook files and report every problem as path:line:column: CODE message. "
        "Exit 0 when there are no errors (warnings and notes do not fail), 1 on errors, 2 on usage errors.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="playbook files or directories")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument(
        "--against",
        metavar="GIT_REV",
        help="also require a higher metadata.version for every playbook whose content changed since GIT_REV",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_paths(args.paths)
    result = lint_paths(args.paths)
    diagnostics = list(result.diagnostics)
    if args.against:
        previous = playbooks_at(args.against, args.paths)
        diagnostics = sorted(diagnostics + compare_versions(args.against, result.loaded, previous))
    sys.stdout.write(printable(FORMATTERS[args.format](diagnostics, len(result.files))))
    return EXIT_FAILURE if has_errors(diagnostics) else EXIT_OK
