"""What actions may use while they run, as one typed object instead of string keys spread around.

The daemon builds it once (the Kubernetes clients, the HTTP and Prometheus adapters, the secret
resolver, the guards) and the runner hands it to every step; :meth:`Services.for_actions` is the view
the action catalogue reads (``ctx.services``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kurative.actions.kubernetes import KubeClients, KubeGuards


@dataclass(frozen=True, slots=True)
class Services:
    kubernetes: KubeClients | None = None
    """Clients by cluster; None when the daemon has no Kubernetes configuration."""
    guards: KubeGuards = field(default_factory=KubeGuards)
    """Protected namespaces and the ceilings of scale, resources and sizes."""
    http: Any = None
    """The HTTP adapter used by ``http.request``."""
    prometheus: Any = None
    """The Prometheus adapter used by ``prometheus.query``."""
    secrets: Any = None
    """Resolves ``{secretRef: name}`` at run time."""

    def for_actions(self) -> Mapping[str, Any]:
        view: dict[str, Any] = {"kubernetes_guards": self.guards}
        for key, value in (
            ("kubernetes", self.kubernetes),
            ("http", self.http),
            ("prometheus", self.prometheus),
            ("secrets", self.secrets),
        ):
            if value is not None:
                view[key] = value
        return view
