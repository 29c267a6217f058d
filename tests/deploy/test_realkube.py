"""The deploy manifests on the real kube-apiserver v1.20.2 (RBAC mode) with Debian's kubectl 1.20.2.

One API server for the module (its own: the manifests create the cluster-wide ClusterRole `kurative`,
which other modules' RBAC tests create on the session's cluster): both overlays pass a server-side
dry-run, `single` is applied for real, its ServiceAccount can do exactly what `kurative rbac` printed
(`kubectl auth can-i --as=system:serviceaccount:kurative:kurative`), and `kurative serve`, a process on
this machine with a token of that ServiceAccount and the deployed config, reads its credential from
the Kubernetes Secret it is granted, runs a playbook against the API server and records a clean,
permanent 403 for an action outside the generated RBAC.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from kurative.journal import StepStatus, open_journal
from tests.support.deploy import (
    NAMESPACE,
    SERVICE_ACCOUNT,
    dump_all,
    for_server,
    kubectl_run,
    one,
    render,
)
from tests.support.generated import RBAC
from tests.support.kube_fixtures import ensure_kube_binaries
from tests.support.kubectl import require_kubectl
from tests.support.processes import log_tail, stop_process, wait_ready
from tests.support.realkube import RealCluster, RealKubeError, free_port, start_real_cluster

pytestmark = [pytest.mark.kube, pytest.mark.realkube, pytest.mark.timeout(240)]
TOKEN = "alertmanager-token-from-a-kubernetes-secret"
RBAC_API = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return require_kubectl()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[RealCluster]:
    ensure_kube_binaries(pytestconfig)
    try:
        # No controller-manager: nothing here needs pods; RBAC, TokenRequest and dry-run are the server's.
        started = start_real_cluster(tmp_path_factory.mktemp("deploy-kube"), controller_manager=False)
    except RealKubeError as exc:
        pytest.fail(f"the real kube-apiserver did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def admin(cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An admin kubeconfig."""
    return cluster.kubeconfig(tmp_path_factory.mktemp("deploy-admin") / "kubeconfig")


def kc(kubectl: Path, admin: Path, *args: str, stdin: str | None = None) -> str:
    return kubectl_run(kubectl, "--kubeconfig", str(admin), *args, stdin=stdin)


def for_this_server(kubectl: Path, admin: Path, target: str) -> list[dict[str, Any]]:
    """The render, with the PDB's apiVersion chosen by discovery (1.20 serves only policy/v1beta1)."""
    versions = kc(kubectl, admin, "api-versions").split()
    return for_server(render(kubectl, target), serves_policy_v1="policy/v1" in versions)


@pytest.fixture(scope="module")
def applied(kubectl: Path, admin: Path) -> list[dict[str, Any]]:
    """`single` applied for real (server-side apply), plus the Secrets an operator creates."""
    docs = for_this_server(kubectl, admin, "single")
    out = kc(kubectl, admin, "apply", "--server-side", "-f", "-", stdin=dump_all(docs))
    assert "serverside-applied" in out
    secrets = {
        (NAMESPACE, "kurative-auth"): {"alertmanager-token": TOKEN},
        (NAMESPACE, "kurative-webhooks"): {"slack": "https://hooks.example.invalid/T0/B0/x"},
        (NAMESPACE, "other-secret"): {"password": "not-for-kurative"},
        ("default", "kurative-auth"): {"alertmanager-token": "same name, other namespace"},
    }
    for (namespace, name), data in secrets.items():
        literals = [f"--from-literal={k}={v}" for k, v in data.items()]
        kc(kubectl, admin, "-n", namespace, "create", "secret", "generic", name, *literals)
    return docs


def test_both_overlays_and_the_example_pass_a_server_side_dry_run(kubectl: Path, admin: Path) -> None:
    versions = kc(kubectl, admin, "api-versions").split()
    assert "policy/v1beta1" in versions  # the 1.20 server: PDBs only as policy/v1beta1
    # the namespace must exist for a dry-run of what lives in it; create it for real first
    namespace = one(render(kubectl, "single"), "Namespace", NAMESPACE)
    kc(kubectl, admin, "apply", "--server-side", "-f", "-", stdin=dump_all([namespace]))
    for target in ("single", "ha", "own-playbooks"):
        docs = for_this_server(kubectl, admin, target)
        out = kc(
            kubectl, admin, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=dump_all(docs)
        )
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == len(docs), out
        assert all(line.endswith("serverside-applied (server dry run)") for line in lines), out
    # a dry run creates nothing
    assert "kurative" not in kc(kubectl, admin, "get", "clusterroles", "-o", "name")


def _can_i(kubectl: Path, admin: Path, *args: str) -> bool:
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(admin), "auth", "can-i", *args, f"--as={SERVICE_ACCOUNT}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {args}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def _resource(group: str, resource: str) -> list[str]:
    """can-i's arguments for a resource, with its group and subresource."""
    name, _, sub = resource.partition("/")
    args = [f"{name}.{group}" if group else name]
    return [*args, f"--subresource={sub}"] if sub else args


def _printed() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ClusterRole rules, secret Role rules by namespace) of the committed `kurative rbac` output."""
    docs = [d for d in YAML(typ="safe").load_all(RBAC.read_text()) if d]
    cluster_rules = one(docs, "ClusterRole", "kurative")["rules"]
    roles = [d for d in docs if d["kind"] == "Role"]
    return cluster_rules, roles


def test_the_service_account_can_do_what_kurative_rbac_printed(
    kubectl: Path, admin: Path, applied: list[dict[str, Any]]
) -> None:
    cluster_rules, roles = _printed()
    assert one(applied, "ClusterRole", "kurative")["rules"] == cluster_rules
    checked = 0
    for rule in cluster_rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    where = ["-n", "shop"] if resource not in ("nodes", "storageclasses") else []
                    assert _can_i(kubectl, admin, verb, *_resource(group, resource), *where), (verb, resource)
                    checked += 1
    (role,) = roles
    assert role["metadata"]["namespace"] == NAMESPACE
    for name in role["rules"][0]["resourceNames"]:
        assert _can_i(kubectl, admin, "get", f"secrets/{name}", "-n", NAMESPACE), name
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "question",
    [
        "create pods -n shop",
        "delete pods -n shop",
        "create pods --subresource=exec -n shop",
        "watch pods -n shop",
        "delete namespaces",
        "create namespaces",
        "create deployments.apps -n shop",
        "delete deployments.apps -n shop",
        "update deployments.apps -n shop",
        "get configmaps -n shop",
        "get nodes --subresource=proxy",
        "delete nodes",
        "create clusterrolebindings.rbac.authorization.k8s.io",
        "escalate clusterroles.rbac.authorization.k8s.io",
        "bind clusterroles.rbac.authorization.k8s.io",
        "impersonate users",
        "create serviceaccounts --subresource=token -n kurative",
        "list secrets -n kurative",
        "watch secrets -n kurative",
        "get secrets -n kurative",
        "get secrets/other-secret -n kurative",
        "get secrets/kurative-auth -n default",
        "get secrets/kurative-auth -n shop",
        "update secrets/kurative-auth -n kurative",
        "patch secrets/kurative-auth -n kurative",
        "delete secrets/kurative-auth -n kurative",
        "list secrets --all-namespaces",
        "create secrets -n kurative",
    ],
)
def test_the_service_account_can_do_nothing_else(
    kubectl: Path, admin: Path, applied: list[dict[str, Any]], question: str
) -> None:
    assert not _can_i(kubectl, admin, *question.split()), question


_LIST_LINE = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")
# What every authenticated identity may do (system:basic-user, system:discovery, ...), not kurative's.
_EVERYONE = {"selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io"}


def _granted(listing: str) -> set[tuple[str, str, str]]:
    """(resource, resource name, verb) from `kubectl auth can-i --list`, without non-resource URLs."""
    found = set()
    for line in listing.splitlines()[1:]:
        match = _LIST_LINE.match(line)
        assert match, f"unexpected can-i --list line: {line!r}"
        resource, urls, names, verbs = match.groups()
        if urls or resource in _EVERYONE:
            continue
        for verb in verbs.split():
            for name in names.split() or [""]:
                found.add((resource, name, verb))
    return found


def test_the_rules_the_api_server_lists_for_the_service_account_are_exactly_the_printed_ones(
    kubectl: Path, admin: Path, applied: list[dict[str, Any]]
) -> None:
    cluster_rules, roles = _printed()
    expected = {
        (f"{resource}.{group}" if group else resource, "", verb)
        for rule in cluster_rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    outside = _granted(kc(kubectl, admin, "auth", "can-i", "--list", f"--as={SERVICE_ACCOUNT}", "-n", "shop"))
    assert outside == expected
    secrets = {("secrets", name, "get") for name in roles[0]["rules"][0]["resourceNames"]}
    inside = _granted(
        kc(kubectl, admin, "auth", "can-i", "--list", f"--as={SERVICE_ACCOUNT}", "-n", NAMESPACE)
    )
    assert inside == expected | secrets


CORDON = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: cordon-node, version: 1}
spec:
  trigger: {alertname: [DeployNodeNotReady]}
  approval: auto
  steps:
    - name: cordon
      action: kubernetes.cordon
      params: {node: "${labels.node}"}
"""
OUTSIDE = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: annotate-configmap, version: 1}
spec:
  trigger: {alertname: [DeployConfigStale]}
  approval: auto
  steps:
    - name: annotate
      action: kubernetes.annotate
      params:
        namespace: "${labels.namespace}"
        kind: ConfigMap
        name: "${labels.configmap}"
        annotations: {kurative.io/seen: "yes"}
      retry: {attempts: 3, backoff: 100ms}
"""


def _service_account_kubeconfig(cluster: RealCluster, admin_api: Any, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the ServiceAccount (`kubectl create token` is 1.24+)."""
    from kubernetes import client

    core = client.CoreV1Api(admin_api)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    status = core.create_namespaced_service_account_token("kurative", NAMESPACE, request).status
    assert status is not None
    assert status.token
    token = status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "real",
                "cluster": {"server": cluster.host, "certificate-authority": str(cluster.ca_cert)},
            }
        ],
        "users": [{"name": "kurative", "user": {"token": token}}],
        "contexts": [{"name": "kurative", "context": {"cluster": "real", "user": "kurative"}}],
        "current-context": "kurative",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def test_kurative_serve_with_the_service_account_token_and_the_deployed_config_acts_and_is_refused_outside(
    cluster: RealCluster, kubectl: Path, admin: Path, applied: list[dict[str, Any]], tmp_path: Path
) -> None:
    kc(kubectl, admin, "create", "namespace", "shop")
    kc(kubectl, admin, "-n", "shop", "create", "configmap", "app-settings", "--from-literal=a=b")
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "deploy-node-1"}}
    kc(kubectl, admin, "create", "-f", "-", stdin=json.dumps(node))

    api = cluster.api_client()
    try:
        kubeconfig = _service_account_kubeconfig(cluster, api, tmp_path / "sa.kubeconfig")
    finally:
        api.close()  # type: ignore[no-untyped-call]
    # The deployed config, as the pod reads it, on a loopback port of this machine.
    configmap = next(
        d for d in applied if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kurative-config")
    )
    config = YAML(typ="safe").load(configmap["data"]["kurative.yaml"])
    port = free_port()
    config["listen"] = {"host": "127.0.0.1", "port": port}
    config["runner"] = {**config.get("runner", {}), "pollInterval": "200ms"}
    (tmp_path / "kurative.yaml").write_text(json.dumps(config))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cordon.yaml").write_text(CORDON)
    (rules / "outside.yaml").write_text(OUTSIDE)
    journal_url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KURATIVE_", "KUBERNETES_"))}
    env.update(KUBECONFIG=str(kubeconfig), KURATIVE_JOURNAL=journal_url)
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kurative.cli",
                "serve",
                "--config",
                str(tmp_path / "kurative.yaml"),
                "--rules",
                str(rules),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(
            "kurative serve", f"http://127.0.0.1:{port}/readyz", process, lambda: log_tail(log, 3000), 60
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        alerts = [
            {"labels": {"alertname": "DeployNodeNotReady", "node": "deploy-node-1"}},
            {"labels": {"alertname": "DeployConfigStale", "namespace": "shop", "configmap": "app-settings"}},
        ]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/alerts", json=alert_payload(*alerts), headers=headers
        )
        assert answer.status_code == 200, answer.text
        wrong = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/alerts",
            json=alert_payload(*alerts),
            headers={"Authorization": "Bearer x"},
        )
        assert wrong.status_code == 401
        details = asyncio.run(_settled(journal_url, 2))
    finally:
        stop_process(process)
    by_playbook = {d.execution.playbook_name: d for d in details}
    cordoned = by_playbook["cordon-node"]
    assert cordoned.execution.state == "succeeded", (cordoned, log_tail(log, 3000))
    spec = json.loads(kc(kubectl, admin, "get", "node", "deploy-node-1", "-o", "json"))["spec"]
    assert spec.get("unschedulable") is True

    refused = by_playbook["annotate-configmap"]
    assert refused.execution.state == "failed"
    finals = [s for s in refused.steps if s.status != StepStatus.STARTED]
    (final,) = finals  # one attempt: a 403 is permanent, the retry policy does not repeat it
    assert final.status == StepStatus.FAILED
    assert final.attempt == 1
    assert final.error is not None
    assert "403" in final.error or "forbidden" in final.error.lower()
    assert SERVICE_ACCOUNT in final.error
    assert "kurative rbac" in final.error
    assert "Traceback" not in final.error
    text = log.read_text()
    assert "Traceback" not in text
    assert TOKEN not in text  # the credential read from the Secret never reaches the log
    annotations = json.loads(
        kc(kubectl, admin, "-n", "shop", "get", "configmap", "app-settings", "-o", "json")
    )
    assert "kurative.io/seen" not in (annotations["metadata"].get("annotations") or {})


def alert_payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) notification of firing alerts."""
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "kurative",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [
            {
                "status": "firing",
                "annotations": {},
                "startsAt": "2026-12-01T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                **alert,
            }
            for alert in alerts
        ],
    }


async def _settled(url: str, count: int) -> list[Any]:
    journal = await open_journal(url)
    try:
        deadline = time.monotonic() + 60
        while True:
            found = list((await journal.list_executions(limit=50)).items)
            if len(found) >= count and all(e.state.finished for e in found):
                return [await journal.get_execution(e.id) for e in found]
            assert time.monotonic() < deadline, f"executions did not finish: {found}"
            await asyncio.sleep(0.2)
    finally:
        await journal.close()
