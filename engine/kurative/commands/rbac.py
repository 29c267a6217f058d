"""``kurative rbac``: the least-privilege RBAC that the loaded playbooks' Kubernetes steps need.

Prints a ServiceAccount, a ClusterRole (or Roles with ``--namespaced``) and the bindings as
multi-document YAML for ``kubectl apply -f -``. Playbook problems are reported as lint does and make
the command fail: RBAC computed from a half-read ruleset would be wrong.

With ``--config``, every ``secretRef`` that the playbooks or the config's ``auth`` use and that the
config's ``secrets`` section maps to a Kubernetes Secret adds ``get`` on exactly that Secret: one Role
per namespace with ``resourceNames``, never ``list`` or ``watch`` and never a namespace-wide grant.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from ruamel.yaml import YAML

from kurative.actions.base import RbacRule
from kurative.actions.kubernetes.rbac import RBAC_API, render_manifests, rules_for_step
from kurative.actions.registry import get_action
from kurative.adapters.secrets import KubernetesSecret
from kurative.commands import EXIT_FAILURE, EXIT_OK, add_rules_argument, require_paths
from kurative.config import Overrides, Settings, load_settings
from kurative.diagnostics import Diagnostic, has_errors
from kurative.errors import ConfigError, UsageError
from kurative.playbooks.loading import load_playbooks
from kurative.playbooks.models import Playbook


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rbac", help="print the least-privilege Role/ClusterRole the playbooks need, as YAML"
    )
    add_rules_argument(parser)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--cluster-scoped",
        dest="scope",
        action="store_const",
        const="cluster",
        help="one ClusterRole (default)",
    )
    scope.add_argument(
        "--namespaced",
        dest="scope",
        action="store_const",
        const="namespaced",
        help="Roles in --target-namespace(s); only rules that need it go to a ClusterRole",
    )
    parser.set_defaults(scope="cluster")
    parser.add_argument("--name", default="kurative", help="name of the ServiceAccount, roles and bindings")
    parser.add_argument("--namespace", default="kurative", help="namespace of the ServiceAccount")
    parser.add_argument(
        "--target-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="with --namespaced: a namespace kurative acts in (repeatable; default: --namespace)",
    )
    parser.add_argument(
        "--cluster",
        metavar="NAME",
        help="only steps that can target this cluster (a literal `cluster:` naming another one is left out)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon config: grant get on the Kubernetes Secrets its secretRefs name (by resourceNames)",
    )
    parser.set_defaults(func=run)


def rules_for_playbooks(
    playbooks: Iterable[Playbook], cluster: str | None = None
) -> tuple[list[RbacRule], list[str]]:
    """Every rule the Kubernetes steps need, and the actions they use (sorted)."""
    rules: list[RbacRule] = []
    used: set[str] = set()
    for playbook in playbooks:
        for step in playbook.steps:
            spec = get_action(step.action)
            if spec is None or not spec.name.startswith("kubernetes."):
                continue
            if cluster is not None and step.cluster and "${" not in step.cluster and step.cluster != cluster:
                continue
            used.add(spec.name)
            rules.extend(rules_for_step(spec, step.params))
    return rules, sorted(used)


def _secret_refs(value: Any) -> Iterator[str]:
    """Every ``{secretRef: name}`` inside a param or var value."""
    if isinstance(value, dict):
        ref = value.get("secretRef")
        if len(value) == 1 and isinstance(ref, str):
            yield ref
            return
        for item in value.values():
            yield from _secret_refs(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_refs(item)


def secret_refs_of(playbooks: Iterable[Playbook], settings: Settings) -> set[str]:
    """The secret names the playbooks' steps and vars and the config's auth section refer to."""
    names = set(settings.auth.bearer_tokens) | {ref for _, ref in settings.auth.basic}
    for playbook in playbooks:
        names.update(_secret_refs(dict(playbook.vars)))
        for step in playbook.steps:
            names.update(_secret_refs(dict(step.params)))
    return names


def secret_manifests(
    used: Iterable[str], settings: Settings, *, name: str, namespace: str
) -> list[dict[str, Any]]:
    """A Role and RoleBinding per namespace: ``get`` on the Kubernetes Secrets of ``used``, by name."""
    by_namespace: dict[str, set[str]] = {}
    for ref in used:
        source = settings.secrets.sources.get(ref)
        if isinstance(source, KubernetesSecret):
            by_namespace.setdefault(source.namespace, set()).add(source.name)
    labels = {"app.kubernetes.io/name": "kurative", "app.kubernetes.io/component": "rbac"}
    docs: list[dict[str, Any]] = []
    for target in sorted(by_namespace):
        # One name per namespace: a kustomization's `namespace:` that moves these Roles must not
        # make two of them collide (and replace the grant of the daemon's own namespace).
        role = secret_role_name(name, namespace, target)
        meta = {"name": role, "namespace": target, "labels": labels}
        docs.append(
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "resourceNames": sorted(by_namespace[target]),
                        "verbs": ["get"],
                    }
                ],
            }
        )
        docs.append(
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "RoleBinding",
                "metadata": dict(meta),
                "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
        )
    return docs


def secret_role_name(name: str, namespace: str, target: str) -> str:
    """``<name>-secrets`` in the service account's namespace, ``<name>-secrets-<target>`` elsewhere."""
    return f"{name}-secrets" if target == namespace else f"{name}-secrets-{target}"


def dump_yaml(docs: list[dict[str, Any]]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    require_paths(args.rules, "--rules: ")
    loaded = load_playbooks(args.rules)
    for problem in loaded.diagnostics:
        print(problem.format(), file=sys.stderr)
    if has_errors(loaded.diagnostics):
        print("kurative rbac: fix the playbook errors above first", file=sys.stderr)
        return EXIT_FAILURE
    if args.target_namespace and args.scope != "namespaced":
        raise UsageError("--target-namespace needs --namespaced")
    secret_docs: list[dict[str, Any]] = []
    if args.config is not None:
        require_paths([args.config], "--config: ")
        try:
            settings = load_settings(Overrides(config=args.config), environ={})
        except ConfigError as exc:
            for diagnostic in exc.diagnostics:
                print(
                    diagnostic.format() if isinstance(diagnostic, Diagnostic) else diagnostic, file=sys.stderr
                )
            print(f"kurative rbac: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        refs = secret_refs_of(loaded.playbooks, settings)
        for ref in sorted(r for r in refs if "${" in r):
            print(
                f"kurative rbac: secretRef {ref!r} is a template; no Secret is granted for it "
                "(name the secret literally)",
                file=sys.stderr,
            )
        for ref in sorted(r for r in refs if "${" not in r and r not in settings.secrets.sources):
            print(
                f"kurative rbac: secretRef {ref!r} is not defined in the config's `secrets:`; "
                "no Secret is granted for it",
                file=sys.stderr,
            )
        secret_docs = secret_manifests(refs, settings, name=args.name, namespace=args.namespace)
        for target in sorted({d["metadata"]["namespace"] for d in secret_docs} - {args.namespace}):
            print(
                f"kurative rbac: the Role for the Secrets in namespace {target!r} must stay there: apply it "
                f"with `kubectl apply -f`, not from a kustomization whose `namespace: {args.namespace}` "
                "would move it",
                file=sys.stderr,
            )
    rules, used = rules_for_playbooks(loaded.playbooks, args.cluster)
    header = (
        f"# Least-privilege RBAC for kurative, generated by `kurative rbac` from {len(loaded.playbooks)} "
        f"playbook(s).\n# Kubernetes actions used: {', '.join(used) or 'none'}\n"
    )
    if secret_docs:
        secrets = sorted(
            f"{d['metadata']['namespace']}/{n}"
            for d in secret_docs
            if d["kind"] == "Role"
            for n in d["rules"][0]["resourceNames"]
        )
        header += f"# Kubernetes Secrets read (get by name only): {', '.join(secrets)}\n"
    if not used and not secret_docs:
        print(header.rstrip())
        return EXIT_OK
    docs = render_manifests(
        rules,
        name=args.name,
        namespace=args.namespace,
        scope=args.scope,
        target_namespaces=args.target_namespace,
    )
    sys.stdout.write(header + dump_yaml(docs + secret_docs))
    return EXIT_OK
