"""Merging the RBAC rules of playbook steps into least-privilege manifests."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from kurative.actions.base import RbacRule
from kurative.actions.kubernetes.rbac import merge_rules, render_manifests, rules_for_step
from kurative.actions.registry import get_action
from kurative.cli import main


def r(group: str, resources: str, verbs: str, cluster: bool = False) -> RbacRule:
    return RbacRule((group,), tuple(resources.split()), tuple(verbs.split()), cluster_scoped=cluster)


def test_merge_unions_verbs_per_resource_and_groups_equal_verb_sets() -> None:
    merged = merge_rules(
        [
            r("apps", "deployments", "get patch"),
            r("apps", "statefulsets", "patch get"),
            r("apps", "deployments", "get"),
            r("", "pods", "get"),
            r("", "pods", "delete"),
            r("", "pods/eviction", "create"),
        ]
    )
    assert merged == [
        r("", "pods", "get delete"),
        r("", "pods/eviction", "create"),
        r("apps", "deployments statefulsets", "get patch"),
    ]


def test_a_resource_needed_cluster_wide_is_granted_once_cluster_wide() -> None:
    merged = merge_rules(
        [r("", "pods", "get"), r("", "pods", "list", cluster=True), r("", "nodes", "patch get", True)]
    )
    assert merged == [r("", "nodes", "get patch", True), r("", "pods", "get list", True)]


def test_merge_is_order_independent_and_sorted() -> None:
    rules = [r("batch", "jobs", "delete get"), r("", "events", "list"), r("apps", "replicasets", "list")]
    assert merge_rules(rules) == merge_rules(list(reversed(rules)))
    assert [rule.api_groups for rule in merge_rules(rules)] == [("",), ("apps",), ("batch",)]


def test_literal_kind_narrows_generic_actions_and_templates_do_not() -> None:
    get = get_action("kubernetes.get")
    assert get is not None
    assert rules_for_step(get, {"kind": "Node", "name": "n1"}) == (r("", "nodes", "get", True),)
    assert rules_for_step(get, {"kind": "${labels.kind}", "name": "x"}) == get.rbac
    scale = get_action("kubernetes.scale")
    assert scale is not None
    narrowed = rules_for_step(scale, {"namespace": "a", "kind": "StatefulSet", "name": "db", "replicas": 1})
    assert r("apps", "statefulsets", "get patch") in narrowed
    assert not any("deployments" in rule.resources for rule in narrowed)
    assert r("", "pods resourcequotas", "list") in narrowed  # not kind-dependent: kept


def test_render_cluster_and_namespaced() -> None:
    rules = [r("apps", "deployments", "get patch"), r("", "nodes", "get patch", True)]
    cluster = render_manifests(rules)
    assert [d["kind"] for d in cluster] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert cluster[1]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
    ]
    assert cluster[2]["subjects"] == [{"kind": "ServiceAccount", "name": "kurative", "namespace": "kurative"}]

    scoped = render_manifests(rules, scope="namespaced", target_namespaces=["shop", "blog"])
    kinds = [(d["kind"], d["metadata"].get("namespace")) for d in scoped]
    assert kinds == [
        ("ServiceAccount", "kurative"),
        ("ClusterRole", None),
        ("ClusterRoleBinding", None),
        ("Role", "blog"),
        ("RoleBinding", "blog"),
        ("Role", "shop"),
        ("RoleBinding", "shop"),
    ]
    assert scoped[1]["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    assert scoped[3]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}
    ]


PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: NAME, version: 1}
spec:
  trigger: {alertname: [X]}
  steps:
STEPS
"""


def _write(tmp_path: Path, name: str, steps: str) -> None:
    (tmp_path / f"{name}.yaml").write_text(PLAYBOOK.replace("NAME", name).replace("STEPS", steps))


def test_rbac_command_prints_kubectl_ready_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(
        tmp_path,
        "restart",
        "    - {name: owner, action: kubernetes.resolve_owner, params: {namespace: a, pod: b}}\n"
        "    - name: restart\n"
        "      action: kubernetes.rollout_restart\n"
        "      params: {namespace: a, kind: Deployment, name: w}\n"
        "    - {name: say, action: log, params: {message: hi}}\n",
    )
    _write(tmp_path, "node", "    - {name: node, action: kubernetes.get, params: {kind: Node, name: n1}}\n")
    assert main(["rbac", "--rules", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Least-privilege RBAC for kurative")
    assert "kubernetes.get, kubernetes.resolve_owner, kubernetes.rollout_restart" in out
    docs = list(YAML(typ="safe").load_all(out))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    ]

    assert main(["rbac", "--rules", str(tmp_path), "--namespaced", "--target-namespace", "shop"]) == 0
    docs = list(YAML(typ="safe").load_all(capsys.readouterr().out))
    assert [(d["kind"], d["metadata"].get("namespace")) for d in docs] == [
        ("ServiceAccount", "kurative"),
        ("ClusterRole", None),
        ("ClusterRoleBinding", None),
        ("Role", "shop"),
        ("RoleBinding", "shop"),
    ]


def test_rbac_command_refuses_broken_playbooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: x}\n")
    assert main(["rbac", "--rules", str(tmp_path)]) == 1
    assert "fix the playbook errors above first" in capsys.readouterr().err


def _grants(rules: list[RbacRule]) -> set[tuple[str, str, str]]:
    return {
        (g, res, v) for rule in rules for g in rule.api_groups for res in rule.resources for v in rule.verbs
    }


@given(
    st.lists(
        st.builds(
            lambda group, resources, verbs, cluster: RbacRule(
                (group,), resources, verbs, cluster_scoped=cluster
            ),
            st.sampled_from(["", "apps", "batch"]),
            st.lists(
                st.sampled_from(["pods", "nodes", "jobs", "deployments"]), min_size=1, max_size=3, unique=True
            ).map(tuple),
            st.lists(
                st.sampled_from(["get", "list", "patch", "delete", "create"]),
                min_size=1,
                max_size=3,
                unique=True,
            ).map(tuple),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_merging_grants_exactly_the_union(rules: list[RbacRule]) -> None:
    merged = merge_rules(rules)
    assert _grants(merged) == _grants(rules)
    assert merge_rules(merged) == merged
    keys = [(r.api_groups, r.verbs, r.cluster_scoped) for r in merged]
    assert len(keys) == len(set(keys))  # one rule per group, verb set and scope


def test_printed_manifests_are_valid_kubernetes_objects() -> None:
    docs = render_manifests(
        [r("apps", "deployments", "get patch"), r("", "nodes", "get", True)],
        scope="namespaced",
        target_namespaces=["shop"],
    )
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_rbac_for_one_cluster_leaves_out_steps_pinned_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        tmp_path,
        "multi",
        "    - {name: eu, action: kubernetes.cordon, cluster: eu, params: {node: n1}}\n"
        "    - {name: any, action: kubernetes.get, cluster: '${labels.c}', params: {kind: Pod, name: x}}\n",
    )
    assert main(["rbac", "--rules", str(tmp_path), "--cluster", "us"]) == 0
    out = capsys.readouterr().out
    assert "Kubernetes actions used: kubernetes.get\n" in out
    assert main(["rbac", "--rules", str(tmp_path), "--cluster", "eu"]) == 0
    assert "Kubernetes actions used: kubernetes.cordon, kubernetes.get\n" in capsys.readouterr().out


CONFIG = """\
apiVersion: kurative/v1
kind: Config
auth:
  bearerTokens: [{secretRef: am-token}]
secrets:
  am-token: {kubernetes: {namespace: kurative, name: kurative-auth, key: token}}
  hook: {kubernetes: {namespace: ops, name: hooks, key: slack}}
  hook2: {kubernetes: {namespace: ops, name: more-hooks, key: teams}}
  unused: {kubernetes: {namespace: ops, name: never-read, key: x}}
  from-env: {env: SOME_TOKEN}
"""


def test_rbac_with_config_grants_get_on_exactly_the_referenced_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _write(
        rules,
        "notify",
        "    - name: hook\n"
        "      action: http.request\n"
        "      params: {url: {secretRef: hook}, headers: {X-Other: {secretRef: hook2}}}\n"
        "    - name: envhook\n"
        "      action: http.request\n"
        "      params: {url: {secretRef: from-env}}\n"
        "    - name: chosen-by-the-alert\n"
        "      action: http.request\n"
        "      params: {url: {secretRef: '${labels.hook}'}}\n"
        "    - name: typo\n"
        "      action: http.request\n"
        "      params: {url: {secretRef: undefined}}\n",
    )
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    assert main(["rbac", "--rules", str(rules), "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "secretRef '${labels.hook}' is a template; no Secret is granted for it" in captured.err
    out = captured.out
    assert (
        "# Kubernetes Secrets read (get by name only): kurative/kurative-auth, ops/hooks, ops/more-hooks\n"
        in out
    )
    docs = list(YAML(typ="safe").load_all(out))
    # no Kubernetes action: only the service account and the Secret roles
    assert [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs] == [
        ("ServiceAccount", "kurative", "kurative"),
        ("Role", "kurative-secrets", "kurative"),
        ("RoleBinding", "kurative-secrets", "kurative"),
        ("Role", "kurative-secrets-ops", "ops"),
        ("RoleBinding", "kurative-secrets-ops", "ops"),
    ]
    # a kustomization's `namespace:` would move the ops Role into kurative's namespace: said, and the
    # names differ, so the move cannot replace the grant of kurative's own namespace
    assert "the Role for the Secrets in namespace 'ops' must stay there" in captured.err
    assert "secretRef 'undefined' is not defined in the config's `secrets:`" in captured.err
    assert "'hook'" not in captured.err
    roles = {d["metadata"]["namespace"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert roles == {
        "kurative": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["kurative-auth"],
                "verbs": ["get"],
            }
        ],
        "ops": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["hooks", "more-hooks"],
                "verbs": ["get"],
            }
        ],
    }
    binding = docs[2]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "kurative-secrets",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kurative", "namespace": "kurative"}]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_rbac_without_config_grants_no_secret_and_a_bad_config_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "n", "    - {name: hook, action: http.request, params: {url: {secretRef: hook}}}\n")
    assert main(["rbac", "--rules", str(tmp_path)]) == 0
    assert "secrets" not in capsys.readouterr().out
    config = tmp_path / "bad.yaml"
    config.write_text("apiVersion: kurative/v1\nkind: Config\nsecrets: {x: {nowhere: 1}}\n")
    assert main(["rbac", "--rules", str(tmp_path / "n.yaml"), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:3:" in err
