"""RBAC proof on the real kube-apiserver: what `kurative rbac` prints is enough, and no more.

The manifests printed for the shipped rules/ are applied for the token user ``kurative`` (a user with
no privileges of its own); every Kubernetes action those playbooks use then runs as that user and
passes, and an action they do not use is refused with 403, mapped to a clear permanent error.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kurative.actions.kubernetes import Effect
from kurative.actions.kubernetes.rbac import render_manifests
from kurative.actions.registry import all_actions, get_action
from kurative.adapters.kubernetes import ForbiddenError, KubernetesAdapter, KubeSettings
from kurative.cli import main
from kurative.commands.rbac import rules_for_playbooks
from kurative.playbooks.loading import load_playbooks
from tests.integration.kube.helpers import CORE, Kube, Runner, kube_in_namespace

pytestmark = [pytest.mark.kube, pytest.mark.realkube]
RULES = Path(__file__).resolve().parents[3] / "rules"
RBAC_GROUP = "rbac.authorization.k8s.io"
USER = "kurative"
BATCH = "/apis/batch/v1"

Scenario = Callable[[Kube, Runner], Awaitable[Any]]


def _ready_deployment(kube: Kube, name: str, replicas: int = 1) -> list[dict]:
    kube.deployment(name, replicas=replicas)
    return kube.wait_for(f"{name} pods", lambda: (p := kube.pods(f"app={name}")) and len(p) == replicas and p)


async def _collect(kube: Kube, run: Runner) -> Any:
    kube.pod("diag")
    return await run("collect_diagnostics", {"namespace": kube.namespace, "pod": "diag"})


async def _node_action(action: str) -> Scenario:
    async def scenario(kube: Kube, run: Runner) -> Any:
        node = f"{kube.namespace}-{action}"
        kube.node(node)
        params: dict[str, Any] = {"node": node}
        if action == "drain":
            pod = _ready_deployment(kube, "drained")[0]
            kube.bind(pod["metadata"]["name"], node)
            params.update(timeout="20s", grace_period=0)
        if action in ("taint", "untaint"):
            params["key"] = "kurative.io/test"
        return await run(action, params)

    return scenario


async def _delete_job(kube: Kube, run: Runner) -> Any:
    kube.create(
        f"{BATCH}/namespaces/{kube.namespace}/jobs",
        {
            "metadata": {"name": "failed"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}
                }
            },
        },
    )
    return await run("delete_job", {"namespace": kube.namespace, "name": "failed"})


async def _expand(kube: Kube, run: Runner) -> Any:
    kube.claim("data", "1Gi")
    return await run("expand_pvc", {"namespace": kube.namespace, "name": "data", "size": "2Gi"})


def _hpa(kube: Kube) -> None:
    kube.hpa("web", 3)


async def _get(kube: Kube, run: Runner, kinds: tuple[str, ...]) -> Any:
    makers: dict[str, Callable[[], Any]] = {
        "Deployment": lambda: kube.deployment("web", replicas=0),
        "HorizontalPodAutoscaler": lambda: _hpa(kube),
        "Job": lambda: None,  # read with missing_ok in the rules: absent is an answer too
        "Pod": lambda: kube.pod("web"),
    }
    results = []
    for kind in kinds:
        makers.get(kind, lambda: None)()
        results.append(
            await run("get", {"namespace": kube.namespace, "kind": kind, "name": "web", "missing_ok": True})
        )
    return results


async def _patch_hpa(kube: Kube, run: Runner) -> Any:
    _hpa(kube)
    return await run("patch_hpa", {"namespace": kube.namespace, "name": "web", "max_replicas": 5})


async def _resolve(kube: Kube, run: Runner) -> Any:
    pod = _ready_deployment(kube, "owned")[0]
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": pod["metadata"]["name"]})
    assert out["kind"] == "Deployment"
    return out


async def _rollback(kube: Kube, run: Runner) -> Any:
    kube.deployment("web", replicas=0)
    path = kube.wait_revision("web", "1")
    kube.patch(path, {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    kube.wait_revision("web", "2")
    return await run("rollback_deployment", {"namespace": kube.namespace, "name": "web"})


async def _restart(kube: Kube, run: Runner) -> Any:
    kube.deployment("web", replicas=0)
    return await run("rollout_restart", {"namespace": kube.namespace, "kind": "Deployment", "name": "web"})


async def _wait(kube: Kube, run: Runner) -> Any:
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
    return out


def _label_pod(action: str) -> Scenario:
    async def scenario(kube: Kube, run: Runner) -> Any:
        kube.pod("web")
        field = "labels" if action == "label" else "annotations"
        return await run(
            action, {"namespace": kube.namespace, "kind": "Pod", "name": "web", field: {"kurative.io/x": "y"}}
        )

    return scenario


def _pod_action(action: str, **extra: Any) -> Scenario:
    async def scenario(kube: Kube, run: Runner) -> Any:
        kube.pod("web")
        return await run(action, {"namespace": kube.namespace, "pod": "web", **extra})

    return scenario


async def _scale(kube: Kube, run: Runner) -> Any:
    kube.deployment("web", replicas=0)
    return await run(
        "scale", {"namespace": kube.namespace, "kind": "Deployment", "name": "web", "replicas": 1}
    )


async def _set_resources(kube: Kube, run: Runner) -> Any:
    kube.deployment("web", replicas=0)
    return await run(
        "set_resources",
        {"namespace": kube.namespace, "kind": "Deployment", "name": "web", "requests": {"cpu": "100m"}},
    )


async def _nightly(kube: Kube, run: Runner) -> dict[str, Any]:
    """A CronJob named nightly; the params that name it."""
    version, base = await run.adapter.client(None).resource_path("batch", ("v1", "v1beta1"), "cronjobs")
    template = {
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}
            }
        }
    }
    kube.create(
        f"{base}/namespaces/{kube.namespace}/cronjobs",
        {
            "apiVersion": version,
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": template},
        },
    )
    return {"namespace": kube.namespace, "name": "nightly"}


def _cronjob_action(action: str) -> Scenario:
    async def scenario(kube: Kube, run: Runner) -> Any:
        return await run(action, await _nightly(kube, run))

    return scenario


async def _trigger(kube: Kube, run: Runner) -> Any:
    """Its repeat (the Job exists: 409, then a GET) and its check hook need their rules too."""
    params = await _nightly(kube, run)
    ctx = run.context()
    out = await run("trigger_cronjob", params, ctx=ctx)
    assert (await run("trigger_cronjob", params, ctx=ctx))["created"] is False
    assert await run.check("trigger_cronjob", params, ctx) is Effect.DONE
    return out


async def _cleanup(kube: Kube, run: Runner) -> Any:
    return await run("cleanup_failed_pods", {"namespace": kube.namespace})


async def _list(kube: Kube, run: Runner) -> Any:
    return await run("list", {"namespace": kube.namespace, "kind": "Pod"})


async def scenarios() -> dict[str, Scenario]:
    nodes = {a: await _node_action(a) for a in ("cordon", "uncordon", "drain", "taint", "untaint")}
    return {
        **nodes,
        "collect_diagnostics": _collect,
        "delete_job": _delete_job,
        "expand_pvc": _expand,
        "patch_hpa": _patch_hpa,
        "resolve_owner": _resolve,
        "rollback_deployment": _rollback,
        "rollout_restart": _restart,
        "wait_rollout": _wait,
        "label": _label_pod("label"),
        "annotate": _label_pod("annotate"),
        "delete_pod": _pod_action("delete_pod"),
        "evict_pod": _pod_action("evict_pod"),
        "pod_logs": _pod_action("pod_logs"),
        "quarantine_pod": _pod_action("quarantine_pod"),
        "scale": _scale,
        "set_resources": _set_resources,
        "suspend_cronjob": _cronjob_action("suspend_cronjob"),
        "resume_cronjob": _cronjob_action("resume_cronjob"),
        "trigger_cronjob": _trigger,
        "cleanup_failed_pods": _cleanup,
        "list": _list,
    }


def _literal_kinds(action: str) -> tuple[str, ...]:
    kinds = set()
    for playbook in load_playbooks([RULES]).playbooks:
        for step in playbook.steps:
            kind = step.params.get("kind")
            if step.action == f"kubernetes.{action}" and isinstance(kind, str) and "${" not in kind:
                kinds.add(kind)
    return tuple(sorted(kinds))


@pytest.fixture(scope="module")
def granted(real_kube: Any) -> Iterator[list[str]]:
    """Apply the printed manifests for the user ``kurative``; yields the Kubernetes actions used."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["rbac", "--rules", str(RULES)]) == 0
    docs = [d for d in YAML(typ="safe").load_all(out.getvalue()) if d]
    api = real_kube.api_client()
    admin = Kube(api, real_kube)
    created: list[str] = []
    try:
        for doc in docs:
            kind = doc["kind"]
            if kind == "ServiceAccount":
                continue  # the token user stands in for the service account
            if kind.endswith("Binding"):
                doc["subjects"] = [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}]
            plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[kind]
            admin.create(f"/apis/rbac.authorization.k8s.io/v1/{plural}", doc)
            created.append(f"/apis/rbac.authorization.k8s.io/v1/{plural}/{doc['metadata']['name']}")
        _rules, used = rules_for_playbooks(load_playbooks([RULES]).playbooks)
        yield [name.removeprefix("kubernetes.") for name in used]
    finally:
        admin.cluster_objects.extend(created)
        admin.cleanup()
        api.close()


@pytest.fixture
def as_user(real_kube: Any) -> Iterator[Runner]:
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, real_kube.api_client(USER))
    try:
        yield Runner(adapter)
    finally:
        adapter.close()


@pytest.fixture
def admin(real_kube: Any, request: pytest.FixtureRequest) -> Iterator[Kube]:
    yield from kube_in_namespace(real_kube, request.node.name)


async def test_every_action_of_the_shipped_rules_runs_with_the_printed_rbac(
    granted: list[str], admin: Kube, as_user: Runner
) -> None:
    table = await scenarios()
    assert len(granted) >= 5, granted
    missing = [a for a in granted if a not in table and a != "get"]
    assert not missing, f"no RBAC scenario for {missing}: add one to this test"
    for action in granted:
        admin.namespace = admin.create_namespace(f"rbac-{action}")
        if action == "get":
            kinds = _literal_kinds("get")
            await _get(admin, as_user, kinds or ("Pod",))
        else:
            await table[action](admin, as_user)


async def test_an_action_the_rules_do_not_use_is_forbidden(
    granted: list[str], admin: Kube, as_user: Runner
) -> None:
    table = await scenarios()
    unused = next(
        a for a in ("label", "quarantine_pod", "scale", "delete_pod", "set_resources") if a not in granted
    )
    with pytest.raises(
        ForbiddenError, match=r"forbidden: User \"kurative\" cannot .*kurative rbac"
    ) as caught:
        await table[unused](admin, as_user)
    assert not caught.value.temporary
    spec = get_action(f"kubernetes.{unused}")
    assert spec is not None
    assert spec.rbac
    assert admin.exists(f"{CORE}/namespaces/{admin.namespace}")


def _acting(real_kube: Any, user: str) -> KubernetesAdapter:
    acting = real_kube.api_client()
    acting.set_default_header("Impersonate-User", user)
    acting.set_default_header("Impersonate-Group", "system:authenticated")
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, acting)
    return adapter


@pytest.fixture
def per_action(real_kube: Any) -> Iterator[tuple[dict[str, Runner], Kube]]:
    """For each Kubernetes action, an impersonated user bound to exactly that action's declared rules.

    A union of every action's rules would hide an action that reads what only another action grants
    (resolve_owner reading the Deployment that rollout_restart grants; drain reading the pods that
    collect_diagnostics grants): here each action has nothing but its own declaration.
    """
    api = real_kube.api_client()
    admin = Kube(api, real_kube)
    runners: dict[str, Runner] = {}
    adapters: list[KubernetesAdapter] = []
    try:
        for spec in all_actions():
            if not spec.name.startswith("kubernetes."):
                continue
            action = spec.name.removeprefix("kubernetes.")
            user = f"kurative-only-{action.replace('_', '-')}"
            docs = render_manifests(
                spec.rbac, name=user, subject={"kind": "User", "name": user, "apiGroup": RBAC_GROUP}
            )
            for doc in docs:
                plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[
                    doc["kind"]
                ]
                admin.create(f"/apis/{RBAC_GROUP}/v1/{plural}", doc)
                admin.cluster_objects.append(f"/apis/{RBAC_GROUP}/v1/{plural}/{user}")
            adapters.append(adapter := _acting(real_kube, user))
            runners[action] = Runner(adapter)
        yield runners, admin
    finally:
        for adapter in adapters:
            adapter.close()
        admin.cleanup()
        api.close()


async def _resolve_cronjob_pod(kube: Kube, run: Runner) -> Any:
    """Pod -> Job -> CronJob: the walk reads the Job, and takes the CronJob from its ownerReference."""
    cron = kube.get(kube.cronjob("nightly", suspend=True))
    job = kube.create(
        f"{BATCH}/namespaces/{kube.namespace}/jobs",
        {
            "metadata": {
                "name": "nightly-1",
                "ownerReferences": [
                    {
                        "apiVersion": cron["apiVersion"],
                        "kind": "CronJob",
                        "name": "nightly",
                        "uid": cron["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox"}]}
                }
            },
        },
    )
    pod = kube.wait_for("the Job's pod", lambda: kube.pods(f"job-name={job['metadata']['name']}"))[0]
    out = await run("resolve_owner", {"namespace": kube.namespace, "pod": pod["metadata"]["name"]})
    assert (out["kind"], out["name"], out["uid"]) == ("CronJob", "nightly", cron["metadata"]["uid"])
    assert out["api_version"] == cron["apiVersion"]
    assert [c["kind"] for c in out["chain"]] == ["Pod", "Job", "CronJob"]
    return out


async def test_each_action_needs_no_more_than_it_declares(per_action: tuple[dict[str, Runner], Kube]) -> None:
    runners, admin = per_action
    table = await scenarios()
    assert set(runners) - set(table) == {"get"}
    for action, run in sorted(runners.items()):
        admin.namespace = admin.create_namespace(f"cat-{action}")
        if action == "get":
            await _get(admin, run, ("Deployment", "Pod", "HorizontalPodAutoscaler"))
        else:
            await table[action](admin, run)
    admin.namespace = admin.create_namespace("cat-resolve-cronjob")
    await _resolve_cronjob_pod(admin, runners["resolve_owner"])
