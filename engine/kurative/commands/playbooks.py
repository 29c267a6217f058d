"""``kurative playbooks``: the playbooks a running daemon has in force, and what its loader reported.

One row per playbook the daemon loaded (name, version, status, content hash, source file), then every
problem of the last load as ``file:line:column: code: message (hint)``, as ``kurative lint`` prints
them. ``--reload`` asks the daemon to load its rules paths again first. ``-o json`` / ``-o yaml`` print
the API's answer as it is.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kurative.commands import EXIT_OK
from kurative.commands._client import ApiClient, add_server_arguments
from kurative.commands.executions import OUTPUTS, dump, table
from kurative.errors import UsageError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "playbooks", help="the playbooks a running daemon has in force, with the loader's errors"
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--reload",
        action="store_true",
        help="have the daemon check its rules paths now first (as SIGHUP does)",
    )
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise UsageError("no daemon: pass --server URL (and --token-file F)")
    with ApiClient(args.server, args.token_file) as client:
        answer = client.post("/reload") if args.reload else client.get("/playbooks")
    if args.output != "table":
        sys.stdout.write(dump(answer, args.output))
        return EXIT_OK
    rows = [
        (p["name"], str(p["version"]), p["status"], p["content_hash"][:19], p["source"], p["reason"])
        for p in answer["playbooks"]
    ]
    if rows:
        sys.stdout.write(table(("NAME", "VERSION", "STATUS", "HASH", "SOURCE", "REASON"), rows))
    else:
        print("No playbooks loaded.")
    if not answer["reloaded"]:
        print("The last reload had errors: the playbooks above stay in force.")
    for problem in answer["errors"]:
        hint = f" (hint: {problem['hint']})" if problem["hint"] else ""
        print(f"{problem['where']}: {problem['code']} {problem['message']}{hint}")
    return EXIT_OK
