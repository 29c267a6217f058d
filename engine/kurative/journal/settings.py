"""Which journal the daemon opens and how (the ``journal`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kurative.journal.encoding import DEFAULT_LIMITS, JournalLimits

DEFAULT_URL = "sqlite:///./kurative.db"


@dataclass(frozen=True, slots=True)
class JournalSettings:
    url: str = DEFAULT_URL
    """``sqlite:///path`` (embedded, one replica) or ``postgresql://…`` (several replicas)."""
    migrate: bool = False
    """Apply missing schema migrations on start (safe with several replicas starting at once)."""
    retention_seconds: float = 30 * 86400.0
    """Finished executions and old alerts older than this are pruned."""
    wait_seconds: float = 30.0
    """How long start-up waits for an unreachable database before giving up."""
    timeout_seconds: float = 10.0
    """How long one journal operation may wait for PostgreSQL's answer before it fails as unavailable
    (503 at the ingress, a count against the journal's breaker); its query is cancelled and its
    connection discarded. Without it a blackholed or half-open connection holds a commit, a claim or a
    step record until TCP gives up (hours). 0: no bound. Migrations are never bounded."""
    limits: JournalLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    """Record size bounds checked before the database."""
