"""The Kubernetes catalogue is complete and every declaration is usable by lint, rbac and recovery."""

from __future__ import annotations

import json

import jsonschema
import pytest

from kurative.actions.base import RepeatSafety, Risk
from kurative.actions.kubernetes import CHECKS
from kurative.actions.registry import all_actions, get_action
from kurative.cli import main

KUBE = [spec for spec in all_actions() if spec.name.startswith("kubernetes.")]
IDS = [spec.name for spec in KUBE]


def test_at_least_25_kubernetes_actions_including_the_brief() -> None:
    names = {spec.name.removeprefix("kubernetes.") for spec in KUBE}
    assert len(names) >= 25
    assert {
        "delete_pod", "evict_pod", "pod_logs", "collect_diagnostics", "cleanup_failed_pods", "resolve_owner",
        "scale", "rollout_restart", "rollback_deployment", "set_resources", "wait_rollout", "patch_hpa",
        "cordon", "uncordon", "drain", "taint", "untaint", "suspend_cronjob", "delete_job", "expand_pvc",
        "quarantine_pod", "label", "annotate", "get",
    } <= names  # fmt: skip


@pytest.mark.parametrize("spec", KUBE, ids=IDS)
def test_declaration_is_complete(spec) -> None:  # type: ignore[no-untyped-def]
    jsonschema.Draft202012Validator.check_schema(spec.params)
    jsonschema.Draft202012Validator.check_schema(spec.output)
    assert spec.params["type"] == "object"
    assert spec.params["additionalProperties"] is False  # typos in params are lint errors
    assert spec.output["properties"]
    assert spec.summary
    assert spec.rbac, "every Kubernetes action declares the RBAC it needs"
    assert spec.risk in Risk
    assert spec.repeat_safety is not RepeatSafety.UNSAFE
    assert spec.dry_run, "every Kubernetes action supports server-side dryRun=All"
    assert spec.implemented
    for name, schema in spec.params["properties"].items():
        assert schema.get("description") or schema.get("enum"), f"{spec.name}.{name} has no description"


@pytest.mark.parametrize("spec", KUBE, ids=IDS)
def test_namespaced_actions_take_a_namespace(spec) -> None:  # type: ignore[no-untyped-def]
    if any(not rule.cluster_scoped for rule in spec.rbac):
        assert "namespace" in spec.params["properties"]


@pytest.mark.parametrize(
    "name", ["drain", "rollback_deployment", "delete_job", "quarantine_pod", "expand_pvc"]
)
def test_high_risk_actions(name: str) -> None:
    spec = get_action(f"kubernetes.{name}")
    assert spec is not None
    assert spec.risk is Risk.HIGH


@pytest.mark.parametrize("spec", KUBE, ids=IDS)
def test_stamped_and_preconditioned_actions_can_answer_did_it_happen(spec) -> None:  # type: ignore[no-untyped-def]
    if spec.repeat_safety in (RepeatSafety.STAMPED, RepeatSafety.PRECONDITIONED):
        assert spec.name in CHECKS


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("kubernetes.resolve_owner", {"namespace": "${labels.namespace}", "pod": "${labels.pod}"}),
        ("kubernetes.rollout_restart", {"namespace": "shop", "kind": "Deployment", "name": "web"}),
        (
            "kubernetes.wait_rollout",
            {"namespace": "shop", "kind": "StatefulSet", "name": "db", "timeout": "5m"},
        ),
        (
            "kubernetes.scale",
            {"namespace": "shop", "kind": "Deployment", "name": "web", "replicas": 3, "max": 5},
        ),
        ("kubernetes.drain", {"node": "n1", "timeout": "10m", "force": True}),
    ],
)
def test_params_schemas_accept_what_playbooks_write(name: str, params: dict) -> None:
    spec = get_action(name)
    assert spec is not None
    jsonschema.validate(params, spec.params)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        (
            "kubernetes.scale",
            {"namespace": "shop", "kind": "Deployment", "name": "web"},
        ),  # neither replicas nor delta
        ("kubernetes.scale", {"namespace": "shop", "kind": "Job", "name": "web", "replicas": 1}),
        ("kubernetes.drain", {"node": "n1", "timeout": "soon"}),
        ("kubernetes.delete_pod", {"namespace": "shop", "pod": "web", "grace": 3}),
        ("kubernetes.taint", {"node": "n1", "key": "k", "effect": "NoWay"}),
    ],
)
def test_params_schemas_refuse_mistakes(name: str, params: dict) -> None:
    spec = get_action(name)
    assert spec is not None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(params, spec.params)


def test_actions_command_json_text_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actions", "--format", "json", "--prefix", "kubernetes."]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in listed] == IDS
    drain = next(a for a in listed if a["name"] == "kubernetes.drain")
    assert drain["risk"] == "high"
    assert drain["repeat_safety"] == "idempotent"
    assert {
        "apiGroups": [""],
        "resources": ["pods/eviction"],
        "verbs": ["create"],
        "clusterScoped": True,
    } in drain["rbac"]

    assert main(["actions"]) == 0
    text = capsys.readouterr().out
    assert "kubernetes.rollback_deployment  [high, stamped, dry-run]" in text
    assert "sleep  [low, idempotent, dry-run]" in text

    assert main(["actions", "--format", "markdown", "--prefix", "kubernetes."]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + len(KUBE)
    assert table[2].startswith("| `kubernetes.annotate` |")


async def test_check_effect_without_a_server() -> None:
    from kurative.actions.base import ActionContext
    from kurative.actions.kubernetes import Effect, check_effect

    ctx = ActionContext("exec-1", "step")
    assert await check_effect("kubernetes.cordon", ctx, {"node": "n1"}) is Effect.NOT_DONE  # idempotent
    assert await check_effect("kubernetes.no_such_action", ctx, {}) is Effect.UNKNOWN


@pytest.mark.parametrize(
    "name", ["get", "list", "pod_logs", "collect_diagnostics", "resolve_owner", "wait_rollout"]
)
def test_read_actions_ask_only_for_read_verbs(name: str) -> None:
    spec = get_action(f"kubernetes.{name}")
    assert spec is not None
    assert spec.risk is Risk.LOW
    assert {verb for rule in spec.rbac for verb in rule.verbs} <= {"get", "list", "watch"}
