"""The deploy manifests as the tests see them: rendered by Debian's kubectl 1.20, checked field by field.

``render(kubectl, target)`` runs ``kubectl kustomize`` (kubectl 1.20 embeds kustomize v2.0.3, the
oldest the manifests are written for) and returns the objects. ``restricted_violations`` checks a pod
spec against the Pod Security Standard "restricted" (v1.20 has no PodSecurity admission to do it)
plus what this project asks of its own pods; ``for_server`` adapts the objects to what a server
serves (the PodDisruptionBudget is policy/v1 in Git, policy/v1beta1 on a 1.20 server).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
TARGETS = {
    "single": KUSTOMIZE / "overlays" / "single",
    "ha": KUSTOMIZE / "overlays" / "ha",
    "own-playbooks": KUSTOMIZE / "examples" / "own-playbooks",
}
NAMESPACE = "kurative"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:kurative"
UID = 10001
PORT = 9095
# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def kubectl_run(kubectl: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """kubectl's stdout; an AssertionError with its stderr when it fails."""
    proc = subprocess.run(
        [str(kubectl), *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
    return proc.stdout


def render(kubectl: Path, target: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders for one of TARGETS."""
    out = kubectl_run(kubectl, "kustomize", str(TARGETS[target]))
    return [doc for doc in YAML(typ="safe").load_all(out) if doc]


def dump_all(docs: list[dict[str, Any]]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def for_server(docs: list[dict[str, Any]], *, serves_policy_v1: bool) -> list[dict[str, Any]]:
    """The objects as a server of that version takes them: PDB policy/v1beta1 before 1.21."""
    adapted = []
    for doc in docs:
        if doc["kind"] == "PodDisruptionBudget" and doc["apiVersion"] == "policy/v1" and not serves_policy_v1:
            adapted.append({**doc, "apiVersion": "policy/v1beta1"})
        else:
            adapted.append(doc)
    return adapted


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every object that holds a pod template (or is a Pod)."""
    for doc in docs:
        if doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]
        elif doc["kind"] in POD_TEMPLATE_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _probe_path(container: Mapping[str, Any], probe: str) -> str | None:
    found = container.get(probe) or {}
    return (found.get("httpGet") or {}).get("path")


def restricted_violations(spec: Mapping[str, Any], *, shutdown_timeout: float) -> list[str]:
    """What breaks the "restricted" Pod Security Standard, or this project's rules for its pods."""
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: type {sorted(kinds - ALLOWED_VOLUMES)} is not allowed")
    if pod_sc.get("sysctls"):
        problems.append("sysctls are set")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > shutdown_timeout:
        problems.append(
            f"terminationGracePeriodSeconds {grace} is not above shutdownTimeout {shutdown_timeout}"
        )
    containers = [
        *(("initContainer", c) for c in spec.get("initContainers") or []),
        *(("container", c) for c in spec.get("containers") or []),
    ]
    if not spec.get("containers"):
        problems.append("no containers")
    mounts_needed = {"/tmp"}
    for what, container in containers:
        name = f"{what} {container.get('name')}"
        sc = container.get("securityContext") or {}

        def effective(key: str, sc: Mapping[str, Any] = sc) -> Any:
            return sc[key] if key in sc else pod_sc.get(key)

        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") != UID or effective("runAsGroup") != UID:
            problems.append(f"{name}: not the fixed uid/gid {UID}")
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount {sc['procMount']}")
        if (sc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t"):
            problems.append(f"{name}: seLinuxOptions type")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(section) or {}).get(resource):
                    problems.append(f"{name}: no {section}.{resource}")
        if what == "container":
            if _probe_path(container, "livenessProbe") != "/healthz":
                problems.append(f"{name}: livenessProbe is not /healthz")
            if _probe_path(container, "readinessProbe") != "/readyz":
                problems.append(f"{name}: readinessProbe is not /readyz")
            mounted = {m["mountPath"] for m in container.get("volumeMounts") or []}
            for path in sorted(mounts_needed - mounted):
                problems.append(f"{name}: nothing writable mounted at {path}")
    return problems
