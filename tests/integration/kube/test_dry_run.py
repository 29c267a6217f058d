"""Every mutating action under dry-run: the server validates the change and stores nothing.

For each action the objects it would touch are snapshotted before and after the dry run: uid,
labels, annotations, spec and deletion mark (not status or resourceVersion, which the real server's
controllers keep updating); any write, even a stamp annotation, fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kurative.actions.registry import all_actions
from tests.integration.kube.helpers import BATCH_V1, CORE, Kube, Runner

pytestmark = pytest.mark.kube

Setup = Callable[[Kube], tuple[dict[str, Any], list[str]]]


def _deployment(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    kube.deployment("web", replicas=1)
    path = kube.wait_revision("web")
    return {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}, [path]


def _two_revisions(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    _params, paths = _deployment(kube)
    kube.patch(paths[0], {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    kube.wait_revision("web", "2")
    return {"namespace": kube.namespace, "name": "web"}, paths


def _pod(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    kube.pod("web")
    return {"namespace": kube.namespace, "pod": "web"}, [kube.ns_path("pods", "web")]


def _node(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    name = f"{kube.namespace}-dry"
    kube.node(name)
    return {"node": name}, [f"{CORE}/nodes/{name}"]


def _hpa(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    path = kube.hpa("web", 3)
    return {"namespace": kube.namespace, "name": "web", "max_replicas": 6}, [path]


def _job(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    path = f"{BATCH_V1}/namespaces/{kube.namespace}/jobs"
    kube.create(
        path,
        {
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}
                }
            },
        },
    )
    return {"namespace": kube.namespace, "name": "once"}, [f"{path}/once"]


def _cronjob(kube: Kube, suspend: bool = False) -> tuple[dict[str, Any], list[str]]:
    cron = kube.cronjob("nightly", suspend=suspend)
    return {"namespace": kube.namespace, "name": "nightly"}, [
        cron,
        f"{BATCH_V1}/namespaces/{kube.namespace}/jobs",
    ]


def _pvc(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    kube.claim("data", "1Gi")
    return {"namespace": kube.namespace, "name": "data", "size": "5Gi"}, [
        kube.ns_path("persistentvolumeclaims", "data")
    ]


def _failed_pod(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    kube.pod("dead")
    kube.patch(kube.ns_path("pods", "dead") + "/status", {"status": {"phase": "Failed"}})
    return {"namespace": kube.namespace}, [kube.ns_path("pods", "dead")]


def _with(setup: Setup, **extra: Any) -> Setup:
    def made(kube: Kube) -> tuple[dict[str, Any], list[str]]:
        params, paths = setup(kube)
        return {**params, **extra}, paths

    return made


def _tainted(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    params, paths = _node(kube)
    kube.patch(paths[0], {"spec": {"taints": [{"key": "not-ready-yet", "effect": "NoSchedule"}]}})
    return {**params, "key": "not-ready-yet"}, paths


def _cordoned(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    params, paths = _node(kube)
    kube.patch(paths[0], {"spec": {"unschedulable": True}})
    return params, paths


def _drained(kube: Kube) -> tuple[dict[str, Any], list[str]]:
    params, paths = _node(kube)
    _deployment(kube)
    pod = kube.wait_for("pod", lambda: kube.pods("app=web"))[0]
    kube.bind(pod["metadata"]["name"], params["node"])
    return {**params, "timeout": "10s"}, [*paths, kube.ns_path("pods", pod["metadata"]["name"])]


MUTATING: dict[str, Setup] = {
    "delete_pod": _pod,
    "evict_pod": _pod,
    "cleanup_failed_pods": _failed_pod,
    "scale": _with(_deployment, replicas=3),
    "rollout_restart": _deployment,
    "rollback_deployment": _two_revisions,
    "set_resources": _with(_deployment, requests={"cpu": "100m"}),
    "patch_hpa": _hpa,
    "cordon": _node,
    "uncordon": _cordoned,
    "drain": _drained,
    "taint": _with(_node, key="kurative.io/x"),
    "untaint": _tainted,
    "suspend_cronjob": _cronjob,
    "resume_cronjob": lambda kube: _cronjob(kube, suspend=True),
    "trigger_cronjob": _cronjob,
    "delete_job": _job,
    "expand_pvc": _pvc,
    "quarantine_pod": _with(_pod, detach=True),
    "label": lambda kube: (
        {"namespace": kube.namespace, "kind": "Pod", "name": "web", "labels": {"a": "b"}},
        _pod(kube)[1],
    ),
    "annotate": lambda kube: (
        {"namespace": kube.namespace, "kind": "Pod", "name": "web", "annotations": {"a": "b"}},
        _pod(kube)[1],
    ),
}


def _essence(obj: dict[str, Any]) -> tuple[Any, ...]:
    meta = obj["metadata"]
    return (
        meta["uid"],
        meta.get("labels"),
        meta.get("annotations"),
        meta.get("deletionTimestamp"),
        obj.get("spec"),
        (obj.get("status") or {}).get("phase"),
    )


def _snapshot(kube: Kube, paths: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for path in paths:
        found = kube.request("GET", path)
        if "items" in found:
            seen[path] = sorted((_essence(i) for i in found["items"]), key=repr)
        else:
            seen[path] = _essence(found)
    policies = kube.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{kube.namespace}/networkpolicies")
    seen["networkpolicies"] = [p["metadata"]["name"] for p in policies["items"]]
    return seen


def test_every_mutating_kubernetes_action_is_covered() -> None:
    reads = {"get", "list", "pod_logs", "collect_diagnostics", "resolve_owner", "wait_rollout"}
    actions = {s.name.removeprefix("kubernetes.") for s in all_actions() if s.name.startswith("kubernetes.")}
    assert actions - reads == set(MUTATING)


@pytest.mark.parametrize("action", sorted(MUTATING))
async def test_dry_run_stores_nothing(action: str, kube: Kube, run: Runner) -> None:
    params, paths = MUTATING[action](kube)
    before = _snapshot(kube, paths)
    await run(action, params, dry_run=True)
    assert _snapshot(kube, paths) == before
