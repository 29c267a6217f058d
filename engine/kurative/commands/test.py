"""``kurative test``: run playbook unit tests, the way ``promtool test rules`` runs rule tests.

Each TESTFILE (``*.test.yaml`` / ``*_test.yaml``, see docs/testing-playbooks.md) holds cases: alerts in,
the playbooks that must start (and optionally dedupe keys and rendered params) out. Prints one block per
file, ``SUCCESS`` or ``FAILED:`` with a diff of expected against actual and why each playbook did or
did not start. Exit 0 when every case passes, 1 when any fails, the rules do not load or a test file is
invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kurative.commands import (
    EXIT_FAILURE,
    EXIT_OK,
    PrintableWriter,
    add_rules_argument,
    require_paths,
    ruleset_or_report,
)
from kurative.errors import UsageError
from kurative.matching.playbook_tests import load_test_file, run_case
from kurative.playbooks.loading import files_under, is_test_file


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "test",
        help="run playbook unit tests (alerts in, expected playbooks and params out)",
        description="Run playbook unit tests against the playbooks in --rules. Exit 1 on any failure.",
    )
    add_rules_argument(parser)
    parser.add_argument(
        "files",
        nargs="+",
        metavar="TESTFILE",
        help="test files (*.test.yaml, *_test.yaml), or directories to search for them",
    )
    parser.set_defaults(func=run)


def _labels(labels: Any) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def find_test_files(names: list[str]) -> list[str]:
    """The files named, with each directory replaced by the test files under it (sorted)."""
    require_paths(names)
    found: list[str] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            inside = files_under(path, is_test_file)
            if not inside:
                raise UsageError(f"{name}: no test files (*.test.yaml, *_test.yaml) in this directory")
            found.extend(str(p) for p in inside)
        else:
            found.append(name)
    return found


def _cases(count: int) -> str:
    return "1 case" if count == 1 else f"{count} cases"


def run(args: argparse.Namespace) -> int:
    files = find_test_files(args.files)
    ruleset = ruleset_or_report(args.rules)
    if ruleset is None:
        return EXIT_FAILURE
    out = PrintableWriter(sys.stdout)
    cases = failed = 0
    broken_files = 0
    for name in files:
        out.write(f"Unit Testing:  {name}\n")
        test_file = load_test_file(name)
        if test_file.problems:
            broken_files += 1
            out.write("  FAILED:\n")
            for problem in test_file.problems:
                out.write(f"    {problem}\n")
            out.write("\n")
            continue
        results = [run_case(ruleset, case) for case in test_file.cases]
        cases += len(results)
        bad = [r for r in results if not r.passed]
        failed += len(bad)
        if not bad:
            out.write(f"  SUCCESS ({_cases(len(results))})\n\n")
            continue
        out.write("  FAILED:\n")
        for result in bad:
            for failure in result.failures:
                out.write(
                    f'    case "{failure.case}" (line {failure.line}), alert {failure.alert_index + 1} '
                    f"{failure.alert.status} {_labels(failure.alert.labels)}:\n"
                )
                for line in failure.diff.splitlines():
                    out.write(f"      {line}\n")
                for note in failure.notes:
                    out.write(f"      note: {note}\n")
        out.write("\n")
    summary = f"{_cases(cases)}, {cases - failed} passed, {failed} failed"
    if broken_files:
        summary += f"; {broken_files} invalid test files"
    out.write(summary + "\n")
    return EXIT_FAILURE if failed or broken_files else EXIT_OK
