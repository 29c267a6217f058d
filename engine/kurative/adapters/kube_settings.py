"""How the daemon reaches its Kubernetes clusters, kept apart from the client so that reading the
config does not import the (slow to import) official ``kubernetes`` package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
