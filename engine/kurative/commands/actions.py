"""``kurative actions``: the action catalogue as the registry declares it.

Text for people, JSON for tools, Markdown for the README's table (generated, never hand-written twice):
name, risk, params, RBAC rules, repeat-safety and dry-run support of every action.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kurative.actions.base import ActionSpec
from kurative.actions.registry import all_actions
from kurative.commands import EXIT_OK


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "actions", help="list the action catalogue (params, risk, RBAC, repeat-safety, dry-run)"
    )
    parser.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format"
    )
    parser.add_argument(
        "--prefix", default="", metavar="PREFIX", help="only actions whose name starts with PREFIX"
    )
    parser.set_defaults(func=run)


def describe(spec: ActionSpec) -> dict[str, Any]:
    """One action as plain JSON."""
    return {
        "name": spec.name,
        "summary": spec.summary,
        "risk": str(spec.risk),
        "repeat_safety": str(spec.repeat_safety),
        "dry_run": spec.dry_run,
        "implemented": spec.implemented,
        "params": spec.params,
        "output": spec.output,
        "rbac": [
            {
                "apiGroups": list(rule.api_groups),
                "resources": list(rule.resources),
                "verbs": list(rule.verbs),
                "clusterScoped": rule.cluster_scoped,
            }
            for rule in spec.rbac
        ],
    }


def _params_text(spec: ActionSpec) -> str:
    properties = spec.params.get("properties") or {}
    required = set(spec.params.get("required") or [])
    return ", ".join(f"{name}{'' if name in required else '?'}" for name in properties)


def _rbac_text(spec: ActionSpec) -> str:
    parts = []
    for rule in spec.rbac:
        groups = ",".join(g or "core" for g in rule.api_groups)
        parts.append(f"{groups}/{','.join(rule.resources)}: {' '.join(rule.verbs)}")
    return "; ".join(parts) or "-"


def render_text(specs: list[ActionSpec]) -> str:
    lines = []
    for spec in specs:
        flags = [str(spec.risk), str(spec.repeat_safety), "dry-run" if spec.dry_run else "no dry-run"]
        lines.append(f"{spec.name}  [{', '.join(flags)}]")
        lines.append(f"    {spec.summary}")
        lines.append(f"    params: {_params_text(spec) or '-'}")
        lines.append(f"    rbac:   {_rbac_text(spec)}")
    return "\n".join(lines)


def render_markdown(specs: list[ActionSpec]) -> str:
    rows = [
        "| action | what it does | params (? = optional) | risk | repeat-safety | dry-run | RBAC |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        cells = [
            f"`{spec.name}`",
            spec.summary,
            _params_text(spec) or "-",
            str(spec.risk),
            str(spec.repeat_safety),
            "yes" if spec.dry_run else "no",
            _rbac_text(spec),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    specs = [spec for spec in all_actions() if spec.name.startswith(args.prefix)]
    if args.format == "json":
        print(json.dumps([describe(spec) for spec in specs], indent=2))
    elif args.format == "markdown":
        print(render_markdown(specs))
    else:
        print(render_text(specs))
    return EXIT_OK
