"""The adapter maps API answers to our error tree the same way on both servers; faults on the fake.

The Status bodies of the fake are checked against the shapes the real kube-apiserver answers with
(the same expected dicts pass on both), so the fake cannot drift from what actions rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from kurative.adapters.kubernetes import (
    ApiTimeoutError,
    ClusterClient,
    ClusterConfigError,
    InvalidObjectError,
    KubernetesAdapter,
    KubeSettings,
    ServerError,
    TooManyRequestsError,
    UnauthorizedError,
    UnreachableError,
)
from kurative.errors import BreakerOpen, ObjectConflict, ObjectNotFound, TemporaryActionError
from tests.integration.kube.helpers import APPS, Kube, RequestFailed, Runner
from tests.support.fakekube import FakeCluster, Fault

pytestmark = pytest.mark.kube


def _status(kube: Kube, method: str, path: str, body: object = None) -> dict:
    with pytest.raises(RequestFailed) as caught:
        kube.request(method, path, body)
    status: dict = json.loads(caught.value.body)
    return status


def test_status_bodies_have_the_real_shape(kube: Kube) -> None:
    kube.deployment("web", replicas=1)
    path = kube.ns_path("deployments", "web", group=APPS)
    missing = _status(kube, "GET", kube.ns_path("deployments", "ghost", group=APPS))
    assert missing == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    exists = _status(
        kube, "POST", kube.ns_path("deployments", group=APPS), kube.get(path) | {"metadata": {"name": "web"}}
    )
    assert (exists["reason"], exists["code"], exists["message"]) == (
        "AlreadyExists",
        409,
        'deployments.apps "web" already exists',
    )
    stale = kube.get(path)
    stale["metadata"]["resourceVersion"] = "1"
    conflict = _status(kube, "PUT", path, stale)
    assert (conflict["reason"], conflict["code"]) == ("Conflict", 409)
    assert conflict["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    for _ in range(10):  # the real controller may update the Deployment between our read and our write
        body = kube.get(path)
        body["spec"]["replicas"] = -1
        invalid = _status(kube, "PUT", path, body)
        if invalid["reason"] != "Conflict":
            break
    assert (invalid["reason"], invalid["code"]) == ("Invalid", 422)
    assert invalid["message"].startswith(
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: '
    )
    assert invalid["details"]["kind"] == "Deployment"
    assert {"reason": "FieldValueInvalid", "field": "spec.replicas"}.items() <= invalid["details"]["causes"][
        0
    ].items()


async def test_adapter_maps_not_found_conflict_and_invalid(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    client = run.adapter.client(None)
    path = kube.ns_path("deployments", "web", group=APPS)
    with pytest.raises(ObjectNotFound, match=r'GET .*/deployments/ghost: deployments.apps "ghost" not found'):
        await client.request("GET", kube.ns_path("deployments", "ghost", group=APPS))
    with pytest.raises(ObjectConflict) as conflict:
        await client.request(
            "PATCH",
            path,
            body={"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}},
            content_type="application/merge-patch+json",
        )
    assert conflict.value.temporary
    with pytest.raises(InvalidObjectError, match=r"spec.replicas: Invalid value: -1") as invalid:
        await client.request(
            "PATCH", path, body={"spec": {"replicas": -1}}, content_type="application/merge-patch+json"
        )
    assert not invalid.value.temporary


def _runner(cluster: FakeCluster, **settings: float) -> Runner:
    adapter = KubernetesAdapter(KubeSettings(**settings))  # type: ignore[arg-type]
    adapter.add_client(None, cluster.api_client())
    return Runner(adapter)


async def test_server_errors_and_throttling_are_temporary_with_retry_after(
    fake_kube: FakeCluster, fake: Kube
) -> None:
    run = _runner(fake_kube)
    try:
        fake.pod("web")
        pod = {"namespace": fake.namespace, "pod": "web"}
        fake_kube.inject(Fault("GET", rf"/api/v1/namespaces/{fake.namespace}/pods/web", status=500, times=1))
        with pytest.raises(ServerError, match="injected fault 500") as caught:
            await run("pod_logs", pod)
        assert caught.value.temporary
        fake_kube.inject(
            Fault("GET", rf"/api/v1/namespaces/{fake.namespace}/pods/web", status=503, retry_after=7, times=1)
        )
        with pytest.raises(ServerError) as unavailable:
            await run("pod_logs", pod)
        assert unavailable.value.retry_after == 7
        fake_kube.inject(
            Fault("*", rf"/api/v1/namespaces/{fake.namespace}/pods/web", status=429, retry_after=3, times=1)
        )
        with pytest.raises(TooManyRequestsError) as throttled:
            await run("delete_pod", pod)
        assert throttled.value.retry_after == 3
        assert fake.exists(fake.ns_path("pods", "web"))
        # the faults were one-shot: the same step now succeeds
        assert (await run("delete_pod", pod))["deleted"] is True
    finally:
        fake_kube.clear_faults()
        run.adapter.close()


async def test_a_hanging_server_times_out(fake_kube: FakeCluster, fake: Kube) -> None:
    run = _runner(fake_kube, read_timeout=0.5)
    try:
        fake.pod("web")
        fake_kube.inject(Fault("GET", rf"/api/v1/namespaces/{fake.namespace}/pods/web", delay=3.0, times=1))
        with pytest.raises(ApiTimeoutError, match="did not answer") as caught:
            await run("get", {"namespace": fake.namespace, "kind": "Pod", "name": "web"})
        assert isinstance(caught.value, TemporaryActionError)
    finally:
        fake_kube.clear_faults()
        run.adapter.close()


async def test_unreachable_server_and_rejected_credentials(fake_kube: FakeCluster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    dead = ClusterClient(k8s.ApiClient(configuration), name="dead", connect_timeout=1, read_timeout=1)
    try:
        with pytest.raises(UnreachableError, match="cannot reach the API server of cluster dead"):
            await dead.request("GET", "/api/v1/namespaces")
    finally:
        dead.close()

    configuration = k8s.Configuration()
    configuration.host = fake_kube.host
    configuration.api_key = {"authorization": "not-a-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    stranger = ClusterClient(k8s.ApiClient(configuration), name="fake")
    try:
        with pytest.raises(UnauthorizedError, match="credentials were rejected"):
            await stranger.request("GET", "/api/v1/namespaces")
    finally:
        stranger.close()


def test_unknown_cluster_is_a_clear_config_error() -> None:
    adapter = KubernetesAdapter(KubeSettings(contexts={"eu": "eu-admin"}))
    try:
        with pytest.raises(ClusterConfigError, match=r"unknown cluster 'us'.*known: eu"):
            adapter.client("us")
    finally:
        adapter.close()


async def test_kubeconfig_contexts_pick_the_cluster(fake_kube: FakeCluster, tmp_path: Path) -> None:
    config = fake_kube.kubeconfig(tmp_path / "kubeconfig")
    adapter = KubernetesAdapter(KubeSettings(kubeconfig=str(config), contexts={"prod": "admin@fakekube"}))
    try:
        found = await adapter.client("prod").request("GET", "/api/v1/namespaces/default")
        assert found["metadata"]["name"] == "default"
        assert adapter.client("prod") is adapter.client("prod")
        assert (await adapter.client(None).eviction_version()) == "policy/v1"
    finally:
        adapter.close()


async def test_circuit_breaker_opens_on_failures_not_on_4xx(fake_kube: FakeCluster, fake: Kube) -> None:
    reset = 2.0  # the calls below that meet the open breaker come well within it, on a loaded machine too
    run = _runner(fake_kube, breaker_fail_max=2, breaker_reset_timeout=reset)
    client = run.adapter.client(None)
    path = fake.ns_path("configmaps", "cfg")
    try:
        for _ in range(3):  # answers about missing objects are the API working: no trip
            with pytest.raises(ObjectNotFound):
                await client.request("GET", path)
        fake_kube.inject(Fault("GET", path, status=500))
        for _ in range(2):
            with pytest.raises(ServerError):
                await client.request("GET", path)
        with pytest.raises(BreakerOpen, match="circuit breaker for kubernetes/default is open") as opened:
            await client.request("GET", path)
        assert 0 < opened.value.retry_after <= reset
        assert client.breaker is not None
        assert client.breaker.current_state == "open"
        fake_kube.clear_faults()
        await asyncio.sleep(reset + 0.1)  # past the reset timeout: one trial call is let through
        with pytest.raises(ObjectNotFound):
            await client.request("GET", path)
        assert client.breaker.current_state == "closed"
    finally:
        fake_kube.clear_faults()
        run.adapter.close()


async def test_kubeconfig_env_with_several_files_is_merged_as_kubectl_does(
    fake_kube: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = fake_kube.kubeconfig(tmp_path / "admin.yaml")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing.yaml"), str(admin)]))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    adapter = KubernetesAdapter()
    try:
        assert (await adapter.client(None).request("GET", "/version"))["gitVersion"].startswith("v1.30")
    finally:
        adapter.close()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing.yaml"))
    nothing = KubernetesAdapter()
    try:
        with pytest.raises(ClusterConfigError, match=r"no Kubernetes config: .*missing.yaml does not exist"):
            nothing.client(None)
    finally:
        nothing.close()
