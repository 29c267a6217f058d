"""Arrange and inspect cluster state for the action tests, identically on the fake and real server."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from kurative.actions.base import ActionContext
from kurative.actions.kubernetes import KubeGuards, check_effect
from kurative.actions.kubernetes._common import Effect, KubeClient
from kurative.actions.registry import get_action
from kurative.adapters.kubernetes import KubernetesAdapter

Obj = dict[str, Any]
CORE = "/api/v1"
APPS = "/apis/apps/v1"
BATCH_V1 = "/apis/batch/v1"
AUTOSCALING = "/apis/autoscaling/v1"
REVISION = "deployment.kubernetes.io/revision"


class Kube:
    """Raw JSON requests through the official client's ApiClient (sync), plus builders."""

    def __init__(self, api: Any, cluster: Any) -> None:
        self.api = api
        self.cluster = cluster
        self.namespace = ""
        self._namespaces: list[str] = []
        self._nodes: list[str] = []
        self.cluster_objects: list[str] = []

    def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None, **query: Any
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        m, url, h, b, _ = self.api.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(m, url, header_params=h, body=b, _request_timeout=(5, 30))
        data = response.read().decode()
        if response.status >= 300:
            raise RequestFailed(response.status, data)
        return json.loads(data) if data else None

    def get(self, path: str) -> Obj:
        found: Obj = self.request("GET", path)
        return found

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except RequestFailed as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, path: str, body: Obj) -> Obj:
        made: Obj = self.request("POST", path, body)
        return made

    def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> Obj:
        patched: Obj = self.request("PATCH", path, body, content_type)
        return patched

    def ns_path(self, resource: str, name: str = "", group: str = CORE) -> str:
        return f"{group}/namespaces/{self.namespace}/{resource}" + (f"/{name}" if name else "")

    def create_namespace(self, hint: str) -> str:
        base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "t"
        name = f"{base}-{secrets.token_hex(3)}"
        self.create(
            f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        self._namespaces.append(name)
        return name

    def cleanup(self) -> None:
        for name in self._namespaces:
            with contextlib.suppress(RequestFailed):
                self.request("DELETE", f"{CORE}/namespaces/{name}")
        for path in self.cluster_objects:
            with contextlib.suppress(RequestFailed):
                # no grace: a bound pod would otherwise wait for a kubelet that never comes
                self.request("DELETE", path, gracePeriodSeconds=0)

    # --- builders ------------------------------------------------------------------------------

    def pod(self, name: str, labels: Mapping[str, str] | None = None, **spec: Any) -> Obj:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels or {"app": name})},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
        }
        return self.create(self.ns_path("pods"), body)

    def _workload(
        self,
        kind: str,
        name: str,
        image: str,
        spec: Mapping[str, Any],
        pod_spec: Mapping[str, Any],
        container: str = "app",
    ) -> Obj:
        body = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {
                **spec,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": container, "image": image}], **pod_spec},
                },
            },
        }
        return self.create(self.ns_path(f"{kind.lower()}s", group=APPS), body)

    def deployment(self, name: str, replicas: int = 2, **template_spec: Any) -> Obj:
        pod_spec = {"terminationGracePeriodSeconds": 0, **template_spec}
        return self._workload("Deployment", name, "nginx:1.25", {"replicas": replicas}, pod_spec)

    def wait_revision(self, name: str, revision: str | None = None) -> str:
        """Wait until the controller gave Deployment ``name`` a revision (or this one); its path."""
        path = self.ns_path("deployments", name, group=APPS)

        def current() -> str | None:
            found: str | None = (self.get(path)["metadata"].get("annotations") or {}).get(REVISION)
            return found if revision is None or found == revision else None

        self.wait_for(f"revision {revision or 'any'} of {name}", current)
        return path

    def statefulset(self, name: str, replicas: int = 1) -> Obj:
        spec = {"replicas": replicas, "serviceName": name}
        return self._workload("StatefulSet", name, "redis", spec, {"terminationGracePeriodSeconds": 0})

    def cronjob(self, name: str, *, suspend: bool = False) -> str:
        """Create a CronJob in whichever batch version the server serves it; returns its path."""
        served = self.request("GET", "/apis/batch/v1")["resources"]
        version = "v1" if any(r["name"] == "cronjobs" for r in served) else "v1beta1"
        path = f"/apis/batch/{version}/namespaces/{self.namespace}/cronjobs"
        template = {
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}
                }
            }
        }
        body = {
            "metadata": {"name": name},
            "spec": {"schedule": "0 3 * * *", "suspend": suspend, "jobTemplate": template},
        }
        self.create(path, body)
        return f"{path}/{name}"

    def daemonset(self, name: str, image: str, **pod_spec: Any) -> Obj:
        """A DaemonSet on the nodes labelled ``pool=<namespace>`` (tolerating every taint)."""
        placement = {"nodeSelector": {"pool": self.namespace}, "tolerations": [{"operator": "Exists"}]}
        return self._workload("DaemonSet", name, image, {}, {**placement, **pod_spec}, container="a")

    def hpa(self, name: str, max_replicas: int, **spec: Any) -> str:
        """A HorizontalPodAutoscaler of the Deployment ``name``; returns its path."""
        path = self.ns_path("horizontalpodautoscalers", group=AUTOSCALING)
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        self.create(
            path,
            {
                "metadata": {"name": name},
                "spec": {"scaleTargetRef": target, **spec, "maxReplicas": max_replicas},
            },
        )
        return f"{path}/{name}"

    def claim(self, name: str, size: str, *, expandable: bool = True, bound: bool = True) -> str:
        """A PVC of a StorageClass of its own (``<namespace>-grow`` or ``-fixed``); returns the class."""
        storage_class = f"{self.namespace}-{'grow' if expandable else 'fixed'}"
        if not self.exists(f"/apis/storage.k8s.io/v1/storageclasses/{storage_class}"):
            self.create(
                "/apis/storage.k8s.io/v1/storageclasses",
                {
                    "metadata": {"name": storage_class},
                    "provisioner": "example.com/none",
                    "allowVolumeExpansion": expandable,
                },
            )
            self.cluster_objects.append(f"/apis/storage.k8s.io/v1/storageclasses/{storage_class}")
        self.create(
            self.ns_path("persistentvolumeclaims"),
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage_class,
                    "resources": {"requests": {"storage": size}},
                },
            },
        )
        if bound:
            self.bind_claim(name)
        return storage_class

    def bind_claim(self, name: str) -> None:
        """What the PV controller would report once a volume is bound (no provisioner runs)."""
        self.patch(self.ns_path("persistentvolumeclaims", name) + "/status", {"status": {"phase": "Bound"}})

    def requested_storage(self, claim: str) -> str:
        found: str = self.get(self.ns_path("persistentvolumeclaims", claim))["spec"]["resources"]["requests"][
            "storage"
        ]
        return found

    def policy_version(self) -> str:
        """v1 or v1beta1: the policy version that serves PodDisruptionBudgets, by discovery."""
        try:
            served = self.request("GET", "/apis/policy/v1")["resources"]
        except RequestFailed as exc:
            if exc.status != 404:
                raise
            served = []
        return "v1" if any(r["name"] == "poddisruptionbudgets" for r in served) else "v1beta1"

    def pdb(self, app: str, min_available: int, until: tuple[str, int]) -> str:
        """A PodDisruptionBudget named ``app`` over the pods ``app=<app>``; returns its path.

        It is returned once the disruption controller has written ``status[until[0]] == until[1]``
        (a PDB without status refuses every eviction).
        """
        path = f"/apis/policy/{self.policy_version()}/namespaces/{self.namespace}/poddisruptionbudgets"
        spec = {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}
        self.create(path, {"metadata": {"name": app}, "spec": spec})
        key, value = until
        self.wait_for(
            f"PDB {app} {key}={value}",
            lambda: (self.get(f"{path}/{app}").get("status") or {}).get(key) == value,
        )
        return f"{path}/{app}"

    def guarded_pod(self, name: str) -> str:
        """A running pod that a PDB forbids evicting (minAvailable 1); returns the PDB's path."""
        self.pod(name, labels={"app": name})
        self.bind(name, "node-x")
        self.make_ready(self.get(self.ns_path("pods", name)))
        return self.pdb(name, min_available=1, until=("currentHealthy", 1))

    def node(self, name: str, **labels: str) -> Obj:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        made = self.create(f"{CORE}/nodes", body)
        self.cluster_objects.append(f"{CORE}/nodes/{name}")
        return made

    def pods(self, selector: str = "") -> list[Obj]:
        query = {"labelSelector": selector} if selector else {}
        items: list[Obj] = self.request("GET", self.ns_path("pods"), **query)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def bind(self, pod: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.create(self.ns_path("pods", pod) + "/binding", body)

    def make_ready(self, pod: Obj) -> None:
        """What a kubelet would report for a started, ready pod (no kubelet runs on either server)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        containers = pod["spec"]["containers"]
        status = {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }
        self.patch(self.ns_path("pods", pod["metadata"]["name"]) + "/status", {"status": status})

    def ready_all(self, selector: str = "") -> int:
        """Mark every pending pod matching ``selector`` ready; returns how many were changed."""
        changed = 0
        for pod in self.pods(selector):
            if (pod.get("status") or {}).get("phase") != "Running":
                with contextlib.suppress(RequestFailed):
                    self.make_ready(pod)
                    changed += 1
        return changed

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


def kube_in_namespace(cluster: Any, hint: str) -> Iterator[Kube]:
    """An admin :class:`Kube` on ``cluster`` with a fresh namespace, all cleaned up afterwards."""
    api = cluster.api_client()
    helper = Kube(api, cluster)
    try:
        helper.namespace = helper.create_namespace(hint)
        yield helper
    finally:
        helper.cleanup()
        api.close()


class RequestFailed(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Runner:
    """Run an action of the catalogue the way the daemon's runner calls it."""

    def __init__(self, adapter: KubernetesAdapter, guards: KubeGuards | None = None) -> None:
        self.adapter = adapter
        self.guards = guards or KubeGuards()

    def context(
        self, *, dry_run: bool = False, step: str = "step", execution: str | None = None
    ) -> ActionContext:
        return ActionContext(
            execution_id=execution or f"exec-{secrets.token_hex(4)}",
            step=step,
            dry_run=dry_run,
            services={"kubernetes": self.adapter, "kubernetes_guards": self.guards},
        )

    async def __call__(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        dry_run: bool = False,
        ctx: ActionContext | None = None,
    ) -> Mapping[str, Any]:
        spec = get_action(f"kubernetes.{action}")
        assert spec is not None, action
        out = await spec.run(ctx or self.context(dry_run=dry_run), params)
        # every output must match what the action declares: later steps and lint rely on it
        jsonschema.validate(dict(out), spec.output)
        return out

    async def check(self, action: str, params: Mapping[str, Any], ctx: ActionContext) -> Effect:
        return await check_effect(f"kubernetes.{action}", ctx, params)


Hook = Callable[[str, str], None]


@dataclass
class Interposed:
    """The real adapter, with ``before(method, path)`` run first on each request's way to the server.

    A test uses it to place a race exactly (another writer replaces the pod between this action's
    read and its delete) or to stop an action part way, as a crash would; the requests themselves
    still go to the real or fake API server unchanged.
    """

    inner: KubernetesAdapter
    before: Hook

    def client(self, cluster: str | None) -> _InterposedClient:
        return _InterposedClient(self.inner.client(cluster), self.before)


@dataclass
class _InterposedClient:
    inner: KubeClient
    before: Hook

    @property
    def cluster(self) -> str:
        return self.inner.cluster

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.before(method, path)
        return await self.inner.request(method, path, **kwargs)

    async def read_text(self, path: str, **kwargs: Any) -> str:
        return await self.inner.read_text(path, **kwargs)

    async def resource_path(self, group: str, versions: tuple[str, ...], resource: str) -> tuple[str, str]:
        return await self.inner.resource_path(group, versions, resource)

    async def eviction_version(self) -> str:
        return await self.inner.eviction_version()


def interposed(run: Runner, before: Hook) -> Runner:
    """A :class:`Runner` whose actions reach the cluster through :class:`Interposed`."""
    return Runner(Interposed(run.adapter, before), run.guards)  # type: ignore[arg-type]


class Crash(Exception):
    """Raised by a hook to stop an action at that request, as if the daemon died there."""
