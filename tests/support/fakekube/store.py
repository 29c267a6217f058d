"""The state of the fake API server: objects kept the way Kubernetes keeps them.

Every object gets a uid, a resourceVersion from one cluster-wide counter, a generation that grows when
its spec changes, and a creationTimestamp. Writes with a stale resourceVersion fail with 409, creates
of an existing name with 409 AlreadyExists, invalid objects with 422 (checked against the strict
schemas of kubernetes-validate plus the handful of rules the real server adds), and ``dryRun=All``
returns the result without storing it. A few controllers run synchronously after each write, doing
what kube-controller-manager does on the real test server: Deployments get ReplicaSets with revision
annotations, ReplicaSets, StatefulSets and DaemonSets get Pods, PodDisruptionBudgets get their
status, deletion cascades to dependents. Nothing schedules or runs pods: as on the real test server,
pods stay Pending until a test binds them (``pods/binding``) and sets their status.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.fakekube import patching
from tests.support.fakekube.schemas import SchemaNode, validation_errors
from tests.support.fakekube.selectors import (
    SelectorError,
    match_label_selector,
    parse_field_selector,
    parse_label_selector,
)

Obj = dict[str, Any]
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
REVISION = "deployment.kubernetes.io/revision"
MIRROR = "kubernetes.io/config.mirror"
NOT_READY = "node.kubernetes.io/not-ready"
# Tolerations the DaemonSet controller adds to every daemon pod.
DAEMON_TOLERATIONS = (
    {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
STALE = "the object has been modified; please apply your changes to the latest version and try again"
MEDIA_TYPES = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
)
DNS_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
    r"is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    field_labels: frozenset[str] = frozenset({"metadata.name", "metadata.namespace"})

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` or ``pods``, as messages of the real server name a resource."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


_POD_FIELDS = frozenset(
    {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "spec.restartPolicy"}
)
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("status", "finalize"),
        frozenset({"metadata.name", "status.phase"}),
    ),
    ResourceType(
        "", "v1", "nodes", "Node", False, ("status",), frozenset({"metadata.name", "spec.unschedulable"})
    ),
    ResourceType("", "v1", "pods", "Pod", True, ("status", "eviction", "binding", "log"), _POD_FIELDS),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        True,
        (),
        frozenset(
            {
                "metadata.name",
                "metadata.namespace",
                "involvedObject.name",
                "involvedObject.kind",
                "involvedObject.uid",
                "reason",
                "type",
            }
        ),
    ),
    ResourceType("", "v1", "services", "Service", True, ("status",)),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("status",)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("status",)),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", True, ("status",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("status", "scale")),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("status", "scale")),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("status",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("status", "scale")),
    ResourceType("batch", "v1", "jobs", "Job", True, ("status",)),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("status",)),
    ResourceType(
        "autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)
    ),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("status",)),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("status",)),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
)
BY_PATH = {(r.group, r.version, r.resource): r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}


class ApiStatus(Exception):
    """An error answer, rendered as a ``Status`` body shaped like the real server's."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            # StatusDetails' name and group are omitempty: the real server leaves empty ones out
            status["details"] = {
                k: v for k, v in self.details.items() if not (k in ("name", "group") and v == "")
            }
        return status


def not_found(rt: ResourceType, name: str) -> ApiStatus:
    return ApiStatus(
        404,
        "NotFound",
        f'{rt.qualified} "{name}" not found',
        {"name": name, "group": rt.group, "kind": rt.resource},
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiStatus:
    text = ", ".join(f"{field}: {message}" if field else message for field, message in causes)
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiStatus(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": rt.group,
            "kind": rt.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiStatus:
    return ApiStatus(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        {"name": name, "group": rt.group, "kind": rt.resource},
    )


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return "".join(c for c in digest if c in "bcdfghjklmnpqrstvwxz2456789")[:10]


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _controller_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _owner_ref(owner: Obj, kind: str, api_version: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def parse_quantity(text: Any) -> float:
    """A Kubernetes quantity (500m, 2, 1Gi, 10M) as a number of base units."""
    value = str(text)
    suffixes = {
        "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
        "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3,
    }  # fmt: skip
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


class Store:
    """All objects of one fake cluster, guarded by one lock (the server and tests share it)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[ResourceType, dict[tuple[str, str], Obj]] = {rt: {} for rt in RESOURCES}
        self._rv = 1000
        self.logs: dict[tuple[str, str, str], str] = {}
        self._reconciling = False
        # Deployments (namespace, name) whose controller lags, for tests only: it has made the new
        # ReplicaSet but not yet written that revision to the Deployment (on a real cluster these are
        # two writes, and a reader can come in between).
        self.lagging_revisions: set[tuple[str, str]] = set()
        for name in ("default", "kube-system", "kube-public"):
            self.create(
                BY_KIND["Namespace"],
                "",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

    # --- reads ---------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self._lock:
            found = self._objects[rt].get((namespace, name))
            if found is None:
                raise not_found(rt, name)
            return copy.deepcopy(found)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> Obj:
        try:
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.field_labels)
        except SelectorError as exc:
            raise ApiStatus(400, "BadRequest", str(exc)) from exc
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (ns, _name), obj in sorted(self._objects[rt].items())
                if (namespace is None or ns == namespace) and labels(_labels(obj)) and fields(obj)
            ]
            rv = str(self._rv)
        if limit:
            items = items[:limit]
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    def items(self, rt: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        with self._lock:
            found = [obj for (ns, _n), obj in sorted(self._objects[rt].items()) if namespace in (None, ns)]
        yield from found

    # --- writes --------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and ("", namespace) not in self._objects[BY_KIND["Namespace"]]:
            raise ApiStatus(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def create(self, rt: ResourceType, namespace: str, body: Obj, *, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        meta = obj.setdefault("metadata", {})
        with self._lock:
            if rt.namespaced:
                if meta.get("namespace") not in (None, namespace):
                    raise ApiStatus(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace on the request",
                    )
                meta["namespace"] = namespace
                self._check_namespace(rt, namespace)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            name = meta.get("name") or ""
            if (meta.get("namespace", ""), name) in self._objects[rt]:
                raise ApiStatus(
                    409,
                    "AlreadyExists",
                    f'{rt.qualified} "{name}" already exists',
                    {"name": name, "group": rt.group, "kind": rt.resource},
                )
            for key in ("resourceVersion", "uid", "deletionTimestamp", "generation"):
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.kind != "Pod":
                meta["generation"] = 1
            _default(rt, obj)
            self._validate(rt, obj, None)
            if dry_run:
                meta["resourceVersion"] = ""
                return obj
            return self._store(rt, obj)

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body of the request was in an unknown format")
        with self._lock:
            current = self._objects[rt].get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            meta = body.get("metadata") or {}
            if meta.get("name") not in (None, name):
                raise ApiStatus(
                    400, "BadRequest", "the name of the object does not match the name on the URL"
                )
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    STALE,
                )
            return self._commit(rt, current, copy.deepcopy(body), subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        with self._lock:
            current = self._objects[rt].get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            base = copy.deepcopy(current)
            try:
                if content_type.startswith("application/json-patch+json"):
                    updated = patching.json_patch(base, patch)
                elif content_type.startswith("application/merge-patch+json"):
                    updated = patching.merge_patch(base, patch)
                elif content_type.startswith("application/strategic-merge-patch+json"):
                    updated = patching.strategic_merge_patch(
                        base, patch, SchemaNode.for_kind(rt.kind, rt.api_version)
                    )
                else:
                    raise ApiStatus(
                        415,
                        "UnsupportedMediaType",
                        MEDIA_TYPES,
                    )
            except patching.PatchError as exc:
                raise invalid(rt, name, [("", str(exc))]) from exc
            if not isinstance(updated, dict):
                raise ApiStatus(400, "BadRequest", "the patch did not produce an object")
            wanted_rv = (updated.get("metadata") or {}).get("resourceVersion")
            if wanted_rv != current["metadata"]["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    STALE,
                )
            return self._commit(rt, current, updated, subresource, dry_run)

    def _commit(
        self, rt: ResourceType, current: Obj, updated: Obj, subresource: str | None, dry_run: bool
    ) -> Obj:
        name = current["metadata"]["name"]
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = updated.get("status")
            if merged["status"] is None:
                merged.pop("status")
            if rt.kind == "Namespace" or rt.kind == "Node":
                merged["metadata"] = {
                    **merged["metadata"],
                    **{
                        k: v
                        for k, v in (updated.get("metadata") or {}).items()
                        if k in ("labels", "annotations")
                    },
                }
            updated = merged
        elif rt.has_status:
            if current.get("status") is not None:
                updated["status"] = copy.deepcopy(current["status"])
            else:
                updated.pop("status", None)
        meta = updated.setdefault("metadata", {})
        old_meta = current["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            # as ValidateObjectMetaUpdate: a write meant for an earlier object of this name fails
            raise invalid(rt, name, [("metadata.uid", f'Invalid value: "{meta["uid"]}": field is immutable')])
        for key in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if meta.get("name") != name:
            raise invalid(rt, name, [("metadata.name", "Invalid value: field is immutable")])
        updated["apiVersion"], updated["kind"] = rt.api_version, rt.kind
        if rt.kind != "Pod" and updated.get("spec") != current.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._validate(rt, updated, current)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if updated == current:
            return copy.deepcopy(current)  # no change: the real server keeps the resourceVersion too
        if dry_run:
            return updated
        return self._store(rt, updated)

    def _store(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store ``obj`` under a new resourceVersion, let the controllers react, answer what is stored."""
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        key = (meta.get("namespace", ""), meta["name"])
        self._objects[rt][key] = obj
        self._reconcile()
        return copy.deepcopy(self._objects[rt].get(key, obj))

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        options = options or {}
        with self._lock:
            current = self._objects[rt].get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            pre = options.get("preconditions") or {}
            meta = current["metadata"]
            # checked by rest.BeforeDelete, which names the kind where other conflicts name the resource
            kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
            for field, what, hint in (
                ("uid", "UID", "deleted and then recreated"),
                ("resourceVersion", "ResourceVersion", "modified"),
            ):
                if pre.get(field) and pre[field] != meta[field]:
                    raise ApiStatus(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {kind} "{name}": '
                        f"the {what} in the precondition ({pre[field]}) does not match the {what} in record "
                        f"({meta[field]}). The object might have been {hint}",
                        {"name": name, "group": rt.group, "kind": rt.kind},
                    )
            if dry_run:
                return copy.deepcopy(current)
            grace = options.get("gracePeriodSeconds")
            if rt.kind == "Pod":
                status = current.get("status") or {}
                if grace is None:
                    grace = (current.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                graceful = bool((current.get("spec") or {}).get("nodeName")) and status.get("phase") not in (
                    "Succeeded",
                    "Failed",
                )
                if graceful and grace and grace > 0:
                    # As on a cluster without kubelets: a bound pod waits for a kubelet that never comes.
                    if not meta.get("deletionTimestamp"):
                        meta["deletionTimestamp"] = now()
                        meta["deletionGracePeriodSeconds"] = grace
                        meta["resourceVersion"] = self._next_rv()
                        self._reconcile()
                    return copy.deepcopy(current)
            policy = options.get("propagationPolicy") or ("Orphan" if rt.kind == "Job" else "Background")
            del self._objects[rt][(namespace, name)]
            self._collect(meta["uid"], orphan=policy == "Orphan")
            if rt.kind == "Namespace":
                for other in RESOURCES:
                    if other.namespaced:
                        for key in [k for k in self._objects[other] if k[0] == name]:
                            del self._objects[other][key]
            self._next_rv()
            self._reconcile()
            if rt.kind == "Pod":
                return current
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.resource, "uid": meta["uid"]},
            }

    def _collect(self, owner_uid: str, *, orphan: bool) -> None:
        for rt in RESOURCES:
            for key, obj in list(self._objects[rt].items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                if orphan:
                    obj["metadata"]["ownerReferences"] = [
                        r for r in refs if r.get("uid") != owner_uid
                    ] or None
                    if obj["metadata"]["ownerReferences"] is None:
                        del obj["metadata"]["ownerReferences"]
                    obj["metadata"]["resourceVersion"] = self._next_rv()
                else:
                    del self._objects[rt][key]
                    self._collect(obj["metadata"]["uid"], orphan=False)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        name = (obj.get("metadata") or {}).get("name") or ""
        problems: list[tuple[str, str]] = []
        pattern = _DNS_LABEL if rt.kind in ("Namespace", "Service") else _DNS_SUBDOMAIN
        if not name:
            problems.append(("metadata.name", "Required value: name or generateName is required"))
        elif len(name) > 253 or not pattern.match(name):
            problems.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": {DNS_MESSAGE}',
                )
            )
        problems += validation_errors(obj)
        problems += _metadata_problems(obj.get("metadata") or {})
        spec = obj.get("spec") or {}
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            problems.append(
                ("spec.replicas", f"Invalid value: {spec['replicas']}: must be greater than or equal to 0")
            )
        if rt.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and isinstance(
            spec.get("template"), dict
        ):
            template_labels = (spec["template"].get("metadata") or {}).get("labels") or {}
            if not match_label_selector(spec.get("selector"), template_labels):
                problems.append(
                    (
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    )
                )
        if (
            rt.kind == "HorizontalPodAutoscaler"
            and isinstance(spec.get("maxReplicas"), int)
            and spec["maxReplicas"] < (spec.get("minReplicas") or 1)
        ):
            problems.append(
                ("spec.maxReplicas", f"Invalid value: {spec['maxReplicas']}: must be >= `minReplicas`")
            )
        if rt.kind == "PersistentVolumeClaim" and old is not None:
            problems += self._pvc_update_problems(obj, old)
        if problems:
            raise invalid(rt, name, problems)

    def _pvc_update_problems(self, obj: Obj, old: Obj) -> list[tuple[str, str]]:
        def size(o: Obj) -> float:
            return parse_quantity(
                (((o.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
            )

        new_spec = {k: v for k, v in (obj.get("spec") or {}).items() if k != "resources"}
        old_spec = {k: v for k, v in (old.get("spec") or {}).items() if k != "resources"}
        if new_spec != old_spec:
            return [
                (
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests for bound claims",
                )
            ]
        if size(obj) == size(old):
            return []
        if (old.get("status") or {}).get("phase") != "Bound":
            return [
                (
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests for bound claims",
                )
            ]
        if size(obj) < size(old):
            return [
                ("spec.resources.requests.storage", "Forbidden: field can not be less than previous value")
            ]
        class_name = (old.get("spec") or {}).get("storageClassName")
        sc = self._objects[BY_KIND["StorageClass"]].get(("", class_name or ""))
        if sc is None or not sc.get("allowVolumeExpansion"):
            raise ApiStatus(
                403,
                "Forbidden",
                f'persistentvolumeclaims "{old["metadata"]["name"]}" is forbidden: '
                "only dynamically provisioned pvc "
                "can be resized and the storageclass that provisions the pvc must support resize",
                {"name": old["metadata"]["name"], "kind": "persistentvolumeclaims"},
            )
        return []

    # --- subresources --------------------------------------------------------------------------

    def scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.get(rt, namespace, name)
        selector = ",".join(
            f"{k}={v}"
            for k, v in sorted(((obj["spec"].get("selector") or {}).get("matchLabels") or {}).items())
        )
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector},
        }

    def bind(self, namespace: str, name: str, body: Obj, *, dry_run: bool = False) -> Obj:
        rt = BY_KIND["Pod"]
        with self._lock:
            pod = self._objects[rt].get((namespace, name))
            if pod is None:
                raise not_found(rt, name)
            target = (body.get("target") or {}).get("name")
            if not target:
                raise invalid(BY_KIND["Pod"], name, [("target.name", "Required value")])
            if pod["spec"].get("nodeName"):
                raise conflict(
                    rt, name, f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
                )
            if not dry_run:
                pod["spec"]["nodeName"] = target
                status = pod.setdefault("status", {})
                status["conditions"] = [
                    c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
                ] + [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]
                pod["metadata"]["resourceVersion"] = self._next_rv()
                self._reconcile()
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def evict(self, namespace: str, name: str, body: Obj, *, dry_run: bool = False) -> Obj:
        rt = BY_KIND["Pod"]
        pdb_rt = BY_KIND["PodDisruptionBudget"]
        with self._lock:
            pod = self._objects[rt].get((namespace, name))
            if pod is None:
                raise not_found(rt, name)
            options = dict(body.get("deleteOptions") or {})
            if dry_run:
                options["dryRun"] = ["All"]
            phase = (pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed", "Pending") and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                budgets = [
                    pdb
                    for pdb in self._objects[pdb_rt].values()
                    if pdb["metadata"]["namespace"] == namespace
                    and match_label_selector((pdb.get("spec") or {}).get("selector"), _labels(pod))
                ]
                if len(budgets) > 1:
                    raise ApiStatus(
                        500,
                        "InternalError",
                        "This pod has more than one PodDisruptionBudget, "
                        "which the eviction subresource does not support.",
                    )
                if budgets:
                    pdb = budgets[0]
                    status = pdb.get("status") or {}
                    if status.get("disruptionsAllowed", 0) <= 0:
                        raise ApiStatus(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            {
                                "causes": [
                                    {
                                        "reason": "DisruptionBudget",
                                        "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                        f"{status.get('desiredHealthy', 0)} healthy pods and has "
                                        f"{status.get('currentHealthy', 0)} currently",
                                    }
                                ]
                            },
                        )
                    if not dry_run:
                        status["disruptionsAllowed"] -= 1
                        status.setdefault("disruptedPods", {})[name] = now()
                        pdb["metadata"]["resourceVersion"] = self._next_rv()
            if not dry_run:
                self.delete(rt, namespace, name, options)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def log(self, namespace: str, name: str, container: str | None, tail: int | None, previous: bool) -> str:
        pod = self.get(BY_KIND["Pod"], namespace, name)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        if container is None:
            if len(names) != 1:
                raise ApiStatus(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            raise ApiStatus(400, "BadRequest", f"container {container} is not valid for pod {name}")
        text = self.logs.get((namespace, name, container + ("#previous" if previous else "")), "")
        if previous and not text:
            raise ApiStatus(
                400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found'
            )
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail else ""
        return text

    # --- controllers ---------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Run the controllers to a fixed point (they only write when something must change)."""
        if self._reconciling:
            return
        self._reconciling = True
        try:
            for _round in range(10):
                before = self._rv
                self._deployments()
                self._replicasets()
                self._statefulsets()
                self._daemonsets()
                self._disruption_budgets()
                if self._rv == before:
                    break
        finally:
            self._reconciling = False

    def _put(self, rt: ResourceType, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[rt][(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj

    def _set_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        if obj.get("status") != status:
            obj["status"] = status
            self._put(rt, obj)

    def _owned(self, rt: ResourceType, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        namespace = owner["metadata"]["namespace"]
        return [
            o
            for (ns, _n), o in sorted(self._objects[rt].items())
            if ns == namespace and _controller_uid(o) == uid
        ]

    def _new_pod(self, owner: Obj, kind: str, name: str, extra_labels: dict[str, str]) -> Obj:
        template = copy.deepcopy(owner["spec"]["template"])
        meta = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": owner["metadata"]["namespace"],
                "labels": {**(meta.get("labels") or {}), **extra_labels},
                "ownerReferences": [_owner_ref(owner, kind, "apps/v1")],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now(),
            },
            "spec": template.get("spec") or {},
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = meta["annotations"]
        _default(BY_KIND["Pod"], pod)
        return pod

    def _deployments(self) -> None:
        drt, rsrt = BY_KIND["Deployment"], BY_KIND["ReplicaSet"]
        for dep in list(self._objects[drt].values()):
            spec = dep["spec"]
            template = spec["template"]
            owned = self._owned(rsrt, dep)
            revisions = [int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned]
            top = max(revisions, default=0)

            def bare(rs_template: Obj) -> Obj:
                t = copy.deepcopy(rs_template)
                labels = (t.get("metadata") or {}).get("labels") or {}
                labels.pop("pod-template-hash", None)
                return t

            current = next((rs for rs in owned if bare(rs["spec"]["template"]) == template), None)
            if current is None:
                digest = _hash(template)
                labels = {
                    **((template.get("metadata") or {}).get("labels") or {}),
                    "pod-template-hash": digest,
                }
                rs_template = copy.deepcopy(template)
                rs_template.setdefault("metadata", {})["labels"] = labels
                current = {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{dep['metadata']['name']}-{digest}",
                        "namespace": dep["metadata"]["namespace"],
                        "labels": labels,
                        "annotations": {REVISION: str(top + 1)},
                        "ownerReferences": [_owner_ref(dep, "Deployment", "apps/v1")],
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now(),
                        "generation": 1,
                    },
                    "spec": {
                        "replicas": 0,
                        "selector": {
                            "matchLabels": {
                                **((spec.get("selector") or {}).get("matchLabels") or {}),
                                "pod-template-hash": digest,
                            }
                        },
                        "template": rs_template,
                    },
                }
                self._put(rsrt, current)
                owned.append(current)
            elif int((current["metadata"].get("annotations") or {}).get(REVISION, "0")) != top:
                current["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)
                self._put(rsrt, current)
            if not spec.get("paused"):
                for rs in owned:
                    want = spec.get("replicas", 1) if rs is current else 0
                    if rs["spec"].get("replicas") != want:
                        rs["spec"]["replicas"] = want
                        rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
                        self._put(rsrt, rs)
            revision = (current["metadata"].get("annotations") or {}).get(REVISION)
            annotations = dep["metadata"].setdefault("annotations", {})
            lagging = (dep["metadata"]["namespace"], dep["metadata"]["name"]) in self.lagging_revisions
            if annotations.get(REVISION) != revision and not lagging:
                annotations[REVISION] = revision
                self._put(drt, dep)
            stats = [rs.get("status") or {} for rs in owned]
            new_status = current.get("status") or {}
            desired = spec.get("replicas", 1)
            available = sum(s.get("availableReplicas", 0) for s in stats)
            status: Obj = {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": sum(s.get("replicas", 0) for s in stats),
                "updatedReplicas": new_status.get("replicas", 0),
                "readyReplicas": sum(s.get("readyReplicas", 0) for s in stats),
                "availableReplicas": available,
                "unavailableReplicas": max(0, desired - available),
            }
            status = {k: v for k, v in status.items() if v or k in ("observedGeneration",)}
            previous_conditions = (dep.get("status") or {}).get("conditions")
            conditions = [
                {
                    "type": "Available",
                    "status": "True" if available >= desired else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available >= desired
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available >= desired
                    else "Deployment does not have minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if available >= desired else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{current["metadata"]["name"]}" is progressing.',
                },
            ]
            if previous_conditions:
                by_type = {c["type"]: c for c in previous_conditions}
                for c in conditions:
                    old = by_type.get(c["type"], {})
                    same = {k: old.get(k) for k in ("status", "reason", "message")} == {
                        k: c[k] for k in ("status", "reason", "message")
                    }
                    c["lastUpdateTime"] = old.get("lastUpdateTime") if same else now()
                    c["lastTransitionTime"] = (
                        old.get("lastTransitionTime") if old.get("status") == c["status"] else now()
                    )
            else:
                for c in conditions:
                    c["lastUpdateTime"] = c["lastTransitionTime"] = now()
            status["conditions"] = conditions
            self._set_status(drt, dep, status)

    def _replicasets(self) -> None:
        rsrt, prt = BY_KIND["ReplicaSet"], BY_KIND["Pod"]
        for rs in list(self._objects[rsrt].values()):
            pods = []
            for pod in self._owned(prt, rs):
                if not match_label_selector(rs["spec"].get("selector"), _labels(pod)):
                    # As the controller does: a pod relabelled out of the selector is released.
                    pod["metadata"].pop("ownerReferences", None)
                    self._put(prt, pod)
                elif not pod["metadata"].get("deletionTimestamp"):
                    pods.append(pod)
            want = rs["spec"].get("replicas", 1)
            while len(pods) < want:
                pod = self._new_pod(
                    rs, "ReplicaSet", f"{rs['metadata']['name']}-{secrets.token_hex(3)[:5]}", {}
                )
                pod["metadata"]["ownerReferences"][0]["kind"] = "ReplicaSet"
                self._put(prt, pod)
                pods.append(pod)
            while len(pods) > want:
                victim = sorted(pods, key=lambda p: (pod_ready(p), bool(p["spec"].get("nodeName"))))[0]
                pods.remove(victim)
                del self._objects[prt][(victim["metadata"]["namespace"], victim["metadata"]["name"])]
            ready = sum(1 for p in pods if pod_ready(p))
            status = {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            self._set_status(rsrt, rs, {k: v for k, v in status.items() if v or k == "replicas"})

    def _statefulsets(self) -> None:
        srt, prt = BY_KIND["StatefulSet"], BY_KIND["Pod"]
        for sts in list(self._objects[srt].values()):
            name = sts["metadata"]["name"]
            revision = f"{name}-{_hash(sts['spec']['template'])}"
            want = sts["spec"].get("replicas", 1)
            pods = {
                p["metadata"]["name"]: p
                for p in self._owned(prt, sts)
                if not p["metadata"].get("deletionTimestamp")
            }
            for index in range(want):
                pod_name = f"{name}-{index}"
                pod = pods.get(pod_name)
                if pod is not None and _labels(pod).get("controller-revision-hash") != revision:
                    del self._objects[prt][(pod["metadata"]["namespace"], pod_name)]
                    pod = None
                if pod is None:
                    pod = self._new_pod(
                        sts,
                        "StatefulSet",
                        pod_name,
                        {
                            "controller-revision-hash": revision,
                            "statefulset.kubernetes.io/pod-name": pod_name,
                        },
                    )
                    pod["metadata"]["ownerReferences"][0]["kind"] = "StatefulSet"
                    self._put(prt, pod)
                    pods[pod_name] = pod
            for pod_name in [n for n in pods if int(n.rsplit("-", 1)[1]) >= want]:
                del self._objects[prt][(sts["metadata"]["namespace"], pod_name)]
                del pods[pod_name]
            ready = sum(1 for p in pods.values() if pod_ready(p))
            status = {
                "observedGeneration": sts["metadata"]["generation"],
                "replicas": len(pods),
                "readyReplicas": ready,
                "currentReplicas": len(pods),
                "updatedReplicas": len(pods),
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
                "availableReplicas": ready,
            }
            self._set_status(
                srt, sts, {k: v for k, v in status.items() if v or k in ("replicas", "collisionCount")}
            )

    def _daemonsets(self) -> None:
        dsrt, prt, nrt = BY_KIND["DaemonSet"], BY_KIND["Pod"], BY_KIND["Node"]
        nodes = list(self._objects[nrt].values())
        for ds in list(self._objects[dsrt].values()):
            pod_spec = ds["spec"]["template"].get("spec") or {}
            selector = pod_spec.get("nodeSelector") or {}
            tolerations = [*(pod_spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
            targets = [
                n["metadata"]["name"]
                for n in nodes
                if all(_labels(n).get(k) == v for k, v in selector.items())
                and all(
                    _tolerated(t, tolerations)
                    for t in (n.get("spec") or {}).get("taints") or []
                    if t.get("effect") in ("NoSchedule", "NoExecute")
                )
            ]
            revision = _hash(ds["spec"]["template"])
            pods = [p for p in self._owned(prt, ds) if not p["metadata"].get("deletionTimestamp")]
            by_node: dict[str, Obj] = {}
            for pod in pods:
                node = _affinity_node(pod)
                if (
                    node not in targets
                    or node in by_node
                    or _labels(pod).get("controller-revision-hash") != revision
                ):
                    del self._objects[prt][(pod["metadata"]["namespace"], pod["metadata"]["name"])]
                else:
                    by_node[node] = pod
            for node in targets:
                if node not in by_node:
                    pod = self._new_pod(
                        ds,
                        "DaemonSet",
                        f"{ds['metadata']['name']}-{secrets.token_hex(3)[:5]}",
                        {"controller-revision-hash": revision},
                    )
                    pod["metadata"]["ownerReferences"][0]["kind"] = "DaemonSet"
                    pod["spec"]["affinity"] = {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchFields": [
                                            {"key": "metadata.name", "operator": "In", "values": [node]}
                                        ]
                                    }
                                ]
                            }
                        }
                    }
                    self._put(prt, pod)
                    by_node[node] = pod
            ready = sum(1 for p in by_node.values() if pod_ready(p))
            scheduled = len(
                by_node
            )  # counted by target node (affinity), bound or not, as the controller does
            status = {
                "currentNumberScheduled": scheduled,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": len(targets),
                "numberReady": ready,
                "observedGeneration": ds["metadata"]["generation"],
                "updatedNumberScheduled": scheduled,
                "numberAvailable": ready,
                "numberUnavailable": len(targets) - ready,
            }
            self._set_status(
                dsrt,
                ds,
                {
                    k: v
                    for k, v in status.items()
                    if v
                    or k
                    in (
                        "currentNumberScheduled",
                        "numberMisscheduled",
                        "desiredNumberScheduled",
                        "numberReady",
                    )
                },
            )

    def _disruption_budgets(self) -> None:
        brt, prt = BY_KIND["PodDisruptionBudget"], BY_KIND["Pod"]
        for pdb in list(self._objects[brt].values()):
            spec = pdb.get("spec") or {}
            pods = [
                p
                for p in self.items(prt, pdb["metadata"]["namespace"])
                if match_label_selector(spec.get("selector"), _labels(p))
            ]
            expected = len(pods)
            healthy = sum(1 for p in pods if pod_ready(p))
            if "minAvailable" in spec:
                desired = _resolve_int_or_percent(spec["minAvailable"], expected, round_up=True)
            elif "maxUnavailable" in spec:
                desired = max(
                    0, expected - _resolve_int_or_percent(spec["maxUnavailable"], expected, round_up=True)
                )
            else:
                desired = expected
            old = pdb.get("status") or {}
            disrupted = {
                k: v
                for k, v in (old.get("disruptedPods") or {}).items()
                if any(p["metadata"]["name"] == k for p in pods)
            }
            healthy -= sum(1 for p in pods if p["metadata"]["name"] in disrupted and pod_ready(p))
            status = {
                "observedGeneration": pdb["metadata"].get("generation", 1),
                "disruptionsAllowed": max(0, healthy - desired),
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
            }
            if disrupted:
                status["disruptedPods"] = disrupted
            self._set_status(brt, pdb, status)


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def _key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"prefix part {DNS_MESSAGE}"
    if not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return None


def _metadata_problems(meta: Obj) -> list[tuple[str, str]]:
    """The label and annotation rules the real server checks beyond the schema."""
    problems = []
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            # annotation keys are checked lower-cased (as ValidateAnnotations does), label keys as written
            why = _key_problem(str(key).lower() if field == "annotations" else str(key))
            if why:
                problems.append((f"metadata.{field}", f'Invalid value: "{key}": {why}'))
            elif field == "labels" and not _LABEL_VALUE.match(str(value)):
                problems.append(
                    (
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid label must be an empty string or '
                        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    )
                )
    return problems


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint.get("effect")):
            continue
        if toleration.get("operator") == "Exists":
            if toleration.get("key") in (None, "", taint.get("key")):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


def _affinity_node(pod: Obj) -> str:
    terms = (
        ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or [{}]
    for field in terms[0].get("matchFields") or []:
        if field.get("key") == "metadata.name":
            return str(field["values"][0])
    return str(pod["spec"].get("nodeName") or "")


def _resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        fraction = int(value[:-1]) * total / 100
        return int(-(-fraction // 1)) if round_up else int(fraction)
    return int(value)


def _default(rt: ResourceType, obj: Obj) -> None:
    """The defaults the real API server fills in that the actions and tests rely on."""
    spec = obj.get("spec")
    if rt.kind == "Pod" and isinstance(spec, dict):
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    elif rt.kind in ("Deployment", "StatefulSet", "ReplicaSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        if rt.kind == "Deployment":
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        if rt.kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    elif rt.kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("suspend", False)
        spec.setdefault("concurrencyPolicy", "Allow")
    elif rt.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif rt.kind == "Node":
        # As the TaintNodesByCondition admission plugin does until a kubelet reports the node ready.
        node_spec = obj.setdefault("spec", {})
        taints = node_spec.setdefault("taints", [])
        if not any(t.get("key") == NOT_READY for t in taints):
            taints.append({"key": NOT_READY, "effect": "NoSchedule"})
    elif rt.kind == "PersistentVolumeClaim":
        obj.setdefault("status", {"phase": "Pending"})
