"""Node actions, with a multi-node drain honouring a PodDisruptionBudget, over both servers.

Neither server runs a scheduler or kubelets: pods are placed on Node objects through the
``pods/binding`` subresource and reported running by writing their status, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kurative.actions.kubernetes import KubeGuards
from kurative.errors import GuardRefused, ObjectNotFound, PermanentActionError, TemporaryActionError
from tests.integration.kube.helpers import CORE, Kube, Runner, interposed

pytestmark = pytest.mark.kube


async def test_cordon_uncordon_taint_untaint(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-n1"
    kube.node(node)
    assert await run("cordon", {"node": node}) == {"node": node, "changed": True}
    assert kube.get(f"{CORE}/nodes/{node}")["spec"]["unschedulable"] is True
    assert await run("cordon", {"node": node}) == {"node": node, "changed": False}
    assert (await run("uncordon", {"node": node}, dry_run=True))["changed"] is True
    assert kube.get(f"{CORE}/nodes/{node}")["spec"]["unschedulable"] is True
    assert await run("uncordon", {"node": node}) == {"node": node, "changed": True}
    assert not kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")

    out = await run(
        "taint", {"node": node, "key": "kurative.io/broken", "value": "disk", "effect": "NoSchedule"}
    )
    assert out["changed"] is True
    assert {"key": "kurative.io/broken", "value": "disk", "effect": "NoSchedule"} in out["taints"]
    again = await run(
        "taint", {"node": node, "key": "kurative.io/broken", "value": "disk", "effect": "NoSchedule"}
    )
    assert again["changed"] is False
    await run("taint", {"node": node, "key": "other", "effect": "NoExecute"})
    out = await run("untaint", {"node": node, "key": "kurative.io/broken"})
    # the API server itself taints a node that no kubelet reported ready (TaintNodesByCondition)
    assert [t["key"] for t in out["taints"]] == ["node.kubernetes.io/not-ready", "other"]
    assert [t["key"] for t in kube.get(f"{CORE}/nodes/{node}")["spec"]["taints"]] == [
        "node.kubernetes.io/not-ready",
        "other",
    ]
    assert (await run("untaint", {"node": node, "key": "absent"}))["changed"] is False

    with pytest.raises(ObjectNotFound, match='nodes "no-such-node" not found'):
        await run("cordon", {"node": "no-such-node"})


async def test_drain_honours_pdb_skips_daemonset_pods_and_reports_what_is_left(
    kube: Kube, run: Runner
) -> None:
    n1, n2 = f"{kube.namespace}-a", f"{kube.namespace}-b"
    kube.node(n1, pool=kube.namespace)
    kube.node(n2, pool=kube.namespace)
    kube.deployment("web", replicas=3)
    web = kube.wait_for("3 web pods", lambda: (p := kube.pods("app=web")) and len(p) == 3 and p)
    for pod, node in zip(web, (n1, n1, n2), strict=True):
        kube.bind(pod["metadata"]["name"], node)
    kube.ready_all("app=web")
    kube.pod("bare", labels={"app": "bare"})
    kube.bind("bare", n1)
    kube.ready_all("app=bare")
    kube.daemonset("agent", "agent")
    agents = kube.wait_for("2 agent pods", lambda: (p := kube.pods("app=agent")) and len(p) == 2 and p)
    for pod in agents:
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        kube.bind(pod["metadata"]["name"], terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0])
    kube.ready_all("app=agent")
    pdb = kube.pdb("web", min_available=2, until=("disruptionsAllowed", 1))

    # One web pod may go, the second is refused by the PDB (429) until the timeout; the bare pod stays.
    with pytest.raises(TemporaryActionError, match=r"drain of node .* incomplete: evicted 1 pod") as caught:
        await run("drain", {"node": n1, "timeout": "3s", "grace_period": 0})
    message = str(caught.value)
    assert "bare (not managed by a controller" in message
    assert "(eviction not finished in time)" in message
    assert kube.get(f"{CORE}/nodes/{n1}")["spec"]["unschedulable"] is True
    on_n1 = [p for p in kube.pods("app=web") if p["spec"].get("nodeName") == n1]
    assert len(on_n1) == 1

    # The replacement pod starts on n2, so the budget allows one more: a forced drain completes.
    fresh = kube.wait_for(
        "replacement", lambda: [p for p in kube.pods("app=web") if not p["spec"].get("nodeName")]
    )
    kube.bind(fresh[0]["metadata"]["name"], n2)
    kube.ready_all("app=web")
    kube.wait_for(
        "PDB allows 1 again",
        lambda: (kube.get(pdb).get("status") or {}).get("disruptionsAllowed") == 1,
    )
    out = await run("drain", {"node": n1, "timeout": "20s", "grace_period": 0, "force": True})
    assert out["evicted"] == sorted(
        [f"{kube.namespace}/bare", f"{kube.namespace}/{on_n1[0]['metadata']['name']}"]
    )
    assert out["skipped"] == [
        f"{kube.namespace}/{p['metadata']['name']}"
        for p in agents
        if p["spec"].get("nodeName", "") == n1 or _affinity(p) == n1
    ]
    assert [p["metadata"]["name"] for p in kube.pods() if p["spec"].get("nodeName") == n1] == [
        p["metadata"]["name"] for p in agents if _affinity(p) == n1
    ]


def _affinity(pod: dict) -> str:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return str(terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0])


async def test_drain_dry_run_changes_nothing(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-d"
    kube.node(node)
    kube.deployment("web", replicas=1)
    pod = kube.wait_for("pod", lambda: kube.pods("app=web"))[0]
    kube.bind(pod["metadata"]["name"], node)
    out = await run("drain", {"node": node, "timeout": "10s"}, dry_run=True)
    assert out["evicted"] == [f"{kube.namespace}/{pod['metadata']['name']}"]
    assert not kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")
    assert [p["metadata"]["uid"] for p in kube.pods("app=web")] == [pod["metadata"]["uid"]]


async def test_drain_leaves_mirror_pods_and_keeps_emptydir_pods_unless_told(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-m"
    kube.node(node)
    kube.create(
        kube.ns_path("pods"),
        {
            "metadata": {"name": "static-etcd", "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"nodeName": node, "containers": [{"name": "etcd", "image": "etcd"}]},
        },
    )
    kube.deployment("cache", replicas=1, volumes=[{"name": "scratch", "emptyDir": {}}])
    pod = kube.wait_for("cache pod", lambda: kube.pods("app=cache"))[0]
    kube.bind(pod["metadata"]["name"], node)
    name = f"{kube.namespace}/{pod['metadata']['name']}"

    with pytest.raises(TemporaryActionError, match=r"uses emptyDir data \(set delete_emptydir_data"):
        await run("drain", {"node": node, "timeout": "5s", "grace_period": 0})
    out = await run(
        "drain", {"node": node, "timeout": "20s", "grace_period": 0, "delete_emptydir_data": True}
    )
    assert out == {"node": node, "evicted": [name], "skipped": [f"{kube.namespace}/static-etcd"]}
    assert kube.exists(kube.ns_path("pods", "static-etcd"))


async def test_drain_does_not_evict_from_protected_namespaces(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-p"
    kube.node(node)
    name = f"{kube.namespace}-dns"
    kube.request(
        "POST",
        f"{CORE}/namespaces/kube-system/pods",
        {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "dns", "image": "coredns"}]},
        },
    )
    kube.cluster_objects.append(f"{CORE}/namespaces/kube-system/pods/{name}")
    kube.deployment("web", replicas=1)
    web = kube.wait_for("web pod", lambda: kube.pods("app=web"))[0]
    kube.bind(web["metadata"]["name"], node)
    # No retry can make it possible: a permanent refusal, before anything is cordoned or evicted.
    with pytest.raises(GuardRefused, match=rf"pod\(s\) kube-system/{name} are in a protected namespace"):
        await run("drain", {"node": node, "timeout": "2s", "force": True})
    assert kube.exists(f"{CORE}/namespaces/kube-system/pods/{name}")
    assert [p["metadata"]["uid"] for p in kube.pods("app=web")] == [web["metadata"]["uid"]]
    assert not kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")

    # a protected pod already on its way out does not refuse the drain: it is only waited for
    kube.request("DELETE", f"{CORE}/namespaces/kube-system/pods/{name}", gracePeriodSeconds=30)
    assert kube.get(f"{CORE}/namespaces/kube-system/pods/{name}")["metadata"].get("deletionTimestamp")
    with pytest.raises(TemporaryActionError, match=rf"kube-system/{name} \(eviction not finished in time"):
        await run("drain", {"node": node, "timeout": "1s", "force": True})


async def test_drain_does_not_evict_from_namespaces_outside_the_allow_list(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-a"
    kube.node(node)
    kube.pod("web")
    kube.bind("web", node)
    elsewhere = Runner(run.adapter, KubeGuards(allowed_namespaces=("shop",)))
    with pytest.raises(GuardRefused, match=rf"pod\(s\) {kube.namespace}/web are in a protected namespace"):
        await elsewhere("drain", {"node": node, "timeout": "2s", "force": True})
    denied = Runner(run.adapter, KubeGuards(denied_namespaces=(kube.namespace,)))
    with pytest.raises(GuardRefused, match=rf"pod\(s\) {kube.namespace}/web are in a protected namespace"):
        await denied("drain", {"node": node, "timeout": "2s", "force": True})
    assert kube.exists(kube.ns_path("pods", "web"))
    assert not kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")


async def test_drain_leaves_finished_pods_of_protected_namespaces_alone(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-f"
    kube.node(node)
    name = f"{kube.namespace}-job"
    path = f"{CORE}/namespaces/kube-system/pods/{name}"
    kube.request(
        "POST",
        f"{CORE}/namespaces/kube-system/pods",
        {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "j", "image": "busybox"}]},
        },
    )
    kube.cluster_objects.append(path)
    kube.request("PUT", path + "/status", {**kube.get(path), "status": {"phase": "Succeeded"}})
    out = await run("drain", {"node": node, "timeout": "10s", "grace_period": 0})
    assert out["evicted"] == []
    assert kube.exists(path)  # a finished pod blocks nothing, and kube-system is never touched


async def test_drain_run_again_waits_for_the_pods_still_terminating(kube: Kube, run: Runner) -> None:
    """As `kubectl drain`: done when each evicted pod is gone, not when its deletion was asked."""
    node = f"{kube.namespace}-t"
    kube.node(node)
    kube.deployment("web", replicas=1, terminationGracePeriodSeconds=30)
    pod = kube.wait_for("web pod", lambda: kube.pods("app=web"))[0]
    name = pod["metadata"]["name"]
    kube.bind(name, node)
    kube.ready_all("app=web")
    path = kube.ns_path("pods", name)
    with pytest.raises(TemporaryActionError, match=rf"{name} \(eviction not finished in time\)"):
        await run("drain", {"node": node, "timeout": "1s"})
    assert kube.get(path)["metadata"].get("deletionTimestamp")  # no kubelet ends it

    looked: list[str] = []

    def kubelet_finishes_on_second_look(method: str, where: str) -> None:
        if method == "GET" and where == path:
            looked.append(where)
            if len(looked) == 2:
                kube.request("DELETE", path, gracePeriodSeconds=0)

    out = await interposed(run, kubelet_finishes_on_second_look)("drain", {"node": node, "timeout": "20s"})
    assert out["evicted"] == [f"{kube.namespace}/{name}"]
    assert len(looked) == 2
    assert not kube.exists(path)
    assert (await run("drain", {"node": node, "timeout": "5s"}))["evicted"] == []


async def test_a_failed_drain_stops_its_other_evictions(kube: Kube, run: Runner) -> None:
    """One eviction fails for good while another waits on its budget: the step ends both."""
    node = f"{kube.namespace}-x"
    kube.node(node)
    for name in ("a", "b"):
        kube.pod(name, labels={"app": name})
        kube.bind(name, node)
        kube.make_ready(kube.get(kube.ns_path("pods", name)))
    kube.pdb("b", min_available=1, until=("currentHealthy", 1))  # every eviction of b answers 429
    evictions_of_b: list[float] = []

    def refuse_a(method: str, path: str) -> None:
        if method == "POST" and path.endswith("/pods/a/eviction"):
            raise PermanentActionError("eviction of a refused")
        if method == "POST" and path.endswith("/pods/b/eviction"):
            evictions_of_b.append(time.monotonic())

    with pytest.raises(PermanentActionError, match="eviction of a refused"):
        await interposed(run, refuse_a)("drain", {"node": node, "timeout": "60s", "force": True})
    failed = time.monotonic()
    await asyncio.sleep(2.5)  # b's retries come every 1 s, then 2 s
    assert [t for t in evictions_of_b if t > failed] == []
    assert kube.exists(kube.ns_path("pods", "b"))
