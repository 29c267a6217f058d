"""Network actions: quarantine a pod (label it and isolate it with a deny-all NetworkPolicy)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    check_name,
    check_target,
    client_for,
    declare_action,
    dry_run_query,
    owner_of,
    patch,
    read,
    rule,
    target_params,
)
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, obj, string
from kurative.errors import ObjectConflict, PermanentActionError

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

QUARANTINE_LABEL = "kurative.io/quarantine"

declare_action(
    name="quarantine_pod",
    summary="Isolate a pod for forensics: label it and apply a deny-all ingress+egress NetworkPolicy.",
    params=target_params(
        "pod",
        {
            "detach": boolean(
                "also remove the pod from its ReplicaSet (relabel) so that a replacement starts; "
                "a pod of another controller is only isolated",
                False,
            ),
        },
        key="pod",
    ),
    output=obj(
        {
            "pod": string("name of the pod"),
            "policy": string("name of the NetworkPolicy"),
            "label": string(f"the {QUARANTINE_LABEL} label value"),
        }
    ),
    risk=Risk.HIGH,
    repeat_safety=RepeatSafety.IDEMPOTENT,
    rbac=(
        rule("", "pods", "get patch"),
        rule("apps", "replicasets", "get"),
        rule("networking.k8s.io", "networkpolicies", "get create"),
    ),
)


def quarantine_value(pod: str) -> str:
    """The label value marking one pod: its name when that is a valid label value, else a digest."""
    if _LABEL_VALUE.fullmatch(pod):
        return pod
    return "pod-" + hashlib.sha256(pod.encode()).hexdigest()[:16]


def policy_name(pod: str) -> str:
    digest = hashlib.sha256(pod.encode()).hexdigest()[:8]
    return (
        f"kurative-quarantine-{pod[:200].rstrip('-.')}-{digest}"
        if len(pod) > 200
        else f"kurative-quarantine-{pod}"
    )


def _is_replicaset(owner: Mapping[str, Any]) -> bool:
    """Whether an ownerReference names an apps/v1 ReplicaSet (not a custom kind of that name)."""
    return owner.get("kind") == "ReplicaSet" and str(owner.get("apiVersion") or "").startswith("apps/")


def _denies_all(spec: Mapping[str, Any]) -> bool:
    """Whether a NetworkPolicy spec isolates its pods both ways and lets nothing in or out."""
    kinds = spec.get("policyTypes") or []
    return sorted(kinds) == ["Egress", "Ingress"] and not spec.get("ingress") and not spec.get("egress")


@implement("kubernetes.quarantine_pod")
async def quarantine_pod(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, pod = check_target(ctx, params, "pod", key="pod")
    client = client_for(ctx)
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
    current = await read(client, path)
    value = quarantine_value(pod)
    labels: dict[str, Any] = {QUARANTINE_LABEL: value}
    owner = owner_of(current) or {}
    if params.get("detach") and _is_replicaset(owner):
        # Dropping the labels the ReplicaSet selects by makes it let go of the pod and start a
        # replacement, while the quarantined pod stays for forensics. Other controllers do not
        # (a StatefulSet cannot start a pod of the same name beside it).
        name = check_name(owner.get("name"), f"ReplicaSet name in the ownerReference of {pod}")
        owner_path = f"/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"
        selector = ((await read(client, owner_path)).get("spec") or {}).get("selector") or {}
        for key in selector.get("matchLabels") or {}:
            labels[key] = None
    policy = policy_name(pod)
    # The policy first: the pod is isolated before anything else about it changes.
    selector = {"matchLabels": {QUARANTINE_LABEL: value}}
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kurative"},
        },
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress", "Egress"],
        },
    }
    policies = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    try:
        await client.request("POST", policies, body=body, query=dry_run_query(ctx))
    except ObjectConflict:
        existing = (await read(client, f"{policies}/{policy}")).get("spec") or {}
        if existing.get("podSelector") != selector:
            raise PermanentActionError(
                f"NetworkPolicy {namespace}/{policy} exists but does not select the quarantined pod"
            ) from None
        if not _denies_all(existing):
            raise PermanentActionError(
                f"NetworkPolicy {namespace}/{policy} exists but is not deny-all (policyTypes Ingress and "
                "Egress, no rules): it would not isolate the pod; delete it or fix it, then run again"
            ) from None
    await patch(ctx, client, path, {"metadata": {"uid": current["metadata"]["uid"], "labels": labels}})
    return {"pod": pod, "policy": policy, "label": value}
