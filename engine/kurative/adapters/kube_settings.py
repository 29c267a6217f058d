"""How the daemon reaches its Kubernetes clusters, kept apart from the client so that reading the
config does not import the (slow to import) official ``kubernetes`` package."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """How to reach the clusters. Frozen: built once from the daemon config."""

    kubeconfig: str | None = None
    """Path of the kubeconfig; None: ``$KUBECONFIG``, then ``~/.kube/config``, then in-cluster."""
    contexts: Mapping[str, str] = field(default_factory=dict)
    """Cluster name (as steps and alert labels say it) -> kubeconfig context."""
    default_context: str | None = None
    """Context for steps without ``cluster:``; None: the kubeconfig's current context."""
    connect_timeout: float = 5.0
    """Seconds to establish a connection."""
    read_timeout: float = 30.0
    """Seconds to wait for an answer: a hanging API server fails the call after this long."""
    max_workers: int = 8
    """Threads shared by all clusters for blocking client calls."""
    breaker_fail_max: int = 5
    """Consecutive failures (refused, timed out, 5xx) that open a cluster's circuit breaker; 0: none."""
    breaker_reset_timeout: float = 30.0
    """Seconds an open breaker fails fast before it lets one call try again."""


def kubeconfig_path(settings: KubeSettings) -> str:
    """The kubeconfig to read, as kubectl finds it: the configured one, ``$KUBECONFIG`` (several files
    separated by ``os.pathsep``), or ``~/.kube/config``."""
    return settings.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def uses_service_account(settings: KubeSettings, context: str | None) -> bool:
    """In a pod, with no kubeconfig configured and no context asked for: the pod's service account."""
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(IN_CLUSTER_TOKEN)
    return in_pod and not settings.kubeconfig and context is None


def missing_config(settings: KubeSettings, context: str | None) -> str | None:
    """Why there is no Kubernetes configuration to load for ``context`` (no service account and no
    kubeconfig file), or None when there is one to try; decided without the client, so that a daemon
    without Kubernetes can say so without importing it."""
    if uses_service_account(settings, context):
        return None
    path = kubeconfig_path(settings)
    if any(os.path.exists(p) for p in path.split(os.pathsep) if p):
        return None
    return (
        f"no Kubernetes config: {path} does not exist and this is not a pod (set KUBECONFIG or --kubeconfig)"
    )
