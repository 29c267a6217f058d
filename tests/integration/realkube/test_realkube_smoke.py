"""The real kube-apiserver harness behaves like a Kubernetes v1.20 cluster for the official client."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.support import kube_build, realkube
from tests.support.kube_fixtures import ensure_kube_binaries
from tests.support.realkube import RealCluster, RealKubeError, real_cluster, start_real_cluster

pytestmark = [pytest.mark.realkube, pytest.mark.kube]

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy (controllers act asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def raw_get(api: ApiClient, path: str) -> dict[str, Any]:
    """GET a path the typed client has no method for (discovery of removed API versions)."""
    method, url, headers, body, post = api.param_serialize("GET", path, auth_settings=["BearerToken"])
    response = api.call_api(method, url, headers, body, post)
    response.read()
    assert response.status == 200, (path, response.status, response.data)
    result: dict[str, Any] = json.loads(response.data)
    return result


def raw_request(
    api: ApiClient, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Any request, answered as (status, JSON body) whatever the status."""
    method, url, headers, payload, post = api.param_serialize(
        method,
        path,
        header_params={"Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(method, url, headers, payload, post)
        response.read()
        return response.status, json.loads(response.data)
    except ApiException as exc:
        return int(exc.status), json.loads(exc.body)


def nginx_deployment(name: str, replicas: int = 2) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.25")]),
            ),
        ),
    )


def config_map(name: str, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


def test_admin_lists_namespaces(real_kube_client: ApiClient) -> None:
    names = {ns.metadata.name for ns in client.CoreV1Api(real_kube_client).list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names


def test_server_reports_v1_20_2(real_kube_client: ApiClient) -> None:
    info = client.VersionApi(real_kube_client).get_code()
    assert info.git_version == kube_build.KUBE_VERSION
    assert (info.major, info.minor) == ("1", "20")


def test_deployment_gets_a_replicaset_and_pods_from_the_controller_manager(
    real_kube_client: ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(real_kube_client)
    core = client.CoreV1Api(real_kube_client)
    deployment = apps.create_namespaced_deployment(kube_namespace, nginx_deployment("web", replicas=2))

    def owned_replicasets() -> list[client.V1ReplicaSet]:
        return [
            rs
            for rs in apps.list_namespaced_replica_set(kube_namespace).items
            if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])
        ]

    replicasets = eventually(owned_replicasets, what="a ReplicaSet owned by the Deployment")
    assert len(replicasets) == 1
    assert replicasets[0].metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    pods = eventually(
        lambda: core.list_namespaced_pod(kube_namespace, label_selector="app=web").items or None,
        what="pods of the ReplicaSet",
    )
    assert all(pod.status.phase == "Pending" for pod in pods)  # no scheduler, no kubelet
    refreshed = eventually(
        lambda: (d := apps.read_namespaced_deployment("web", kube_namespace)).status.replicas == 2 and d,
        what="Deployment status",
    )
    assert refreshed.metadata.annotations["deployment.kubernetes.io/revision"] == "1"

    # What `kubectl rollout restart` does: a template change makes a second ReplicaSet, revision 2.
    restarted_at = {"kubectl.kubernetes.io/restartedAt": "2021-01-01T00:00:00Z"}
    apps.patch_namespaced_deployment(
        "web", kube_namespace, {"spec": {"template": {"metadata": {"annotations": restarted_at}}}}
    )
    replicasets = eventually(
        lambda: len(owned_replicasets()) == 2 and owned_replicasets(), what="a second ReplicaSet"
    )
    revisions = sorted(rs.metadata.annotations["deployment.kubernetes.io/revision"] for rs in replicasets)
    assert revisions == ["1", "2"]


def test_server_side_dry_run_stores_nothing(real_kube_client: ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(real_kube_client)
    answered = core.create_namespaced_config_map(kube_namespace, config_map("dry", k="v"), dry_run="All")
    assert answered.metadata.name == "dry"
    assert answered.data == {"k": "v"}
    with pytest.raises(ApiException) as excinfo:
        core.read_namespaced_config_map("dry", kube_namespace)
    assert excinfo.value.status == 404


def test_stale_resource_version_conflicts(real_kube_client: ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(real_kube_client)
    created = core.create_namespaced_config_map(kube_namespace, config_map("cm", k="1"))
    stale = created.metadata.resource_version
    core.patch_namespaced_config_map("cm", kube_namespace, {"data": {"k": "2"}})

    with pytest.raises(ApiException) as patched:
        core.patch_namespaced_config_map(
            "cm",
            kube_namespace,
            {"metadata": {"resourceVersion": stale}, "data": {"k": "3"}},
            _content_type="application/merge-patch+json",
        )
    assert patched.value.status == 409
    assert json.loads(patched.value.body)["reason"] == "Conflict"

    created.data = {"k": "4"}
    with pytest.raises(ApiException) as replaced:
        core.replace_namespaced_config_map("cm", kube_namespace, created)
    assert replaced.value.status == 409
    assert core.read_namespaced_config_map("cm", kube_namespace).data == {"k": "2"}


def test_unprivileged_user_is_forbidden_until_granted_a_role(
    real_kube: RealCluster, real_kube_client: ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    kubeconfig = real_kube.kubeconfig(tmp_path / "kurative.kubeconfig", user="kurative")
    user_api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        as_user = client.CoreV1Api(user_api)
        with pytest.raises(ApiException) as excinfo:
            as_user.list_namespaced_config_map(kube_namespace)
        assert excinfo.value.status == 403
        assert (
            'User "kurative" cannot list resource "configmaps"' in json.loads(excinfo.value.body)["message"]
        )

        rbac = client.RbacAuthorizationV1Api(real_kube_client)
        rbac.create_namespaced_role(
            kube_namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            kube_namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="kurative-reads-configmaps"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                ),
                subjects=[
                    client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name="kurative")
                ],
            ),
        )

        def allowed() -> bool:
            try:
                as_user.list_namespaced_config_map(kube_namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        eventually(allowed, what="the RoleBinding to take effect")
        with pytest.raises(ApiException) as still_denied:
            as_user.create_namespaced_config_map(kube_namespace, config_map("nope"))
        assert still_denied.value.status == 403
    finally:
        user_api.close()


def test_discovery_serves_eviction_only_as_policy_v1beta1(real_kube_client: ApiClient) -> None:
    policy = raw_get(real_kube_client, "/apis/policy")
    assert [v["version"] for v in policy["versions"]] == ["v1beta1"]
    resources = {r["name"]: r for r in raw_get(real_kube_client, "/api/v1")["resources"]}
    eviction = resources["pods/eviction"]
    assert (eviction["group"], eviction["version"], eviction["kind"]) == ("policy", "v1beta1", "Eviction")
    policy_resources = {r["name"] for r in raw_get(real_kube_client, "/apis/policy/v1beta1")["resources"]}
    assert "poddisruptionbudgets" in policy_resources


def test_disruption_controller_fills_pdb_status_and_eviction_answers_429(
    real_kube_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(real_kube_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="only", labels={"app": "guarded"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    core.create_namespaced_pod(kube_namespace, pod)
    # No kubelet: report the pod Running and Ready ourselves through the status subresource.
    core.patch_namespaced_pod_status(
        "only",
        kube_namespace,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        _content_type="application/merge-patch+json",
    )
    pdbs = f"/apis/policy/v1beta1/namespaces/{kube_namespace}/poddisruptionbudgets"
    status, created = raw_request(
        real_kube_client,
        "POST",
        pdbs,
        {
            "apiVersion": "policy/v1beta1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "keep-one"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )
    assert status == 201, created

    def observed_status() -> dict[str, Any] | None:
        _, pdb = raw_request(real_kube_client, "GET", f"{pdbs}/keep-one")
        observed = pdb.get("status", {})
        return observed if observed.get("observedGeneration") == pdb["metadata"]["generation"] else None

    observed = eventually(observed_status, what="the disruption controller to fill the PDB status")
    assert (observed["expectedPods"], observed["currentHealthy"], observed["disruptionsAllowed"]) == (1, 1, 0)

    eviction = {
        "apiVersion": "policy/v1beta1",
        "kind": "Eviction",
        "metadata": {"name": "only", "namespace": kube_namespace},
    }
    status, answer = raw_request(
        real_kube_client, "POST", f"/api/v1/namespaces/{kube_namespace}/pods/only/eviction", eviction
    )
    assert status == 429, answer
    assert answer["reason"] == "TooManyRequests"
    assert "disruption budget" in answer["message"]
    assert core.read_namespaced_pod("only", kube_namespace).metadata.deletion_timestamp is None


@pytest.fixture
def node_name(real_kube_client: ApiClient, kube_namespace: str) -> Iterator[str]:
    core = client.CoreV1Api(real_kube_client)
    name = f"node-{kube_namespace}"
    core.create_node(
        client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"kurative.test/node": "1"}))
    )
    try:
        yield name
    finally:
        core.delete_node(name)


def test_pod_binds_to_a_node_object_through_pods_binding(
    real_kube_client: ApiClient, kube_namespace: str, node_name: str
) -> None:
    core = client.CoreV1Api(real_kube_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="bound"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    core.create_namespaced_pod(kube_namespace, pod)
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="bound"),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node_name),
    )
    # The server answers a Status, which the typed client cannot read as a Binding: take it raw.
    response = core.create_namespaced_pod_binding("bound", kube_namespace, binding, _preload_content=False)
    assert response.status == 201
    assert json.loads(response.data)["status"] == "Success"

    stored = core.read_namespaced_pod("bound", kube_namespace)
    assert stored.spec.node_name == node_name
    on_node = core.list_namespaced_pod(kube_namespace, field_selector=f"spec.nodeName={node_name}").items
    assert [p.metadata.name for p in on_node] == ["bound"]
    with pytest.raises(ApiException) as rebind:
        core.create_namespaced_pod_binding("bound", kube_namespace, binding, _preload_content=False)
    assert rebind.value.status == 409


def test_harness_starts_ready_and_stops_every_process_by_pid(tmp_path: Path) -> None:
    """A second, private cluster: figures for the report, and proof that nothing outlives it."""
    ensure_kube_binaries()
    with real_cluster(tmp_path / "cluster") as cluster:
        pids = cluster.pids()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        api = cluster.api_client()
        try:
            assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
        finally:
            api.close()
        rss = cluster.rss_bytes()
        print(
            "realkube figures: "
            + json.dumps(
                {
                    "ready_seconds": round(cluster.ready_seconds, 2),
                    "rss_mb": {name: round(value / 2**20) for name, value in rss.items()},
                }
            )
        )
        assert all(value > 0 for value in rss.values())
    assert not cluster.processes
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still runs after stop"


def test_a_failed_start_says_why_and_leaves_nothing_running(tmp_path: Path) -> None:
    ensure_kube_binaries()
    workdir = tmp_path / "broken"
    with pytest.raises(RealKubeError, match="kube-apiserver exited") as excinfo:
        start_real_cluster(workdir, extra_apiserver_args=["--no-such-flag=1"])
    assert "unknown flag: --no-such-flag" in str(excinfo.value)
    assert not _processes_mentioning(str(workdir.resolve()))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_a_port_taken_meanwhile_is_retried_on_other_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_kube_binaries()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([realkube.free_port(), realkube.free_port(), taken])  # etcd, peer, apiserver
        real_free_port = realkube.free_port
        monkeypatch.setattr(realkube, "free_port", lambda: next(picks, None) or real_free_port())
        with real_cluster(tmp_path / "cluster") as cluster:
            assert cluster.host != f"https://127.0.0.1:{taken}"
            assert "address already in use" in cluster.log_path("kube-apiserver").read_text()
