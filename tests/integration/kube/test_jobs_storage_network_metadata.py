"""CronJob/Job, storage, network and metadata actions and the generic reads, over both servers."""

from __future__ import annotations

import pytest

from kurative.actions.kubernetes import Effect, KubeGuards
from kurative.errors import GuardRefused, ObjectNotFound, PermanentActionError
from tests.integration.kube.helpers import Crash, Kube, Runner, interposed

pytestmark = pytest.mark.kube

JOB_TEMPLATE = {
    "metadata": {"labels": {"app": "report"}},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "report"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "r", "image": "busybox"}]},
        }
    },
}


async def _cronjob(kube: Kube, run: Runner, name: str) -> str:
    version, base = await run.adapter.client(None).resource_path("batch", ("v1", "v1beta1"), "cronjobs")
    path = f"{base}/namespaces/{kube.namespace}/cronjobs"
    kube.create(
        path,
        {"apiVersion": version, "kind": "CronJob", "metadata": {"name": name},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": JOB_TEMPLATE}},
    )  # fmt: skip
    return f"{path}/{name}"


async def test_suspend_resume_and_trigger_cronjob(kube: Kube, run: Runner) -> None:
    path = await _cronjob(kube, run, "report")
    base = {"namespace": kube.namespace, "name": "report"}
    assert await run("suspend_cronjob", base) == {"suspended": True, "changed": True}
    assert kube.get(path)["spec"]["suspend"] is True
    assert await run("suspend_cronjob", base) == {"suspended": True, "changed": False}
    assert await run("resume_cronjob", base, dry_run=True) == {"suspended": False, "changed": True}
    assert kube.get(path)["spec"]["suspend"] is True
    assert await run("resume_cronjob", base) == {"suspended": False, "changed": True}

    ctx = run.context()
    assert await run.check("trigger_cronjob", base, ctx) is Effect.NOT_DONE
    out = await run("trigger_cronjob", base, ctx=ctx)
    assert out["created"] is True
    job = kube.get(f"/apis/batch/v1/namespaces/{kube.namespace}/jobs/{out['job']}")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert await run.check("trigger_cronjob", base, ctx) is Effect.DONE
    assert await run("trigger_cronjob", base, ctx=ctx) == {"job": out["job"], "created": False}
    with pytest.raises(ObjectNotFound):
        await run("suspend_cronjob", {"namespace": kube.namespace, "name": "ghost"})


async def test_delete_job_preconditioned_and_repeatable(kube: Kube, run: Runner) -> None:
    jobs = f"/apis/batch/v1/namespaces/{kube.namespace}/jobs"
    made = kube.create(
        jobs,
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": JOB_TEMPLATE["spec"]},
    )
    ctx = run.context()
    base = {"namespace": kube.namespace, "name": "once"}
    assert (await run("delete_job", base, dry_run=True))["deleted"] is True
    assert kube.exists(f"{jobs}/once")
    out = await run("delete_job", {**base, "propagation": "Foreground"}, ctx=ctx)
    assert out == {"uid": made["metadata"]["uid"], "deleted": True}
    kube.wait_for("job gone", lambda: not kube.exists(f"{jobs}/once"))
    assert await run.check("delete_job", base, ctx) is Effect.DONE
    assert (await run("delete_job", base, ctx=ctx))["deleted"] is False
    with pytest.raises(PermanentActionError, match="propagation: 'Sideways' is not one of"):
        await run("delete_job", {**base, "propagation": "Sideways"})


async def test_expand_pvc_only_when_the_storage_class_allows(kube: Kube, run: Runner) -> None:
    kube.claim("data", "10Gi", bound=False)
    kube.claim("frozen", "10Gi", expandable=False, bound=False)
    base = {"namespace": kube.namespace, "name": "data"}
    with pytest.raises(PermanentActionError, match="is not bound yet"):
        await run("expand_pvc", {**base, "size": "20Gi"})
    for claim in ("data", "frozen"):
        kube.bind_claim(claim)

    assert await run("expand_pvc", {**base, "size": "+50%"}, dry_run=True) == {
        "previous": "10Gi",
        "size": "15Gi",
        "changed": True,
    }
    assert kube.requested_storage("data") == "10Gi"
    assert await run("expand_pvc", {**base, "size": "20Gi"}) == {
        "previous": "10Gi",
        "size": "20Gi",
        "changed": True,
    }
    assert kube.requested_storage("data") == "20Gi"
    assert (await run("expand_pvc", {**base, "size": "15Gi"}))["changed"] is False  # never shrinks
    with pytest.raises(GuardRefused, match="exceeds the allowed maximum"):
        await run("expand_pvc", {**base, "size": "80Gi", "max_size": "50Gi"})
    with pytest.raises(PermanentActionError, match="does not allow volume expansion"):
        await run("expand_pvc", {"namespace": kube.namespace, "name": "frozen", "size": "20Gi"})
    with pytest.raises(PermanentActionError, match="not a Kubernetes quantity"):
        await run("expand_pvc", {**base, "size": "huge"})


async def test_expand_pvc_by_a_growth_grows_once_when_repeated(kube: Kube, run: Runner) -> None:
    """A crash after the patch, before the journal recorded the step: recovery must not grow it again."""
    kube.claim("data", "10Gi")
    params = {"namespace": kube.namespace, "name": "data", "size": "+50%"}
    ctx = run.context()
    assert await run.check("expand_pvc", params, ctx) is Effect.NOT_DONE
    assert (await run("expand_pvc", params, ctx=ctx))["size"] == "15Gi"
    assert await run.check("expand_pvc", params, ctx) is Effect.DONE
    again = await run("expand_pvc", params, ctx=ctx)  # the runner's retry after a lost answer
    assert again == {"previous": "15Gi", "size": "15Gi", "changed": False}
    assert kube.requested_storage("data") == "15Gi"
    later = run.context()  # another step grows it again, as it should
    assert (await run("expand_pvc", params, ctx=later))["size"] == "23Gi"


async def test_quarantine_pod_labels_and_isolates(kube: Kube, run: Runner) -> None:
    kube.deployment("web", replicas=1)
    pod = kube.wait_for("pod", lambda: kube.pods("app=web"))[0]
    name = pod["metadata"]["name"]
    out = await run("quarantine_pod", {"namespace": kube.namespace, "pod": name, "detach": True})
    assert out["label"] == name
    policy = kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{kube.namespace}/networkpolicies/{out['policy']}"
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {"kurative.io/quarantine": name}}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress")
    assert not policy["spec"].get("egress")
    labels = kube.get(kube.ns_path("pods", name))["metadata"]["labels"]
    assert labels["kurative.io/quarantine"] == name
    assert "app" not in labels
    # detached from its ReplicaSet, which starts a replacement
    kube.wait_for(
        "replacement",
        lambda: len(kube.pods("app=web")) == 1 and kube.pods("app=web")[0]["metadata"]["name"] != name,
    )
    again = await run("quarantine_pod", {"namespace": kube.namespace, "pod": name})
    assert again == out


async def test_quarantine_refuses_an_existing_policy_that_is_not_deny_all(kube: Kube, run: Runner) -> None:
    kube.pod("web")
    policies = f"/apis/networking.k8s.io/v1/namespaces/{kube.namespace}/networkpolicies"
    selector = {"matchLabels": {"kurative.io/quarantine": "web"}}
    kube.create(
        policies,
        {
            "metadata": {"name": "kurative-quarantine-web"},
            # selects the pod, but lets all ingress in and isolates no egress
            "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": [{}]},
        },
    )
    with pytest.raises(PermanentActionError, match="exists but is not deny-all"):
        await run("quarantine_pod", {"namespace": kube.namespace, "pod": "web"})
    assert "kurative.io/quarantine" not in kube.get(kube.ns_path("pods", "web"))["metadata"]["labels"]


async def test_quarantine_detaches_only_from_an_apps_replicaset(kube: Kube, run: Runner) -> None:
    """A StatefulSet pod, or one of a custom kind named ReplicaSet, is isolated and left in place."""
    kube.statefulset("db", replicas=1)
    kube.wait_for("db-0", lambda: kube.exists(kube.ns_path("pods", "db-0")))
    owner = {"apiVersion": "example.com/v1", "kind": "ReplicaSet", "name": "db", "uid": "0000-custom"}
    kube.create(
        kube.ns_path("pods"),
        {
            "metadata": {
                "name": "custom",
                "labels": {"app": "db"},
                "ownerReferences": [{**owner, "controller": True}],
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    reads: list[str] = []
    watched = interposed(run, lambda method, path: reads.append(path) if method == "GET" else None)
    for pod in ("db-0", "custom"):
        await watched("quarantine_pod", {"namespace": kube.namespace, "pod": pod, "detach": True})
        labels = kube.get(kube.ns_path("pods", pod))["metadata"]["labels"]
        assert (labels["kurative.io/quarantine"], labels["app"]) == (pod, "db")
    assert [p for p in reads if "/pods/" not in p and "/networkpolicies/" not in p] == []


async def test_label_annotate_get_list(kube: Kube, run: Runner) -> None:
    kube.pod("web", labels={"app": "web", "tier": "front"})
    kube.pod("db", labels={"app": "db"})
    base = {"namespace": kube.namespace, "kind": "Pod", "name": "web"}
    out = await run("label", {**base, "labels": {"kurative.io/seen": "yes", "tier": None}})
    assert out == {"labels": {"app": "web", "kurative.io/seen": "yes"}, "changed": True}
    assert (await run("label", {**base, "labels": {"kurative.io/seen": "yes"}}))["changed"] is False
    note = await run("annotate", {**base, "annotations": {"kurative.io/reason": "crash loop: OOMKilled"}})
    assert note["annotations"]["kurative.io/reason"] == "crash loop: OOMKilled"

    got = await run("get", base)
    assert got["found"] is True
    assert got["object"]["metadata"]["labels"]["kurative.io/seen"] == "yes"
    assert await run("get", {**base, "name": "ghost", "missing_ok": True}) == {"object": {}, "found": False}
    with pytest.raises(ObjectNotFound):
        await run("get", {**base, "name": "ghost"})

    listed = await run(
        "list", {"namespace": kube.namespace, "kind": "Pod", "label_selector": "app in (web,db),app!=db"}
    )
    assert listed["names"] == ["web"]
    assert listed["items"][0]["kind"] == "Pod"
    nodes = await run("list", {"kind": "Namespace", "field_selector": f"metadata.name={kube.namespace}"})
    assert nodes["names"] == [kube.namespace]

    with pytest.raises(PermanentActionError, match="kind: 'Secret' is not one of"):
        await run("get", {**base, "kind": "Secret"})
    with pytest.raises(PermanentActionError, match="label value 'not ok!' for a is invalid"):
        await run("label", {**base, "labels": {"a": "not ok!"}})
    with pytest.raises(PermanentActionError, match="label key '-bad' is invalid"):
        await run("label", {**base, "labels": {"-bad": "x"}})
    with pytest.raises(GuardRefused):
        await run("label", {"kind": "Namespace", "name": "kube-system", "labels": {"a": "b"}})
    with pytest.raises(GuardRefused):
        await run(
            "annotate",
            {"namespace": "kube-system", "kind": "ConfigMap", "name": "x", "annotations": {"a": "b"}},
        )
    assert (await run("get", {"kind": "Namespace", "name": "kube-system"}))["found"] is True
    denied = Runner(run.adapter, KubeGuards(denied_namespaces=(kube.namespace,)))
    with pytest.raises(GuardRefused, match=rf"namespace {kube.namespace} is denied"):
        await denied("label", {"kind": "Namespace", "name": kube.namespace, "labels": {"a": "b"}})
    elsewhere = Runner(run.adapter, KubeGuards(allowed_namespaces=("shop",)))
    with pytest.raises(GuardRefused, match=rf"namespace {kube.namespace} is not allowed"):
        await elsewhere("annotate", {"kind": "Namespace", "name": kube.namespace, "annotations": {"a": "b"}})
    assert (await elsewhere("get", {"kind": "Namespace", "name": kube.namespace}))["found"] is True


async def test_a_triggered_job_stays_done_when_another_step_stamps_it(kube: Kube, run: Runner) -> None:
    """trigger_cronjob, then another execution's delete_job stamps the Job and dies before deleting."""
    await _cronjob(kube, run, "report")
    base = {"namespace": kube.namespace, "name": "report"}
    triggered = run.context()
    job = (await run("trigger_cronjob", base, ctx=triggered))["job"]
    path = f"/apis/batch/v1/namespaces/{kube.namespace}/jobs/{job}"

    def die_before_delete(method: str, where: str) -> None:
        if method == "DELETE" and where == path:
            raise Crash(where)

    crashing = interposed(run, die_before_delete)
    deleting = crashing.context()
    with pytest.raises(Crash):
        await crashing("delete_job", {"namespace": kube.namespace, "name": job}, ctx=deleting)

    assert await run.check("trigger_cronjob", base, triggered) is Effect.DONE
    assert await run("trigger_cronjob", base, ctx=triggered) == {"job": job, "created": False}
    deleted = {"namespace": kube.namespace, "name": job}
    recovered = run.context(execution=deleting.execution_id, step=deleting.step)  # after the restart
    assert await run.check("delete_job", deleted, recovered) is Effect.NOT_DONE
    assert (await run("delete_job", deleted, ctx=recovered))["deleted"] is True
