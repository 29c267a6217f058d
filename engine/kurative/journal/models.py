"""The records the journal keeps, as plain frozen data.

The journal sits below matching and playbooks, so everything it accepts or returns is spelled here in
plain fields (strings, numbers, JSON values): the ingress hands in :class:`IncomingAlert`, the matcher
hands in one :class:`ExecutionRequest` per matched playbook, the runner holds a :class:`Lease` and
writes :class:`StepStart` / :class:`StepFinish` records. Nothing here talks to a database.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JSONValue = Any
"""A value that survives ``json.dumps``: dict, list, str, int, float, bool or None."""


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class ExecutionState(enum.StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_REVIEW = "needs_review"

    @property
    def finished(self) -> bool:
        """True for the states nothing ever leaves; only these may be pruned."""
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {
        ExecutionState.SUCCEEDED,
        ExecutionState.FAILED,
        ExecutionState.CANCELLED,
        ExecutionState.NEEDS_REVIEW,
    }
)

RELEASE_STATES = frozenset(
    {
        ExecutionState.PENDING,
        ExecutionState.AWAITING_APPROVAL,
        *FINISHED_STATES,
    }
)
"""States a lease holder may leave an execution in when it lets go of it."""


class StepStatus(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"


class Decision(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class CreationStatus(enum.StrEnum):
    CREATED = "created"
    DEDUPLICATED = "deduplicated"
    RATE_LIMITED = "rate_limited"


# -- alerts -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    """One alert as the ingress received it, before it is committed.

    ``payload`` is the alert's JSON object exactly as the sender wrote it (annotations, startsAt, ...);
    ``labels`` is repeated out of it because matching and filtering need it. ``source`` says which
    endpoint or sender delivered it (``alertmanager``, ``prometheus``, ``cli``). A payload without
    ``startsAt`` (or with null or Go's zero time) joins the open firing episode of its fingerprint
    (:func:`kurative.journal.inbox.inbox_record` builds one from a parsed alert).
    """

    fingerprint: str
    status: AlertStatus | str
    labels: Mapping[str, str]
    payload: Mapping[str, JSONValue]
    source: str


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as the inbox holds it. ``sanitized`` is true when NUL bytes or invalid UTF-8 in its
    labels or payload were replaced by U+FFFD to store it."""

    id: str
    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    payload: Mapping[str, JSONValue]
    source: str
    received_at: datetime
    sanitized: bool = False
    starts_at: datetime | None = None
    """The start of the firing episode the journal gave the alert: its own ``startsAt``, or, when it
    sent none, the start of its fingerprint's open episode (or its receipt, opening one); ``None``
    for alerts stored before the journal kept episodes."""


# -- ruleset versions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybookVersion:
    """One loaded playbook: ``body`` is its source text, kept so a running execution can finish on it."""

    name: str
    version: int
    content_hash: str
    body: str


@dataclass(frozen=True, slots=True)
class PlaybookVersionConflict:
    """The journal already holds ``name`` at ``version`` with different content."""

    name: str
    version: int
    known_hash: str
    new_hash: str


# -- executions -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """At most ``max`` executions of the playbook for the rendered key value ``key`` per ``per`` seconds."""

    key: str
    max: int
    per: float
    name: str = ""
    """The limit's key expression (``labels.namespace``): two limits whose keys render to the same
    value are counted apart."""


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """What the matcher asks for one matched playbook of one alert.

    ``dedupe_key`` is the rendered key string; ``dedupe_window`` is its window in seconds, or None for
    "one run per firing episode" (the key then already includes the alert's startsAt, and the journal
    keeps it until retention). A None ``dedupe_key`` means no deduplication at all.
    """

    playbook_name: str
    playbook_version: int
    playbook_hash: str
    dedupe_key: str | None = None
    dedupe_window: float | None = None
    limits: tuple[LimitRequest, ...] = ()
    requires_approval: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class CreationOutcome:
    """What became of one :class:`ExecutionRequest`.

    ``execution_id`` is the new execution when created, the earlier one when deduplicated, None when
    rate-limited; ``limit`` is the limit that refused it.
    """

    request: ExecutionRequest
    status: CreationStatus
    execution_id: str | None = None
    limit: LimitRequest | None = None


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What :meth:`~kurative.journal.base.Journal.match_alerts` did: per alert (in the order given) the
    outcome of each request, empty for an alert another replica matched first; and the executions
    that resolved alerts cancelled while they waited for approval."""

    outcomes: tuple[tuple[CreationOutcome, ...], ...]
    cancelled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    alert_id: str
    alert_fingerprint: str
    playbook_name: str
    playbook_version: int
    playbook_hash: str
    state: ExecutionState
    dry_run: bool
    dedupe_key: str | None
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that ``owner`` may work on an execution; ``attempt`` fences off earlier holders."""

    execution_id: str
    owner: str
    attempt: int
    expires_at: datetime
    cancel_requested: bool = False
    """Someone asked to cancel the running execution: stop after the current step, release cancelled."""


@dataclass(frozen=True, slots=True)
class Claim:
    """An execution handed to a worker. ``recovered`` is true when it took over an expired lease, i.e.
    a previous holder died mid-run and its step records must be checked before repeating anything."""

    execution: Execution
    lease: Lease
    recovered: bool
    previous_owner: str | None = None


@dataclass(frozen=True, slots=True)
class StepStart:
    """``attempt`` counts tries of this step within the execution, from 1, across recoveries."""

    index: int
    name: str
    action: str
    attempt: int = 1
    params: JSONValue = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StepFinish:
    index: int
    name: str
    status: StepStatus
    attempt: int = 1
    action: str = ""
    output: JSONValue = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """How :meth:`~kurative.journal.base.Journal.record_steps` lets go of the execution (see
    :meth:`~kurative.journal.base.Journal.release_execution` for the states and ``delay``)."""

    state: ExecutionState
    error: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class StepsWritten:
    """What one :meth:`~kurative.journal.base.Journal.record_steps` committed: the ids of its final
    records (in the order given), of its ``started`` record, and the released execution."""

    finished: tuple[int, ...] = ()
    started: int | None = None
    execution: Execution | None = None
    cancel_requested: bool = False
    """With a ``started`` record: someone asked to cancel the execution (seen as the record was
    written), so the step must not run."""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One append-only step record; a step that ran has a ``started`` record and a final one."""

    id: int
    execution_id: str
    index: int
    name: str
    action: str
    attempt: int
    status: StepStatus
    params: JSONValue
    output: JSONValue
    error: str | None
    idempotency_key: str | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_attempt: int

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Approval:
    execution_id: str
    decision: Decision
    who: str
    reason: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    execution: Execution
    steps: tuple[StepRecord, ...]
    approvals: tuple[Approval, ...]

    def open_steps(self) -> tuple[StepRecord, ...]:
        """``started`` records with no final record for the same step attempt: what a dead holder
        was doing. Recovery re-runs such a step only if its action is safe to repeat."""
        finished = {(s.index, s.attempt) for s in self.steps if s.status is not StepStatus.STARTED}
        return tuple(
            s for s in self.steps if s.status is StepStatus.STARTED and (s.index, s.attempt) not in finished
        )


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """Every field narrows the list; ``states`` is any-of."""

    states: tuple[ExecutionState, ...] = ()
    playbook_name: str | None = None
    alert_fingerprint: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    alertname: str | None = None
    """Only executions of alerts with this ``alertname`` label."""


@dataclass(frozen=True, slots=True)
class Page:
    """Newest first. Pass ``next_cursor`` back to get the next page; None means this was the last."""

    items: tuple[Execution, ...]
    next_cursor: str | None


# -- the alert inbox, as the REST API lists it ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One received alert and whether the matcher has seen it: ``matched_at`` is None while it waits,
    ``ruleset`` the ruleset version it was matched against."""

    alert: StoredAlert
    matched_at: datetime | None
    ruleset: str | None


@dataclass(frozen=True, slots=True)
class AlertPage:
    """Newest first, as :class:`Page`: pass ``next_cursor`` back for the next page."""

    items: tuple[InboxEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PruneReport:
    executions: int = 0
    alerts: int = 0
    dedupe_keys: int = 0
    limit_hits: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(
            self.executions + other.executions,
            self.alerts + other.alerts,
            self.dedupe_keys + other.dedupe_keys,
            self.limit_hits + other.limit_hits,
        )


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: int
    latest: int
    applied: tuple[int, ...] = field(default=())
