"""API semantics the actions rely on, asserted identically on the fake and the real server.

These keep the fake honest: patches (strategic merge with merge keys and directives, merge patch,
JSON patch), resourceVersion and generation bookkeeping, dry-run, selectors and the scale
subresource must behave as kube-apiserver behaves, or these tests fail on one of the two.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.kube.helpers import APPS, Kube, RequestFailed

pytestmark = pytest.mark.kube
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _containers(obj: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["image"]) for c in obj["spec"]["template"]["spec"]["containers"]]


def test_strategic_merge_uses_merge_keys_and_directives(kube: Kube) -> None:
    kube.deployment("web", replicas=0)
    path = kube.ns_path("deployments", "web", group=APPS)
    sidecar = {"name": "proxy", "image": "envoy:1"}
    out = kube.patch(path, {"spec": {"template": {"spec": {"containers": [sidecar]}}}}, SMP)
    # merged by name; without $setElementOrder the patch's items come first, then the others
    assert _containers(out) == [("proxy", "envoy:1"), ("app", "nginx:1.25")]
    out = kube.patch(
        path, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}, SMP
    )
    assert _containers(out) == [("proxy", "envoy:1"), ("app", "nginx:2")]  # known items keep their place
    out = kube.patch(
        path, {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "$patch": "delete"}]}}}}, SMP
    )
    assert _containers(out) == [("app", "nginx:2")]
    out = kube.patch(path, {"metadata": {"finalizers": ["a.example/x"]}}, SMP)
    out = kube.patch(path, {"metadata": {"finalizers": ["b.example/y"]}}, SMP)
    assert out["metadata"]["finalizers"] == ["b.example/y", "a.example/x"]  # merge strategy: a union
    out = kube.patch(path, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b.example/y"]}}, SMP)
    assert out["metadata"]["finalizers"] == ["a.example/x"]
    out = kube.patch(path, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, SMP)
    assert out["spec"]["strategy"] == {"type": "Recreate"}  # retainKeys dropped rollingUpdate
    out = kube.patch(path, {"metadata": {"finalizers": None}}, MERGE)
    assert "finalizers" not in out["metadata"]
    # a merge patch replaces lists wholesale
    out = kube.patch(
        path, {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}}, MERGE
    )
    assert _containers(out) == [("only", "x:1")]


def test_json_patch_and_its_failed_test_operation(kube: Kube) -> None:
    kube.deployment("web", replicas=1)
    path = kube.ns_path("deployments", "web", group=APPS)
    out = kube.patch(
        path,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
        ],
        JSON_PATCH,
    )
    assert out["spec"]["replicas"] == 0
    assert out["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(RequestFailed) as caught:
        kube.patch(path, [{"op": "test", "path": "/spec/replicas", "value": 5}], JSON_PATCH)
    assert caught.value.status == 422
    with pytest.raises(RequestFailed) as stale:
        kube.patch(
            path,
            [
                {"op": "replace", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "replace", "path": "/spec/replicas", "value": 2},
            ],
            JSON_PATCH,
        )
    assert stale.value.status == 409


def test_resource_version_generation_and_no_op_writes(kube: Kube) -> None:
    made = kube.pod("web")
    kube.deployment("web", replicas=0)
    path = kube.ns_path("deployments", "web", group=APPS)
    before = kube.wait_for(
        "observed", lambda: (d := kube.get(path)).get("status", {}).get("observedGeneration") == 1 and d
    )
    labelled = kube.patch(path, {"metadata": {"labels": {"x": "1"}}}, MERGE)
    assert labelled["metadata"]["generation"] == 1  # metadata changes do not bump the generation
    assert int(labelled["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    same = kube.patch(path, {"metadata": {"labels": {"x": "1"}}}, MERGE)
    assert same["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]  # no-op: no write
    scaled = kube.patch(path, {"spec": {"replicas": 0, "paused": True}}, MERGE)
    assert scaled["metadata"]["generation"] == 2
    assert made["metadata"]["uid"] != scaled["metadata"]["uid"]


def test_dry_run_create_patch_delete_store_nothing(kube: Kube) -> None:
    dry = kube.request(
        "POST", kube.ns_path("configmaps"), {"metadata": {"name": "cfg"}, "data": {"a": "1"}}, dryRun="All"
    )
    assert dry["metadata"]["name"] == "cfg"
    assert dry["metadata"]["uid"]
    assert not kube.exists(kube.ns_path("configmaps", "cfg"))
    kube.create(kube.ns_path("configmaps"), {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    patched = kube.request(
        "PATCH", kube.ns_path("configmaps", "cfg"), {"data": {"a": "2"}}, MERGE, dryRun="All"
    )
    assert patched["data"] == {"a": "2"}
    assert kube.get(kube.ns_path("configmaps", "cfg"))["data"] == {"a": "1"}
    kube.request("DELETE", kube.ns_path("configmaps", "cfg"), dryRun="All")
    assert kube.exists(kube.ns_path("configmaps", "cfg"))


def test_selectors(kube: Kube) -> None:
    kube.pod("a", labels={"app": "web", "tier": "front"})
    kube.pod("b", labels={"app": "web", "tier": "back"})
    kube.pod("c", labels={"app": "db"})
    kube.patch(kube.ns_path("pods", "b") + "/status", {"status": {"phase": "Failed"}})

    def names(**query: str) -> list[str]:
        return [p["metadata"]["name"] for p in kube.request("GET", kube.ns_path("pods"), **query)["items"]]

    assert names(labelSelector="app=web") == ["a", "b"]
    assert names(labelSelector="app in (web,db),tier!=back") == ["a", "c"]
    assert names(labelSelector="!tier") == ["c"]
    assert names(labelSelector="tier,app notin (db)") == ["a", "b"]
    assert names(fieldSelector="status.phase=Failed") == ["b"]
    assert names(fieldSelector="metadata.name!=a,status.phase!=Failed") == ["c"]
    with pytest.raises(RequestFailed) as caught:
        names(fieldSelector="spec.containers=x")
    assert caught.value.status == 400


def test_scale_subresource(kube: Kube) -> None:
    kube.deployment("web", replicas=1)
    scale_path = kube.ns_path("deployments", "web", group=APPS) + "/scale"
    scale = kube.get(scale_path)
    assert (scale["kind"], scale["apiVersion"], scale["spec"]["replicas"]) == ("Scale", "autoscaling/v1", 1)
    scale["spec"]["replicas"] = 3
    del scale["metadata"]["resourceVersion"]  # unconditional: the controller writes status meanwhile
    kube.request("PUT", scale_path, scale)
    assert kube.get(kube.ns_path("deployments", "web", group=APPS))["spec"]["replicas"] == 3
    kube.patch(scale_path, {"spec": {"replicas": 2}}, MERGE)
    assert kube.get(scale_path)["spec"]["replicas"] == 2


def test_status_is_only_written_through_the_status_subresource(kube: Kube) -> None:
    kube.pod("web")
    path = kube.ns_path("pods", "web")
    kube.patch(path, {"status": {"phase": "Failed"}}, MERGE)
    assert kube.get(path)["status"]["phase"] == "Pending"
    kube.patch(path + "/status", {"status": {"phase": "Failed"}}, MERGE)
    assert kube.get(path)["status"]["phase"] == "Failed"


def test_invalid_objects_are_refused(kube: Kube) -> None:
    with pytest.raises(RequestFailed) as unknown_field:
        kube.create(kube.ns_path("configmaps"), {"metadata": {"name": "Bad_Name"}, "data": {}})
    assert unknown_field.value.status == 422
    body = json.loads(unknown_field.value.body)
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(RequestFailed) as missing_ns:
        kube.request("POST", "/api/v1/namespaces/no-such-namespace/configmaps", {"metadata": {"name": "x"}})
    assert missing_ns.value.status == 404
    assert json.loads(missing_ns.value.body)["message"] == 'namespaces "no-such-namespace" not found'


def test_pod_deletion_waits_for_a_kubelet_only_when_bound(kube: Kube) -> None:
    kube.pod("loose")
    kube.request("DELETE", kube.ns_path("pods", "loose"))
    assert not kube.exists(kube.ns_path("pods", "loose"))  # never scheduled: gone at once

    node = f"{kube.namespace}-n"
    kube.node(node)
    kube.pod("bound")
    kube.bind("bound", node)
    kube.ready_all("app=bound")
    kube.request("DELETE", kube.ns_path("pods", "bound"))
    terminating = kube.get(kube.ns_path("pods", "bound"))  # waits for a kubelet that never comes
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    kube.request("DELETE", kube.ns_path("pods", "bound"), gracePeriodSeconds=0)
    assert not kube.exists(kube.ns_path("pods", "bound"))

    kube.pod("again")
    kube.bind("again", node)
    with pytest.raises(RequestFailed) as taken:
        kube.bind("again", node)
    assert taken.value.status == 409


@pytest.mark.parametrize(
    "metadata",
    [
        {"labels": {"app": "not ok!"}},
        {"labels": {"-bad-key": "x"}},
        {"labels": {"Example.COM/x": "y"}},
        {"annotations": {"bad key": "y"}},
    ],
)
def test_invalid_labels_and_annotations_are_refused(kube: Kube, metadata: dict) -> None:
    with pytest.raises(RequestFailed) as caught:
        kube.create(kube.ns_path("configmaps"), {"metadata": {"name": "cfg", **metadata}})
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"].startswith("metadata.")


def test_annotation_keys_are_checked_lower_cased(kube: Kube) -> None:
    made = kube.create(
        kube.ns_path("configmaps"), {"metadata": {"name": "cfg", "annotations": {"Example.COM/x": "y"}}}
    )
    assert made["metadata"]["annotations"] == {"Example.COM/x": "y"}
