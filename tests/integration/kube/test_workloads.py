"""Workload actions over the fake and the real API server (with kube-controller-manager)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kurative.actions.kubernetes import Effect, KubeGuards
from kurative.actions.kubernetes._common import STAMP_HISTORY
from kurative.errors import GuardRefused, PermanentActionError, TemporaryActionError
from tests.integration.kube.helpers import APPS, REVISION, Kube, Runner
from tests.support.fakekube import FakeCluster
from tests.support.realkube import RealCluster

pytestmark = pytest.mark.kube


@contextlib.asynccontextmanager
async def kubelet(kube: Kube, selector: str) -> AsyncIterator[None]:
    """Stand in for kubelets: keep marking the workload's new pods ready while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.to_thread(kube.ready_all, selector)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def wait_pods(kube: Kube, selector: str, count: int) -> list[dict]:
    def found() -> list[dict] | None:
        pods = kube.pods(selector)
        return pods if len(pods) == count else None

    return kube.wait_for(f"{count} pods {selector}", found)


async def test_resolve_owner_walks_pod_replicaset_deployment(kube: Kube, run: Runner) -> None:
    made = kube.deployment("web", replicas=1)
    pod = wait_pods(kube, "app=web", 1)[0]
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": pod["metadata"]["name"]})
    assert (out["kind"], out["name"], out["api_version"]) == ("Deployment", "web", "apps/v1")
    assert out["uid"] == made["metadata"]["uid"]
    assert [c["kind"] for c in out["chain"]] == ["Pod", "ReplicaSet", "Deployment"]

    kube.pod("bare")
    alone = await run("resolve_owner", {"namespace": kube.namespace, "pod": "bare"})
    assert (alone["kind"], alone["name"], alone["chain"]) == (
        "Pod",
        "bare",
        [{"kind": "Pod", "name": "bare"}],
    )


async def test_scale_absolute_relative_bounds_and_dry_run(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=2)
    path = kube.ns_path("deployments", "web", group=APPS)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}

    dry = await run("scale", {**base, "replicas": 4}, dry_run=True)
    assert dry == {"previous": 2, "replicas": 4, "clamped": False}
    assert kube.get(path)["spec"]["replicas"] == 2

    ctx = run.context()
    assert await run.check("scale", {**base, "replicas": 3}, ctx) is Effect.NOT_DONE
    assert await run("scale", {**base, "replicas": 3}, ctx=ctx) == {
        "previous": 2,
        "replicas": 3,
        "clamped": False,
    }
    assert kube.get(path)["spec"]["replicas"] == 3
    assert await run.check("scale", {**base, "replicas": 3}, ctx) is Effect.DONE

    rel = run.context()
    assert await run("scale", {**base, "delta": 2, "max": 4}, ctx=rel) == {
        "previous": 3,
        "replicas": 4,
        "clamped": True,
    }
    # the same relative step again (a retry) does not add twice
    assert (await run("scale", {**base, "delta": 2, "max": 4}, ctx=rel))["replicas"] == 4
    assert (await run("scale", {**base, "replicas": 0, "min": 1}))["replicas"] == 1
    assert kube.get(path)["spec"]["replicas"] == 1

    with pytest.raises(GuardRefused, match="configured maximum of 100"):
        await run("scale", {**base, "replicas": 500})
    with pytest.raises(PermanentActionError, match="exactly one of replicas or delta"):
        await run("scale", base)
    with pytest.raises(PermanentActionError, match="replicas: 'three' is not of type 'integer'"):
        await run("scale", {**base, "replicas": "three"})
    with pytest.raises(PermanentActionError, match="kind: 'DaemonSet' is not one of"):
        await run("scale", {**base, "kind": "DaemonSet", "replicas": 1})


async def test_scale_up_beyond_resource_quota_is_a_clear_permanent_error(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    wait_pods(kube, "app=web", 1)
    kube.create(
        kube.ns_path("resourcequotas"), {"metadata": {"name": "small"}, "spec": {"hard": {"pods": "3"}}}
    )
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    assert (await run("scale", {**base, "replicas": 3}))["replicas"] == 3
    with pytest.raises(
        PermanentActionError, match=r"exceed ResourceQuota small \(pods: 3 used \+ 2 needed > 3"
    ) as caught:
        await run("scale", {**base, "replicas": 5})
    assert not caught.value.temporary
    assert kube.get(kube.ns_path("deployments", "web", group=APPS))["spec"]["replicas"] == 3


async def test_scale_reads_every_quantity_form_of_the_pods_a_quota_counts(kube: Kube, run: Runner) -> None:
    """129e6 is the Kubernetes docs' own memory example; the API server keeps that exponent form."""
    kube.create(kube.ns_path("resourcequotas"), {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "20"}}})
    resources = {"requests": {"memory": "129e6", "cpu": "100n"}, "limits": {"memory": "5e8"}}
    kube.pod("other", containers=[{"name": "a", "image": "busybox", "resources": resources}])
    kube.deployment("web", replicas=1)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    assert (await run("scale", {**base, "replicas": 2}))["replicas"] == 2


async def test_scale_missing_workload_is_not_found(kube: Kube, run: Runner) -> None:
    from kurative.errors import ObjectNotFound

    with pytest.raises(ObjectNotFound, match=r'deployments.apps "ghost" not found'):
        await run(
            "scale", {"namespace": kube.namespace, "kind": "Deployment", "name": "ghost", "replicas": 1}
        )


async def test_rollout_restart_then_wait_rollout_completes(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=2)
    wait_pods(kube, "app=web", 2)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    async with kubelet(kube, "app=web"):
        first = await run("wait_rollout", {**base, "timeout": "60s", "interval": "200ms"})
    assert first["complete"] is True

    ctx = run.context()
    out = await run("rollout_restart", base, ctx=ctx)
    assert out["generation"] == 2
    dep = kube.get(kube.ns_path("deployments", "web", group=APPS))
    assert (
        dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        == out["restarted_at"]
    )
    assert await run.check("rollout_restart", base, ctx) is Effect.DONE

    async with kubelet(kube, "app=web"):
        done = await run("wait_rollout", {**base, "timeout": "90s", "interval": "200ms"})
    assert done["complete"] is True
    assert done["updated"] == 2
    assert done["available"] == 2


async def test_rollout_restart_run_again_by_the_same_step_restarts_once(kube: Kube, run: Runner) -> None:
    # As on a journal restored from a backup taken before the step's record: the step runs again
    # from the start, and its stamp on the Deployment says it took effect already.
    kube.deployment("web", replicas=1)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    ctx = run.context(step="restart")
    first = await run("rollout_restart", base, ctx=ctx)
    await asyncio.sleep(1.1)  # restartedAt has a resolution of one second: a repeat would differ
    again = await run("rollout_restart", base, ctx=ctx)
    assert again == first
    dep = kube.get(kube.ns_path("deployments", "web", group=APPS))
    assert dep["metadata"]["generation"] == first["generation"] == 2


async def test_wait_rollout_times_out_with_what_it_waited_for(kube: Kube, run: Runner) -> None:
    kube.deployment("stuck", replicas=1)
    with pytest.raises(TemporaryActionError, match=r"did not complete within 1s: .*available"):
        await run(
            "wait_rollout",
            {
                "namespace": kube.namespace,
                "kind": "Deployment",
                "name": "stuck",
                "timeout": "1s",
                "interval": "100ms",
            },
        )


async def test_statefulset_restart_and_rollout(kube: Kube, run: Runner) -> None:
    kube.statefulset("db", replicas=1)
    base = {"namespace": kube.namespace, "kind": "StatefulSet", "name": "db"}
    async with kubelet(kube, "app=db"):
        assert (await run("wait_rollout", {**base, "timeout": "60s", "interval": "200ms"}))["complete"]
        await run("rollout_restart", base)
        done = await run("wait_rollout", {**base, "timeout": "90s", "interval": "200ms"})
    assert done["complete"] is True


async def test_rollback_deployment_restores_the_previous_template(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    base = {"namespace": kube.namespace, "name": "web"}
    path = kube.ns_path("deployments", "web", group=APPS)
    kube.wait_revision("web", "1")
    with pytest.raises(PermanentActionError, match="no previous revision to roll back to"):
        await run("rollback_deployment", base)

    kube.patch(
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26-broken"}]}}}},
        "application/strategic-merge-patch+json",
    )
    kube.wait_revision("web", "2")

    with pytest.raises(PermanentActionError, match="has no revision 7"):
        await run("rollback_deployment", {**base, "to_revision": 7})
    ctx = run.context()
    out = await run("rollback_deployment", base, ctx=ctx)
    assert (out["from_revision"], out["to_revision"]) == (2, 1)
    dep = kube.get(path)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert await run.check("rollback_deployment", base, ctx) is Effect.DONE
    # the controller gives the restored ReplicaSet the next revision, as `kubectl rollout undo` leaves it
    kube.wait_revision("web", "3")
    # The same step run again (its record lost: a journal restored from an older backup) finds its
    # stamp and leaves the Deployment alone: the revision before 3 is now 2, the broken one.
    again = await run("rollback_deployment", base, ctx=ctx)
    assert kube.get(path)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert again["to_revision"] == 3
    assert (again["already_applied"], again["from_revision"]) == (True, 2)
    assert out["already_applied"] is False
    assert kube.get(path)["metadata"]["generation"] == dep["metadata"]["generation"]


async def test_rollback_of_a_paused_deployment_is_refused_as_kubectl_does(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    path = kube.wait_revision("web", "1")
    kube.patch(path, {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    kube.wait_revision("web", "2")
    kube.patch(path, {"spec": {"paused": True}})
    with pytest.raises(PermanentActionError, match=rf"deployment {kube.namespace}/web is paused: resume it"):
        await run("rollback_deployment", {"namespace": kube.namespace, "name": "web"})
    assert kube.get(path)["spec"]["template"]["metadata"]["annotations"] == {"v": "2"}


async def test_set_resources_with_caps(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    ctx = run.context()
    out = await run(
        "set_resources",
        {**base, "requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        ctx=ctx,
    )
    assert out["previous"] == {}
    assert out["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert await run.check("set_resources", base, ctx) is Effect.DONE
    dep = kube.get(kube.ns_path("deployments", "web", group=APPS))
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"memory": "256Mi"}

    with pytest.raises(GuardRefused, match="above the cap"):
        await run("set_resources", {**base, "limits": {"memory": "2Gi"}, "max_memory": "1Gi"})
    with pytest.raises(GuardRefused, match="above the cap"):
        await run("set_resources", {**base, "limits": {"cpu": "64"}})
    with pytest.raises(PermanentActionError, match="request 512Mi would be above its limit 256Mi"):
        await run("set_resources", {**base, "requests": {"memory": "512Mi"}})
    with pytest.raises(PermanentActionError, match="not a Kubernetes quantity"):
        await run("set_resources", {**base, "requests": {"cpu": "lots"}})
    with pytest.raises(PermanentActionError, match="no container 'sidecar'"):
        await run("set_resources", {**base, "container": "sidecar", "requests": {"cpu": "1"}})


async def test_patch_hpa_bounds(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    hpa_path = kube.hpa("web", 5, minReplicas=1)
    base = {"namespace": kube.namespace, "name": "web"}
    out = await run("patch_hpa", {**base, "max_replicas": 10})
    assert out == {"previous": {"min_replicas": 1, "max_replicas": 5}, "min_replicas": 1, "max_replicas": 10}
    hpa = kube.get(hpa_path)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    with pytest.raises(PermanentActionError, match="must be between 1 and max_replicas 10"):
        await run("patch_hpa", {**base, "min_replicas": 11})
    small = Runner(run.adapter, KubeGuards(max_replicas=8))
    with pytest.raises(GuardRefused, match="exceeds the configured maximum 8"):
        await small("patch_hpa", {**base, "max_replicas": 9})


async def test_daemonset_restart_and_rollout(kube: Kube, run: Runner) -> None:
    node = f"{kube.namespace}-ds"
    kube.node(node, pool=kube.namespace)
    kube.daemonset("agent", "agent:1", terminationGracePeriodSeconds=0)
    base = {"namespace": kube.namespace, "kind": "DaemonSet", "name": "agent"}
    async with kubelet(kube, "app=agent"):
        first = await run("wait_rollout", {**base, "timeout": "60s", "interval": "200ms"})
        assert first["complete"] is True
        await run("rollout_restart", base)
        done = await run("wait_rollout", {**base, "timeout": "90s", "interval": "200ms"})
    assert done["complete"] is True
    assert done["message"] == 'daemon set "agent" successfully rolled out'
    template = kube.get(kube.ns_path("daemonsets", "agent", group=APPS))["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]


async def test_resolve_owner_ends_at_an_owner_of_another_api_group(kube: Kube, run: Runner) -> None:
    """A custom resource called Deployment is not apps/v1's: the walk must not name the apps one."""
    kube.deployment("web", replicas=0)
    owner = {"apiVersion": "example.com/v1", "kind": "Deployment", "name": "web", "uid": "0000-custom"}
    kube.create(
        kube.ns_path("pods"),
        {
            "metadata": {"name": "custom", "ownerReferences": [{**owner, "controller": True}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": "custom"})
    assert (out["kind"], out["name"], out["chain"]) == ("Pod", "custom", [{"kind": "Pod", "name": "custom"}])


async def test_resolve_owner_of_a_mirror_pod_is_the_pod(kube: Kube, run: Runner) -> None:
    """The kubelet makes the Node the controller of a static pod's mirror: no workload owns it."""
    node = kube.node(f"{kube.namespace}-n1")["metadata"]
    owner = {"apiVersion": "v1", "kind": "Node", "name": node["name"], "uid": node["uid"], "controller": True}
    kube.create(
        kube.ns_path("pods"),
        {
            "metadata": {
                "name": "etcd-n1",
                "annotations": {"kubernetes.io/config.mirror": "abc"},
                "ownerReferences": [owner],
            },
            "spec": {"nodeName": node["name"], "containers": [{"name": "etcd", "image": "etcd"}]},
        },
    )
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": "etcd-n1"})
    assert (out["kind"], out["name"]) == ("Pod", "etcd-n1")
    assert out["chain"] == [{"kind": "Pod", "name": "etcd-n1"}]


async def test_resolve_owner_refuses_an_owner_name_that_is_no_object_name(kube: Kube, run: Runner) -> None:
    """An ownerReference's name is not validated by the API server, and it would become a path."""
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x/../../../../nodes/n", "uid": "0000-rs"}
    # A finalizer keeps the pod readable: a real garbage collector deletes a pod whose owner is absent.
    keep = ["kurative.test/keep"]
    kube.create(
        kube.ns_path("pods"),
        {
            "metadata": {
                "name": "forged",
                "ownerReferences": [{**owner, "controller": True}],
                "finalizers": keep,
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    try:
        with pytest.raises(PermanentActionError, match="is not a valid DNS-1123 subdomain"):
            await run("resolve_owner", {"namespace": kube.namespace, "pod": "forged"})
    finally:
        kube.patch(kube.ns_path("pods", "forged"), {"metadata": {"finalizers": None}})


async def test_resolve_owner_walks_pod_job_cronjob(kube: Kube, run: Runner) -> None:
    path = kube.cronjob("nightly")
    cron = kube.get(path)
    job = await run("trigger_cronjob", {"namespace": kube.namespace, "name": "nightly"})
    made = kube.get(f"/apis/batch/v1/namespaces/{kube.namespace}/jobs/{job['job']}")
    if isinstance(kube.cluster, RealCluster):
        # The real Job controller makes the pod; a second, hand-made one would be over the Job's
        # parallelism, and the controller deletes one of the two.
        made_pod = kube.wait_for("the Job's pod", lambda: kube.pods(f"job-name={job['job']}"))[0]
        worker = made_pod["metadata"]["name"]
    else:
        worker = "worker"
        kube.create(
            kube.ns_path("pods"),
            {
                "metadata": {
                    "name": worker,
                    "labels": ((made["spec"].get("selector") or {}).get("matchLabels") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job["job"],
                            "uid": made["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]},
            },
        )
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": worker})
    assert (out["kind"], out["name"], out["uid"]) == ("CronJob", "nightly", cron["metadata"]["uid"])
    assert out["chain"] == [
        {"kind": "Pod", "name": worker},
        {"kind": "Job", "name": job["job"]},
        {"kind": "CronJob", "name": "nightly"},
    ]


async def test_stamps_of_earlier_steps_survive_later_stamps(kube: Kube, run: Runner) -> None:
    """Steps of other executions stamp the same Deployment: each first step still checks DONE."""
    kube.deployment("web", replicas=2)
    path = kube.wait_revision("web", "1")
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    scaled, restarted, resized = run.context(step="scale"), run.context(), run.context()
    await run("scale", {**base, "delta": 1}, ctx=scaled)
    await run("rollout_restart", base, ctx=restarted)
    kube.wait_revision("web", "2")  # each template gets its own ReplicaSet revision
    await run("set_resources", {**base, "requests": {"cpu": "100m"}}, ctx=resized)
    kube.wait_revision("web", "3")
    rolled = run.context()
    assert (await run("rollback_deployment", {"namespace": kube.namespace, "name": "web"}, ctx=rolled))[
        "to_revision"
    ] == 2
    await run("rollout_restart", base)  # and one more after it

    assert await run.check("scale", {**base, "delta": 1}, scaled) is Effect.DONE
    assert await run.check("rollout_restart", base, restarted) is Effect.DONE
    assert await run.check("set_resources", base, resized) is Effect.DONE
    assert await run.check("rollback_deployment", {"namespace": kube.namespace, "name": "web"}, rolled) is (
        Effect.DONE
    )
    # a retry of the relative scale (the runner lost its answer) does not add again: 2 -> 3, not 4
    assert (await run("scale", {**base, "delta": 1}, ctx=scaled))["replicas"] == 3
    assert kube.get(path)["spec"]["replicas"] == 3
    stamps = kube.get(path)["metadata"]["annotations"]["kurative/step"].split(",")
    assert stamps[:4] == [c.idempotency_key for c in (scaled, restarted, resized, rolled)]
    assert len(stamps) == 5


async def test_stamps_are_a_bounded_history_of_the_most_recent_steps(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    path = kube.ns_path("deployments", "web", group=APPS)
    base = {"namespace": kube.namespace, "kind": "Deployment", "name": "web"}
    steps = [run.context(step=f"s{i}") for i in range(STAMP_HISTORY + 2)]
    for i, ctx in enumerate(steps):
        await run("scale", {**base, "replicas": 1 + i % 2}, ctx=ctx)
    stamps = kube.get(path)["metadata"]["annotations"]["kurative/step"].split(",")
    assert stamps == [c.idempotency_key for c in steps[-STAMP_HISTORY:]]
    assert await run.check("scale", base, steps[2]) is Effect.DONE
    assert await run.check("scale", base, steps[1]) is Effect.NOT_DONE  # dropped: the oldest go first


def _set_image(kube: Kube, path: str, image: str) -> None:
    kube.patch(
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        "application/strategic-merge-patch+json",
    )


async def test_rollback_follows_the_replicaset_revisions_through_several_changes(
    kube: Kube, run: Runner
) -> None:
    kube.deployment("web", replicas=1)
    path = kube.wait_revision("web", "1")
    for revision, image in (("2", "nginx:1.26"), ("3", "nginx:1.27")):
        _set_image(kube, path, image)
        kube.wait_revision("web", revision)
    out = await run("rollback_deployment", {"namespace": kube.namespace, "name": "web"})
    assert (out["from_revision"], out["to_revision"]) == (3, 2)
    assert kube.get(path)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    kube.wait_revision("web", "4")


async def test_rollback_before_the_deployment_shows_the_new_revision_does_as_kubectl(
    fake_kube: FakeCluster, fake_run: Runner, fake: Kube
) -> None:
    """The controller made ReplicaSet revision 3 but has not written it to the Deployment yet.

    `kubectl rollout undo` reads the ReplicaSets: the newest is 3, so it returns to 2. Only the fake
    can be asked to hold that moment (on a real cluster it lasts between two controller writes).
    """
    fake.deployment("web", replicas=1)
    path = fake.wait_revision("web", "1")
    _set_image(fake, path, "nginx:1.26")
    fake.wait_revision("web", "2")
    lag = (fake.namespace, "web")
    fake_kube.store.lagging_revisions.add(lag)
    try:
        _set_image(fake, path, "nginx:1.27")
        replicasets = fake.request("GET", fake.ns_path("replicasets", group=APPS))["items"]
        assert sorted(rs["metadata"]["annotations"][REVISION] for rs in replicasets) == ["1", "2", "3"]
        assert fake.get(path)["metadata"]["annotations"][REVISION] == "2"
        out = await fake_run("rollback_deployment", {"namespace": fake.namespace, "name": "web"})
    finally:
        fake_kube.store.lagging_revisions.discard(lag)
    assert (out["from_revision"], out["to_revision"]) == (3, 2)
    assert fake.get(path)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
