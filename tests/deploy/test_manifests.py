"""The kustomize overlays, rendered by Debian's kubectl 1.20: valid objects, restricted pods, the daemon
config kurative loads, the NetworkPolicy's boundaries and a playbook repository's own overlay.

No server is needed here (tests/deploy/test_realkube.py applies the same renders to a real one).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from ruamel.yaml import YAML

from kurative.adapters.secrets import KubernetesSecret
from kurative.config import Overrides, load_settings
from kurative.playbooks.loading import load_playbooks
from tests.support.deploy import (
    NAMESPACE,
    PORT,
    TARGETS,
    kubectl_run,
    one,
    pod_templates,
    render,
    restricted_violations,
)
from tests.support.generated import (
    BASE_CONFIG,
    BASE_RULES,
    OWN,
    ROOT,
    rbac_for_rules,
    run_cli,
    secrets_outside_the_namespace,
)
from tests.support.kubectl import require_kubectl

pytestmark = pytest.mark.timeout(120)
# The server here is 1.20; kubernetes-validate's oldest schemas (1.25 in 1.37.0) are the nearest. Every
# kind and field used is the same in both except the PodDisruptionBudget (policy/v1 here,
# policy/v1beta1 on 1.20). The newest schemas check that nothing is deprecated away.
_SCHEMAS = sorted(
    {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()},
    key=lambda v: tuple(int(n) for n in v.split(".")),
)
SCHEMA_VERSIONS = (_SCHEMAS[0], _SCHEMAS[-1])
_renders: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return require_kubectl()


def rendered(kubectl: Path, target: str) -> list[dict[str, Any]]:
    if target not in _renders:
        _renders[target] = render(kubectl, target)
    return copy.deepcopy(_renders[target])


def _config(docs: list[dict[str, Any]], tmp_path: Path, environ: dict[str, str] | None = None) -> Any:
    configmap = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kurative-config")
    )
    path = tmp_path / "kurative.yaml"
    path.write_text(configmap["data"]["kurative.yaml"])
    return load_settings(Overrides(config=str(path)), environ or {})


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(docs, "Deployment", "kurative")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_rendered_object_is_a_valid_kubernetes_object(kubectl: Path, target: str) -> None:
    docs = rendered(kubectl, target)
    kinds = sorted({d["kind"] for d in docs})
    for kind in ("ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service"):
        assert kind in kinds, f"{target} renders no {kind}"
    for doc in docs:
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} {doc['metadata']['name']}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_pod_template_meets_the_restricted_profile(kubectl: Path, target: str, tmp_path: Path) -> None:
    docs = rendered(kubectl, target)
    shutdown = _config(docs, tmp_path).runner.shutdown_timeout
    templates = list(pod_templates(docs))
    assert [name for name, _ in templates] == ["Deployment/kurative"]
    for name, spec in templates:
        assert restricted_violations(spec, shutdown_timeout=shutdown) == [], name
        assert spec["serviceAccountName"] == "kurative"
    namespace = one(docs, "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert namespace[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_the_restricted_check_finds_what_breaks_the_profile(kubectl: Path) -> None:
    (_, spec) = next(pod_templates(rendered(kubectl, "single")))
    assert restricted_violations(spec, shutdown_timeout=30) == []
    (container,) = spec["containers"]
    container["securityContext"].update(
        privileged=True, allowPrivilegeEscalation=True, readOnlyRootFilesystem=False
    )
    container["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    container["securityContext"]["runAsNonRoot"] = False
    container["ports"][0]["hostPort"] = 9095
    del container["resources"]["limits"]
    del container["readinessProbe"]
    spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    del container["securityContext"]["seccompProfile"]
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    spec["terminationGracePeriodSeconds"] = 30
    problems = restricted_violations(spec, shutdown_timeout=30)
    for expected in (
        "hostNetwork is set",
        "volume host: type ['hostPath'] is not allowed",
        "terminationGracePeriodSeconds 30 is not above shutdownTimeout 30",
        "container kurative: privileged",
        "container kurative: allowPrivilegeEscalation is not false",
        "container kurative: capabilities do not drop ALL",
        "container kurative: adds capabilities ['SYS_ADMIN']",
        "container kurative: runAsNonRoot is not true",
        "container kurative: seccompProfile is 'Unconfined', not RuntimeDefault",
        "container kurative: readOnlyRootFilesystem is not true",
        "container kurative: hostPort 9095",
        "container kurative: no limits.cpu",
        "container kurative: readinessProbe is not /readyz",
    ):
        assert expected in problems


def test_the_deployed_config_is_one_kurative_loads(kubectl: Path, tmp_path: Path) -> None:
    docs = rendered(kubectl, "single")
    settings = _config(docs, tmp_path)
    assert (settings.listen.host, settings.listen.port) == ("0.0.0.0", PORT)
    assert settings.auth.bearer_tokens == ("alertmanager-token",)
    assert NAMESPACE in settings.guards.protected_namespaces  # the daemon cannot act on itself
    assert settings.secrets.sources == {
        "alertmanager-token": KubernetesSecret(NAMESPACE, "kurative-auth", "alertmanager-token"),
        "slack-webhook": KubernetesSecret(NAMESPACE, "kurative-webhooks", "slack"),
    }
    container = _container(docs)
    assert container["command"] == ["kurative", "serve"]
    assert container["args"][:2] == ["--config", "/etc/kurative/config/kurative.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/kurative/config"
    # --rules points at the mounted playbook ConfigMap, whose name is stable (hot reload, no rollout)
    assert container["args"][2:] == ["--rules", mounts["playbooks"]]
    playbooks = one(docs, "ConfigMap", "kurative-playbooks")
    assert sorted(playbooks["data"]) == sorted(p.name for p in BASE_RULES.glob("*.yaml"))
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in playbooks["data"].items():
        (folder / name).write_text(text)
    loaded = load_playbooks([str(folder)])
    assert loaded.diagnostics == [] or not any(d.severity == "error" for d in loaded.diagnostics)
    assert len(loaded.playbooks) == 7
    for port in (
        container["ports"][0]["containerPort"],
        one(docs, "Service", "kurative")["spec"]["ports"][0]["port"],
    ):
        assert port == PORT
    assert container["image"].startswith("ghcr.io/kurative/kurative:")


def test_single_keeps_the_sqlite_journal_on_a_claim_with_one_replica_recreated(
    kubectl: Path, tmp_path: Path
) -> None:
    docs = rendered(kubectl, "single")
    deployment = one(docs, "Deployment", "kurative")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(docs)
    url = _env(container)["KURATIVE_JOURNAL"]
    assert url == "sqlite:////var/lib/kurative/journal.sqlite"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = one(docs, "PersistentVolumeClaim", "kurative-journal")
    assert volumes["journal"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert url.removeprefix("sqlite:///").startswith(mounts["journal"] + "/")
    assert _config(docs, tmp_path, {"KURATIVE_JOURNAL": url}).journal.url == url


def test_ha_reads_the_postgres_url_from_a_secret_and_spreads_three_replicas(
    kubectl: Path, tmp_path: Path
) -> None:
    docs = rendered(kubectl, "ha")
    assert not [d for d in docs if d["kind"] in ("PersistentVolumeClaim", "Secret")]
    deployment = one(docs, "Deployment", "kurative")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = _env(_container(docs))
    assert env["KURATIVE_JOURNAL"] == {"secretKeyRef": {"name": "kurative-journal", "key": "url"}}
    assert env["KURATIVE_MIGRATE"] == "true"  # every replica migrates under the advisory lock
    (term,) = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    pdb = one(docs, "PodDisruptionBudget", "kurative")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == spec["selector"]
    # What the env var does to the settings: the URL from the Secret wins over the file.
    url = "postgresql://kurative:pw@db.database.svc:5432/kurative"
    settings = _config(docs, tmp_path, {"KURATIVE_JOURNAL": url, "KURATIVE_MIGRATE": "true"})
    assert (settings.journal.url, settings.journal.migrate) == (url, True)


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("to") or rule.get("from") or []


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


# The base's placeholders (documentation ranges: they reach nothing) and the example's values.
API_SERVER = {"own-playbooks": "192.0.2.10/32"}
WEBHOOKS = {"own-playbooks": "203.0.113.0/24"}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_network_policy_lets_in_only_the_monitoring_namespaces_and_out_only_the_listed_peers(
    kubectl: Path, target: str
) -> None:
    """The whole ingress and egress lists, peer by peer: any added or widened peer fails here."""
    _check_network_policy(rendered(kubectl, target), target)


def _check_network_policy(docs: list[dict[str, Any]], target: str) -> None:
    policy = one(docs, "NetworkPolicy", "kurative")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"] == one(docs, "Deployment", "kurative")["spec"]["selector"]
    senders = [_namespace("monitoring")]
    if target == "own-playbooks":
        senders.append(_namespace("observability"))  # the example's Alertmanager namespace
    assert policy["ingress"] == [{"from": senders, "ports": _tcp(PORT)}]
    egress = [
        {"to": [_namespace("kube-system")], "ports": [{"protocol": "UDP", "port": 53}, *_tcp(53)]},
        {"to": [{"ipBlock": {"cidr": API_SERVER.get(target, "192.0.2.1/32")}}], "ports": _tcp(443, 6443)},
        {"to": [_namespace("monitoring")], "ports": _tcp(9090)},
        {"to": [{"ipBlock": {"cidr": WEBHOOKS.get(target, "198.51.100.0/24")}}], "ports": _tcp(443)},
    ]
    if target == "ha":
        postgres = {
            **_namespace("database"),
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
        }
        egress.append({"to": [postgres], "ports": _tcp(5432)})
    assert policy["egress"] == egress


def test_the_network_policy_check_catches_a_policy_that_opens_up(kubectl: Path) -> None:
    """Every opening the exact comparison must refuse: an empty selector, a wide range, a second rule."""
    openings: list[Callable[[dict[str, Any]], Any]] = [
        lambda p: p["ingress"][0]["from"].append({"namespaceSelector": {}}),
        lambda p: p["egress"][2]["to"].__setitem__(0, {"namespaceSelector": {}}),
        lambda p: p["egress"][3]["to"].append({"ipBlock": {"cidr": "0.0.0.0/1"}}),
        lambda p: p["egress"].append({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": _tcp(443)}),
        lambda p: p["egress"][1].pop("ports"),
    ]
    for open_up in openings:
        docs = rendered(kubectl, "single")
        _check_network_policy(docs, "single")
        open_up(one(docs, "NetworkPolicy", "kurative")["spec"])
        with pytest.raises(AssertionError):
            _check_network_policy(docs, "single")


def test_a_playbook_repository_adds_its_rules_folder_without_editing_the_base(kubectl: Path) -> None:
    docs = rendered(kubectl, "own-playbooks")
    container = _container(docs)
    assert container["args"] == [
        "--config", "/etc/kurative/config/kurative.yaml",
        "--rules", "/etc/kurative/playbooks",
        "--rules", "/etc/kurative/own-playbooks",
    ]  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["own-playbooks"] == "/etc/kurative/own-playbooks"
    assert "playbooks" in mounts
    own = one(docs, "ConfigMap", "kurative-own-playbooks")
    assert sorted(own["data"]) == sorted(p.name for p in (OWN / "rules").glob("*.yaml"))
    volumes = {
        v["name"]: v for v in one(docs, "Deployment", "kurative")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["own-playbooks"]["configMap"]["name"] == "kurative-own-playbooks"
    # the ClusterRole patch replaced the base's rules: the own playbook's kubernetes.scale is granted
    role = one(docs, "ClusterRole", "kurative")
    assert {"apiGroups": [""], "resources": ["events", "resourcequotas"], "verbs": ["list"]} in role["rules"]
    base_role = one(rendered(kubectl, "single"), "ClusterRole", "kurative")
    assert role["rules"] != base_role["rules"]
    policy = one(docs, "NetworkPolicy", "kurative")["spec"]
    cidrs = [
        peer["ipBlock"]["cidr"] for rule in policy["egress"] for peer in _peers(rule) if "ipBlock" in peer
    ]
    assert cidrs == [API_SERVER["own-playbooks"], WEBHOOKS["own-playbooks"]]


def _roles(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(namespace, name) -> the Secrets each rendered Role grants."""
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["rules"][0]["resourceNames"]
        for d in docs
        if d["kind"] == "Role"
    }


def test_the_rendered_secret_roles_grant_exactly_the_configs_secrets_in_kuratives_namespace(
    kubectl: Path,
) -> None:
    settings = load_settings(Overrides(config=str(BASE_CONFIG)), {})
    secrets = sorted(s.name for s in settings.secrets.sources.values() if isinstance(s, KubernetesSecret))
    assert secrets
    assert secrets_outside_the_namespace(BASE_CONFIG) == []
    for target in sorted(TARGETS):
        assert _roles(rendered(kubectl, target)) == {(NAMESPACE, "kurative-secrets"): secrets}, target


def test_a_secret_outside_kuratives_namespace_is_refused_for_the_base_and_cannot_take_its_grant(
    kubectl: Path, tmp_path: Path
) -> None:
    """The kustomizations' `namespace: kurative` moves every Role: the base refuses such a Secret.

    Rendered by kubectl 1.20's kustomize, `kurative rbac --config` output for a Secret in `ops` shows
    why: its Role lands in kurative's namespace. With per-namespace Role names it can no longer take
    the place of the Role that grants kurative's own Secrets.
    """
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    base = tmp_path / "deploy" / "kustomize" / "base"
    config = base / "kurative.yaml"
    text = config.read_text()
    moved = "slack-webhook: {kubernetes: {namespace: ops,"
    config.write_text(text.replace("slack-webhook: {kubernetes: {namespace: kurative,", moved))
    assert moved in config.read_text()
    with pytest.raises(RuntimeError, match=r"ops/kurative-webhooks are outside the namespace 'kurative'"):
        rbac_for_rules(config)
    (base / "rbac.yaml").write_text(run_cli("rbac", "--rules", str(BASE_RULES), "--config", str(config)))
    out = kubectl_run(kubectl, "kustomize", str(tmp_path / "deploy" / "kustomize" / "overlays" / "single"))
    docs = [d for d in YAML(typ="safe").load_all(out) if d]
    assert _roles(docs) == {
        (NAMESPACE, "kurative-secrets"): ["kurative-auth"],
        (NAMESPACE, "kurative-secrets-ops"): ["kurative-webhooks"],  # moved: why the base refuses it
    }
