"""The deployed RBAC is enough: every action the base playbooks use runs as the deployed ServiceAccount.

tests/deploy/test_realkube.py proves that what `kurative rbac` printed is what the API server grants;
this module proves that it is enough. The RBAC objects of the rendered `single` overlay are applied to
a real kube-apiserver v1.20.2 (with the controller-manager: Deployments get ReplicaSets and pods, Jobs
get pods), a TokenRequest token of `kurative:kurative` is taken, and each Kubernetes action of the
base playbooks runs through the real adapter with that token, on the objects a real alert would name
(a CronJob's pod for resolve_owner included). A missing rule is a 403 and fails the test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kurative.adapters.kube_settings import KubeSettings
from kurative.adapters.kubernetes import KubernetesAdapter
from kurative.commands.rbac import rules_for_playbooks
from kurative.playbooks.loading import load_playbooks
from tests.integration.kube.helpers import Kube, Runner
from tests.support.deploy import KUSTOMIZE, NAMESPACE, dump_all, kubectl_run, render
from tests.support.kube_fixtures import ensure_kube_binaries
from tests.support.kubectl import require_kubectl
from tests.support.realkube import RealCluster, RealKubeError, start_real_cluster

pytestmark = [pytest.mark.kube, pytest.mark.realkube, pytest.mark.timeout(240)]
BASE_RULES = KUSTOMIZE / "base" / "playbooks" / "rules"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
BATCH = "/apis/batch/v1"

Scenario = Callable[[Kube, Runner], Awaitable[None]]


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return require_kubectl()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[RealCluster]:
    ensure_kube_binaries(pytestconfig)
    try:
        started = start_real_cluster(tmp_path_factory.mktemp("deploy-rbac-kube"), controller_manager=True)
    except RealKubeError as exc:
        pytest.fail(f"the real kube-apiserver did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        started.stop()


def _service_account_api(cluster: RealCluster) -> Any:
    admin = cluster.api_client()
    try:
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        status = (
            k8s.CoreV1Api(admin)
            .create_namespaced_service_account_token("kurative", NAMESPACE, request)
            .status
        )
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    assert status is not None
    assert status.token
    conf = k8s.Configuration()
    conf.host = cluster.host
    conf.ssl_ca_cert = str(cluster.ca_cert)
    conf.api_key = {"authorization": status.token}
    conf.api_key_prefix = {"authorization": "Bearer"}
    return k8s.ApiClient(conf)


def _ready_deployment(kube: Kube, name: str, replicas: int = 1) -> list[dict[str, Any]]:
    kube.deployment(name, replicas=replicas)
    return kube.wait_for(f"{name} pods", lambda: (p := kube.pods(f"app={name}")) and len(p) == replicas and p)


async def _collect(kube: Kube, run: Runner) -> None:
    kube.pod("diag")
    await run("collect_diagnostics", {"namespace": kube.namespace, "pod": "diag", "tail_lines": 5})


async def _resolve(kube: Kube, run: Runner) -> None:
    pod = _ready_deployment(kube, "owned")[0]
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": pod["metadata"]["name"]})
    assert (out["kind"], out["name"]) == ("Deployment", "owned")
    # A crash-looping CronJob pod: Pod -> Job -> CronJob.
    cron = kube.get(kube.cronjob("nightly", suspend=True))
    owner = {"apiVersion": cron["apiVersion"], "kind": "CronJob", "name": "nightly"}
    job_spec = {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}}
    }
    kube.create(
        f"{BATCH}/namespaces/{kube.namespace}/jobs",
        {
            "metadata": {
                "name": "nightly-1",
                "ownerReferences": [{**owner, "uid": cron["metadata"]["uid"], "controller": True}],
            },
            "spec": job_spec,
        },
    )
    job_pod = kube.wait_for("the Job's pod", lambda: kube.pods("job-name=nightly-1"))[0]
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": job_pod["metadata"]["name"]})
    assert (out["kind"], out["name"]) == ("CronJob", "nightly")


async def _get(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=0)
    kube.hpa("web", 3)
    for kind in ("Deployment", "HorizontalPodAutoscaler", "Job"):
        await run("get", {"namespace": kube.namespace, "kind": kind, "name": "web", "missing_ok": True})


async def _restart(kube: Kube, run: Runner) -> None:
    # the crash-loop playbook restarts whatever resolve_owner found
    kube.deployment("web", replicas=0)
    kube.statefulset("db", replicas=0)
    kube.daemonset("agent", "busybox")
    for kind, name in (("Deployment", "web"), ("StatefulSet", "db"), ("DaemonSet", "agent")):
        await run("rollout_restart", {"namespace": kube.namespace, "kind": kind, "name": name})


async def _wait(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=0)
    out = await run(
        "wait_rollout",
        {
            "namespace": kube.namespace,
            "kind": "Deployment",
            "name": "web",
            "timeout": "30s",
            "interval": "200ms",
        },
    )
    assert out["complete"] is True


async def _rollback(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=0)
    path = kube.wait_revision("web", "1")
    kube.patch(path, {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    kube.wait_revision("web", "2")
    await run("rollback_deployment", {"namespace": kube.namespace, "name": "web"})


async def _patch_hpa(kube: Kube, run: Runner) -> None:
    kube.hpa("web", 5)
    await run("patch_hpa", {"namespace": kube.namespace, "name": "web", "max_replicas": 7})


async def _expand(kube: Kube, run: Runner) -> None:
    kube.claim("data", "1Gi")
    await run(
        "expand_pvc", {"namespace": kube.namespace, "name": "data", "size": "+50%", "max_size": "200Gi"}
    )


async def _cordon(kube: Kube, run: Runner) -> None:
    kube.node(f"{kube.namespace}-cordon")
    await run("cordon", {"node": f"{kube.namespace}-cordon"})


async def _drain(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-drain"
    kube.node(node)
    pod = _ready_deployment(kube, "drained")[0]
    kube.bind(pod["metadata"]["name"], node)
    out = await run("drain", {"node": node, "timeout": "20s", "grace_period": 0})
    assert out["evicted"] == [f"{kube.namespace}/{pod['metadata']['name']}"]


async def _delete_job(kube: Kube, run: Runner) -> None:
    spec = {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}}
    }
    kube.create(f"{BATCH}/namespaces/{kube.namespace}/jobs", {"metadata": {"name": "failed"}, "spec": spec})
    await run("delete_job", {"namespace": kube.namespace, "name": "failed", "propagation": "Background"})


SCENARIOS: dict[str, Scenario] = {
    "collect_diagnostics": _collect,
    "resolve_owner": _resolve,
    "get": _get,
    "rollout_restart": _restart,
    "wait_rollout": _wait,
    "rollback_deployment": _rollback,
    "patch_hpa": _patch_hpa,
    "expand_pvc": _expand,
    "cordon": _cordon,
    "drain": _drain,
    "delete_job": _delete_job,
}


async def test_every_base_playbook_action_runs_as_the_deployed_service_account(
    kubectl: Path, cluster: RealCluster, tmp_path: Path
) -> None:
    admin_config = cluster.kubeconfig(tmp_path / "admin.kubeconfig")
    rbac = [d for d in render(kubectl, "single") if d["kind"] in RBAC_KINDS]
    out = kubectl_run(
        kubectl, "--kubeconfig", str(admin_config), "apply", "--server-side", "-f", "-", stdin=dump_all(rbac)
    )
    assert "serverside-applied" in out
    _rules, used = rules_for_playbooks(load_playbooks([BASE_RULES]).playbooks)
    actions = sorted(name.removeprefix("kubernetes.") for name in used)
    assert actions == sorted(SCENARIOS), "a base playbook action without a scenario here (or one too many)"

    api = cluster.api_client()
    kube = Kube(api, cluster)
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, _service_account_api(cluster))
    run = Runner(adapter)
    try:
        # The RBAC authorizer sees new bindings through an informer: wait until the grant is visible.
        can_i = [
            str(kubectl), "--kubeconfig", str(admin_config), "auth", "can-i", "get", "pods",
            f"--as=system:serviceaccount:{NAMESPACE}:kurative", "-n", "default",
        ]  # fmt: skip
        kube.wait_for(
            "the grant to be visible",
            lambda: (
                subprocess.run(can_i, check=False, capture_output=True, text=True, timeout=30).stdout.strip()
                == "yes"
            ),
        )
        for action in actions:
            kube.namespace = kube.create_namespace(f"base-{action}")
            await SCENARIOS[action](kube, run)
    finally:
        adapter.close()
        api.close()
