"""The command table the CLI lists without importing every command module.

``kurative`` imports only the module of the command it runs; every other command appears in
``--help`` from :data:`kurative.cli.COMMANDS`. These tests keep that table equal to what the modules
register, and the help and errors the same as with every module registered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pkgutil
import subprocess
import sys

import pytest

import kurative.commands
from kurative.cli import COMMANDS, build_parser, chosen_command


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _output(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        parser.parse_args(argv)
    return out.getvalue() + err.getvalue()


def test_the_table_names_every_command_module_with_its_help() -> None:
    modules = sorted(
        m.name for m in pkgutil.iter_modules(kurative.commands.__path__) if not m.name.startswith("_")
    )
    assert list(COMMANDS) == modules
    full = _subcommands(build_parser())
    helps = {choice.dest: choice.help for choice in full._choices_actions}
    assert helps == COMMANDS


@pytest.mark.parametrize(
    "argv",
    [["--help"], [], ["nope"], ["--debug", "serve", "--help"], ["lint", "--help"], ["executions", "--help"]],
)
def test_help_and_errors_are_those_of_the_full_parser(argv: list[str]) -> None:
    command = chosen_command(argv)
    light = build_parser(() if command is None else (command,))
    assert _output(light, argv) == _output(build_parser(), argv)


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["serve", "--rules", "x"], "serve"), (["--debug", "lint", "x"], "lint"), (["--version"], None),
     (["-h"], None), ([], None), (["unknown"], None)],
)  # fmt: skip
def test_the_chosen_command(argv: list[str], command: str | None) -> None:
    assert chosen_command(argv) == command


@pytest.mark.timeout(60)
def test_serve_does_not_import_the_other_commands_or_the_kubernetes_client() -> None:
    code = (
        "import sys; from kurative.cli import build_parser; build_parser(('serve',)).parse_args(['serve']); "
        "print(sorted(m for m in sys.modules if m.startswith(('kurative.commands.', 'kubernetes'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "['kurative.commands.serve']"
