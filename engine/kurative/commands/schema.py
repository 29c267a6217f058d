"""``kurative schema``: print a JSON Schema for editors (yaml-language-server ``$schema``) and CI."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kurative.commands import EXIT_OK
from kurative.playbooks.validation import load_schema

SCHEMAS = {"playbook": "playbook", "config": "config", "alerts": "alerts", "test": "playbook-test"}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema", help="print a JSON Schema (playbook, config, alerts, test)"
    )
    parser.add_argument("which", nargs="?", choices=sorted(SCHEMAS), default="playbook")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(load_schema(SCHEMAS[args.which]), indent=2) + "\n")
    return EXIT_OK
