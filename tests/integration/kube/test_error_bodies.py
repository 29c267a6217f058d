"""The fake answers failing requests with the very Status bodies the real kube-apiserver sends.

Each case below makes one request that fails (404, 409, 422, 429, 403) and compares the Status body,
normalised, with a golden file under ``golden/`` recorded from the real kube-apiserver v1.20.2. The
fake is checked on every run; the real server is checked whenever it is available, so a golden file
that no longer matches the real server fails too.

Normalising drops what changes from run to run: the test namespace becomes ``NAMESPACE``, and uids,
resourceVersions, timestamps and generated names are removed (a uid quoted in a message reads ``UID``).

To record the golden files again from the real server (after adding a case or moving to another
Kubernetes version), run::

    KURATIVE_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/integration/kube/test_error_bodies.py -k real

and review the diff of ``tests/integration/kube/golden/`` before committing it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kube.helpers import APPS, CORE, Kube, Obj, RequestFailed

pytestmark = pytest.mark.kube

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("KURATIVE_UPDATE_GOLDEN") == "1"
USER = "kurative"  # authenticated, granted nothing
OTHER_UID = "00000000-0000-4000-8000-000000000000"
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VOLATILE = {"uid", "resourceVersion", "creationTimestamp", "generateName", "selfLink"}


def _failure(kube: Kube, method: str, path: str, body: Any = None, content_type: str | None = None) -> Obj:
    with pytest.raises(RequestFailed) as caught:
        kube.request(method, path, body, content_type)
    status: Obj = json.loads(caught.value.body)
    assert status["code"] == caught.value.status
    return status


def _get_missing_pod(kube: Kube) -> Obj:
    return _failure(kube, "GET", kube.ns_path("pods", "ghost"))


def _get_missing_deployment(kube: Kube) -> Obj:
    return _failure(kube, "GET", kube.ns_path("deployments", "ghost", group=APPS))


def _create_existing_configmap(kube: Kube) -> Obj:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    kube.create(kube.ns_path("configmaps"), body)
    return _failure(kube, "POST", kube.ns_path("configmaps"), body)


def _patch_missing_deployment(kube: Kube) -> Obj:
    path = kube.ns_path("deployments", "ghost", group=APPS)
    return _failure(kube, "PATCH", path, {"spec": {"replicas": 2}}, "application/merge-patch+json")


def _evict_missing_pod(kube: Kube) -> Obj:
    eviction = {
        "apiVersion": f"policy/{kube.policy_version()}",
        "kind": "Eviction",
        "metadata": {"name": "ghost", "namespace": kube.namespace},
    }
    return _failure(kube, "POST", kube.ns_path("pods", "ghost") + "/eviction", eviction)


def _delete_with_other_uid(kube: Kube) -> Obj:
    kube.pod("web")
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": OTHER_UID}}
    return _failure(kube, "DELETE", kube.ns_path("pods", "web"), options)


def _stale(kube: Kube) -> tuple[str, Obj]:
    kube.deployment("web", replicas=1)
    path = kube.ns_path("deployments", "web", group=APPS)
    kube.patch(path, {"metadata": {"labels": {"touched": "yes"}}})  # moves the resourceVersion on
    return path, kube.get(path)


def _patch_stale_deployment(kube: Kube) -> Obj:
    path, current = _stale(kube)
    stale = str(int(current["metadata"]["resourceVersion"]) - 1)
    body = {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 2}}
    return _failure(kube, "PATCH", path, body, "application/merge-patch+json")


def _put_stale_deployment(kube: Kube) -> Obj:
    path, current = _stale(kube)
    current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) - 1)
    current["spec"]["replicas"] = 2
    return _failure(kube, "PUT", path, current)


def _patch_invalid_replicas(kube: Kube) -> Obj:
    kube.deployment("web", replicas=1)
    path = kube.ns_path("deployments", "web", group=APPS)
    return _failure(kube, "PATCH", path, {"spec": {"replicas": -1}}, "application/merge-patch+json")


def _create_labelled_configmap(labels: dict[str, str]) -> Callable[[Kube], Obj]:
    def create(kube: Kube) -> Obj:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": labels}}
        return _failure(kube, "POST", kube.ns_path("configmaps"), body)

    return create


def _create_invalid_pod(kube: Kube) -> Obj:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "Bad_Name"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    return _failure(kube, "POST", kube.ns_path("pods"), body)


def _evict_guarded_pod(kube: Kube) -> Obj:
    kube.guarded_pod("guarded")
    eviction = {
        "apiVersion": f"policy/{kube.policy_version()}",
        "kind": "Eviction",
        "metadata": {"name": "guarded", "namespace": kube.namespace},
    }
    return _failure(kube, "POST", kube.ns_path("pods", "guarded") + "/eviction", eviction)


def _as_user(kube: Kube) -> Kube:
    user = Kube(kube.cluster.api_client(USER), kube.cluster)
    user.namespace = kube.namespace
    return user


def _forbidden(kube: Kube, method: str, path: str, body: Any = None) -> Obj:
    user = _as_user(kube)
    try:
        return _failure(user, method, path, body)
    finally:
        user.api.close()


def _forbidden_get_secret(kube: Kube) -> Obj:
    return _forbidden(kube, "GET", kube.ns_path("secrets", "token"))


def _forbidden_list_deployments(kube: Kube) -> Obj:
    return _forbidden(kube, "GET", kube.ns_path("deployments", group=APPS))


def _forbidden_delete_node(kube: Kube) -> Obj:
    return _forbidden(kube, "DELETE", f"{CORE}/nodes/node-x")


def _forbidden_evict_pod(kube: Kube) -> Obj:
    eviction = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "web"}}
    return _forbidden(kube, "POST", kube.ns_path("pods", "web") + "/eviction", eviction)


CASES: dict[str, Callable[[Kube], Obj]] = {
    "404_get_missing_pod": _get_missing_pod,
    "404_get_missing_deployment": _get_missing_deployment,
    "404_patch_missing_deployment": _patch_missing_deployment,
    "404_evict_missing_pod": _evict_missing_pod,
    "409_delete_with_other_uid": _delete_with_other_uid,
    "409_create_existing_configmap": _create_existing_configmap,
    "409_patch_stale_deployment": _patch_stale_deployment,
    "409_put_stale_deployment": _put_stale_deployment,
    "422_patch_invalid_replicas": _patch_invalid_replicas,
    "422_create_invalid_pod": _create_invalid_pod,
    "422_create_invalid_label_value": _create_labelled_configmap({"team": "a b"}),
    "422_create_invalid_label_key": _create_labelled_configmap({"bad key": "x"}),
    "422_create_invalid_label_prefix": _create_labelled_configmap({"Bad_Prefix/team": "x"}),
    "429_evict_guarded_pod": _evict_guarded_pod,
    "403_get_secret": _forbidden_get_secret,
    "403_list_deployments": _forbidden_list_deployments,
    "403_delete_node": _forbidden_delete_node,
    "403_evict_pod": _forbidden_evict_pod,
}


def normalise(value: Any, namespace: str) -> Any:
    """The body without what differs between runs: volatile fields, and the namespace by name."""
    if isinstance(value, dict):
        return {k: normalise(v, namespace) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalise(v, namespace) for v in value]
    if isinstance(value, str):
        return _UID.sub(lambda m: m.group(0) if m.group(0) == OTHER_UID else "UID", value).replace(
            namespace, "NAMESPACE"
        )
    return value


@pytest.mark.parametrize("case", sorted(CASES))
def test_status_body_matches_the_recorded_one(case: str, kube: Kube, server: str) -> None:
    body = normalise(CASES[case](kube), kube.namespace)
    golden = GOLDEN / f"{case}.json"
    if UPDATE and server == "real":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        return
    assert golden.exists(), (
        f"{golden} is missing: record it with KURATIVE_UPDATE_GOLDEN=1 (see the docstring)"
    )
    assert body == json.loads(golden.read_text()), f"{server} server differs from {golden.name}"
