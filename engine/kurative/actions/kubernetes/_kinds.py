"""The object kinds that the generic actions (get, list, label, annotate) may address.

Each kind maps to its API group, the versions to try in order of preference (the adapter picks the
first one the server serves, by discovery: CronJob is batch/v1 on new clusters and batch/v1beta1 on
1.20), its resource name and whether it is namespaced. Secrets are deliberately absent: playbooks
never need to read them, and the RBAC kurative asks for should not grant it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kurative.actions.base import RbacRule
from kurative.actions.kubernetes._common import KubeClient
from kurative.errors import PermanentActionError


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str
    versions: tuple[str, ...]
    resource: str
    namespaced: bool = True


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("Pod", "", ("v1",), "pods"),
        Kind("Service", "", ("v1",), "services"),
        Kind("ConfigMap", "", ("v1",), "configmaps"),
        Kind("ServiceAccount", "", ("v1",), "serviceaccounts"),
        Kind("Event", "", ("v1",), "events"),
        Kind("PersistentVolumeClaim", "", ("v1",), "persistentvolumeclaims"),
        Kind("Node", "", ("v1",), "nodes", namespaced=False),
        Kind("Namespace", "", ("v1",), "namespaces", namespaced=False),
        Kind("PersistentVolume", "", ("v1",), "persistentvolumes", namespaced=False),
        Kind("Deployment", "apps", ("v1",), "deployments"),
        Kind("StatefulSet", "apps", ("v1",), "statefulsets"),
        Kind("DaemonSet", "apps", ("v1",), "daemonsets"),
        Kind("ReplicaSet", "apps", ("v1",), "replicasets"),
        Kind("Job", "batch", ("v1",), "jobs"),
        Kind("CronJob", "batch", ("v1", "v1beta1"), "cronjobs"),
        Kind("HorizontalPodAutoscaler", "autoscaling", ("v1",), "horizontalpodautoscalers"),
        Kind("PodDisruptionBudget", "policy", ("v1", "v1beta1"), "poddisruptionbudgets"),
        Kind("NetworkPolicy", "networking.k8s.io", ("v1",), "networkpolicies"),
        Kind("Ingress", "networking.k8s.io", ("v1", "v1beta1"), "ingresses"),
        Kind("StorageClass", "storage.k8s.io", ("v1",), "storageclasses", namespaced=False),
    )
}

KIND_NAMES = tuple(KINDS)


def kind_of(name: object) -> Kind:
    if not isinstance(name, str) or name not in KINDS:
        raise PermanentActionError(f"unsupported kind {name!r}: use one of {', '.join(KIND_NAMES)}")
    return KINDS[name]


def rules_for(verbs: str, kinds: tuple[str, ...] = KIND_NAMES) -> tuple[RbacRule, ...]:
    """One rule per API group covering ``kinds``; cluster-scoped kinds get their own rules."""
    grouped: dict[tuple[str, bool], list[str]] = {}
    for name in kinds:
        k = KINDS[name]
        grouped.setdefault((k.group, not k.namespaced), []).append(k.resource)
    return tuple(
        RbacRule((group,), tuple(sorted(resources)), tuple(verbs.split()), cluster_scoped=cluster)
        for (group, cluster), resources in sorted(grouped.items())
    )


async def object_path(
    client: KubeClient, kind: Kind, namespace: str | None, name: str | None = None, sub: str | None = None
) -> tuple[str, str]:
    """(apiVersion, path) of a collection or of one object (and subresource) of ``kind``."""
    api_version, base = await client.resource_path(kind.group, kind.versions, kind.resource)
    path = base
    if kind.namespaced:
        if not namespace:
            raise PermanentActionError(f"{kind.kind} is namespaced: give the namespace")
        path += f"/namespaces/{namespace}"
    path += f"/{kind.resource}"
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return api_version, path
