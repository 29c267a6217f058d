"""How this replica runs executions (the ``runner`` and ``safety.dryRun`` parts of the config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    workers: int = 64
    """Executions run at once by this replica. Most of an execution's time is spent waiting (for its
    journal commits, a webhook, the API server; Kubernetes steps are bounded by ``per_cluster`` too):
    with more of them at once, each commit carries more of their step records."""
    per_cluster: int = 8
    """Executions run at once against one Kubernetes cluster."""
    lease_seconds: float = 30.0
    """How long a claimed execution stays ours without renewal; renewed every third of it."""
    shutdown_timeout: float = 30.0
    """On SIGTERM, how long running steps may finish before their leases are released."""
    poll_interval: float = 1.0
    """How often idle workers and the matcher look for work that another replica left."""
    dry_run: bool = False
    """Global dry-run: every step runs as a dry run (Kubernetes with ``dryRun=All``)."""
    cluster_label: str | None = None
    """The alert label whose value names the cluster when a step says nothing else (set when the
    config maps clusters to kubeconfig contexts); None: such steps go to the default cluster."""
