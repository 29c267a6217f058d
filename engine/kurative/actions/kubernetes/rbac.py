"""Least-privilege RBAC for a set of playbook steps: merge the rules their actions declare.

``kurative rbac`` loads the playbooks, takes every Kubernetes step and asks :func:`rules_for_step`
what it needs; a step whose ``kind`` param is a literal (not a template) needs only that kind's
resource, so ``kubernetes.get {kind: Node}`` does not ask to read every kind. :func:`merge_rules`
folds the rules into as few PolicyRules as possible (one per API group, verb set and scope), sorted so
that the output is stable in Git, and :func:`render_manifests` wraps them in a ServiceAccount, a
(Cluster)Role and a binding ready for ``kubectl apply``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kurative.actions.base import ActionSpec, RbacRule
from kurative.actions.kubernetes._kinds import KINDS

RBAC_API = "rbac.authorization.k8s.io"
VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def _literal(value: Any) -> bool:
    return isinstance(value, str) and "${" not in value


def rules_for_step(spec: ActionSpec, params: Mapping[str, Any] | None = None) -> tuple[RbacRule, ...]:
    """The rules one step needs: the action's own, narrowed to a literal ``kind`` when it has one."""
    kind = (params or {}).get("kind")
    enum = ((spec.params.get("properties") or {}).get("kind") or {}).get("enum")
    if not (_literal(kind) and kind in KINDS and enum and kind in enum):
        return spec.rbac
    chosen = KINDS[str(kind)]
    choosable = {KINDS[k].resource for k in enum if k in KINDS}
    narrowed = []
    for rule in spec.rbac:
        if set(rule.resources) <= choosable:
            if chosen.resource in rule.resources and chosen.group in rule.api_groups:
                narrowed.append(
                    RbacRule(
                        (chosen.group,), (chosen.resource,), rule.verbs, cluster_scoped=not chosen.namespaced
                    )
                )
        else:
            narrowed.append(rule)
    return tuple(narrowed)


def _verb_key(verb: str) -> tuple[int, str]:
    return (VERB_ORDER.index(verb) if verb in VERB_ORDER else len(VERB_ORDER), verb)


def merge_rules(rules: Iterable[RbacRule]) -> list[RbacRule]:
    """One rule per (API group, verb set, scope), resources and verbs sorted, duplicates gone."""
    verbs: dict[tuple[str, str, bool], set[str]] = {}
    for rule in rules:
        for group in rule.api_groups:
            for resource in rule.resources:
                verbs.setdefault((group, resource, rule.cluster_scoped), set()).update(rule.verbs)
    # A resource needed both namespaced and cluster-wide is granted cluster-wide once.
    for group, resource, cluster in list(verbs):
        if not cluster and (group, resource, True) in verbs:
            verbs[(group, resource, True)] |= verbs.pop((group, resource, False))
    grouped: dict[tuple[str, tuple[str, ...], bool], list[str]] = {}
    for (group, resource, cluster), names in verbs.items():
        key = (group, tuple(sorted(names, key=_verb_key)), cluster)
        grouped.setdefault(key, []).append(resource)
    merged = [
        RbacRule((group,), tuple(sorted(resources)), verb_list, cluster_scoped=cluster)
        for (group, verb_list, cluster), resources in grouped.items()
    ]
    return sorted(merged, key=lambda r: (r.cluster_scoped, r.api_groups, r.resources, r.verbs))


def _rule(rule: RbacRule) -> dict[str, Any]:
    return {"apiGroups": list(rule.api_groups), "resources": list(rule.resources), "verbs": list(rule.verbs)}


def render_manifests(
    rules: Iterable[RbacRule],
    *,
    name: str = "kurative",
    namespace: str = "kurative",
    scope: str = "cluster",
    target_namespaces: Iterable[str] = (),
    subject: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role/ClusterRole and bindings for ``rules``.

    ``scope="cluster"``: one ClusterRole and ClusterRoleBinding (kurative acts in any namespace).
    ``scope="namespaced"``: a Role and RoleBinding in each of ``target_namespaces`` (default: the
    service account's namespace); rules that only exist cluster-wide (nodes, storage classes, pods
    across namespaces for drain) still go to a ClusterRole, since no Role can grant them.
    """
    merged = merge_rules(rules)
    who = dict(subject) if subject else {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    labels = {"app.kubernetes.io/name": "kurative", "app.kubernetes.io/component": "rbac"}
    docs: list[dict[str, Any]] = []
    if who.get("kind") == "ServiceAccount":
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
            }
        )
    cluster_rules = merged if scope == "cluster" else [r for r in merged if r.cluster_scoped]
    if cluster_rules:
        docs.append(
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels},
                "rules": [_rule(r) for r in cluster_rules],
            }
        )
        docs.append(
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": labels},
                "roleRef": {"apiGroup": RBAC_API, "kind": "ClusterRole", "name": name},
                "subjects": [who],
            }
        )
    namespaced_rules = [r for r in merged if not r.cluster_scoped] if scope != "cluster" else []
    if namespaced_rules:
        for target in sorted(set(target_namespaces) or {namespace}):
            docs.append(
                {
                    "apiVersion": f"{RBAC_API}/v1",
                    "kind": "Role",
                    "metadata": {"name": name, "namespace": target, "labels": labels},
                    "rules": [_rule(r) for r in namespaced_rules],
                }
            )
            docs.append(
                {
                    "apiVersion": f"{RBAC_API}/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": target, "labels": labels},
                    "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": name},
                    "subjects": [who],
                }
            )
    return docs
