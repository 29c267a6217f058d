"""Database rows back into journal models, the same way for every backend.

Backends differ in how a row stores a time (timestamptz or epoch seconds), JSON (parsed or text) and
booleans (bool or 0/1); a :class:`Codec` hides that, so the mapping from columns to fields is written
once and cannot drift between SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kurative.journal.encoding import encode_cursor
from kurative.journal.models import (
    AlertPage,
    AlertStatus,
    Approval,
    Claim,
    Decision,
    Execution,
    ExecutionDetail,
    ExecutionState,
    InboxEntry,
    Lease,
    Page,
    PlaybookVersion,
    StepRecord,
    StepStatus,
    StoredAlert,
)

Row = Mapping[str, Any]

EXECUTION_COLUMNS = (
    "seq, id, alert_id, alert_fingerprint, playbook_name, playbook_version, playbook_hash, state, "
    "dry_run, dedupe_key, attempt, lease_owner, lease_expires_at, cancel_requested, created_at, "
    "updated_at, started_at, finished_at, error"
)
STEP_COLUMNS = (
    "id, execution_id, step_index, name, action, attempt, status, params, output, error, "
    "idempotency_key, started_at, finished_at, lease_attempt"
)
ALERT_COLUMNS = "id, fingerprint, status, labels, payload, source, received_at, sanitized, starts_at"
APPROVAL_COLUMNS = "execution_id, decision, who, reason, decided_at"


def detail_queries(mark: str) -> tuple[str, str, str]:
    """The reads of one execution, its steps and its approvals; each takes the execution id, marked
    with the dialect's ``mark``."""
    return (
        f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = {mark}",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        f"SELECT {STEP_COLUMNS} FROM steps WHERE execution_id = {mark} ORDER BY id",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = {mark} ORDER BY id",  # nosec B608  # SQL from constants and placeholders; every value is a bound parameter
    )


def qualified(columns: str, alias: str) -> str:
    """``columns`` prefixed with a table alias, for joins and ``UPDATE ... FROM``."""
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))


@dataclass(frozen=True, slots=True)
class Codec:
    time: Callable[[Any], datetime]
    json: Callable[[Any], Any]

    def maybe_time(self, value: Any) -> datetime | None:
        return None if value is None else self.time(value)


def execution_from_row(row: Row, codec: Codec) -> Execution:
    return Execution(
        id=row["id"],
        alert_id=row["alert_id"],
        alert_fingerprint=row["alert_fingerprint"],
        playbook_name=row["playbook_name"],
        playbook_version=int(row["playbook_version"]),
        playbook_hash=row["playbook_hash"],
        state=ExecutionState(row["state"]),
        dry_run=bool(row["dry_run"]),
        dedupe_key=row["dedupe_key"],
        attempt=int(row["attempt"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=codec.maybe_time(row["lease_expires_at"]),
        created_at=codec.time(row["created_at"]),
        updated_at=codec.time(row["updated_at"]),
        started_at=codec.maybe_time(row["started_at"]),
        finished_at=codec.maybe_time(row["finished_at"]),
        error=row["error"],
    )


def step_from_row(row: Row, codec: Codec) -> StepRecord:
    return StepRecord(
        id=int(row["id"]),
        execution_id=row["execution_id"],
        index=int(row["step_index"]),
        name=row["name"],
        action=row["action"],
        attempt=int(row["attempt"]),
        status=StepStatus(row["status"]),
        params=codec.json(row["params"]),
        output=codec.json(row["output"]),
        error=row["error"],
        idempotency_key=row["idempotency_key"],
        started_at=codec.maybe_time(row["started_at"]),
        finished_at=codec.maybe_time(row["finished_at"]),
        lease_attempt=int(row["lease_attempt"]),
    )


def alert_from_row(row: Row, codec: Codec) -> StoredAlert:
    return StoredAlert(
        id=row["id"],
        fingerprint=row["fingerprint"],
        status=AlertStatus(row["status"]),
        labels=codec.json(row["labels"]),
        payload=codec.json(row["payload"]),
        source=row["source"],
        received_at=codec.time(row["received_at"]),
        sanitized=bool(row["sanitized"]),
        starts_at=None if row["starts_at"] is None else codec.time(row["starts_at"]),
    )


def approval_from_row(row: Row, codec: Codec) -> Approval:
    return Approval(
        execution_id=row["execution_id"],
        decision=Decision(row["decision"]),
        who=row["who"],
        reason=row["reason"],
        decided_at=codec.time(row["decided_at"]),
    )


def playbook_from_row(row: Row) -> PlaybookVersion:
    return PlaybookVersion(row["name"], int(row["version"]), row["content_hash"], row["body"])


def claim_from_row(row: Row, codec: Codec, previous_state: str, previous_owner: str | None) -> Claim:
    """A freshly claimed execution; ``previous_*`` is what the row held before the claim."""
    execution = execution_from_row(row, codec)
    assert execution.lease_owner is not None
    assert execution.lease_expires_at is not None
    recovered = previous_state == ExecutionState.RUNNING
    return Claim(
        execution=execution,
        lease=Lease(
            execution.id,
            execution.lease_owner,
            execution.attempt,
            execution.lease_expires_at,
            bool(row["cancel_requested"]),
        ),
        recovered=recovered,
        previous_owner=previous_owner if recovered else None,
    )


def renewed_lease(lease: Lease, row: Row, codec: Codec) -> Lease:
    """``lease`` with the expiry and cancel flag a renewal returned."""
    return Lease(
        lease.execution_id,
        lease.owner,
        lease.attempt,
        codec.time(row["lease_expires_at"]),
        bool(row["cancel_requested"]),
    )


def page_from_rows(found: Sequence[Row], limit: int, codec: Codec) -> Page:
    """A page of at most ``limit`` executions out of ``limit + 1`` rows read (the extra one tells that
    a next page exists)."""
    items = tuple(execution_from_row(r, codec) for r in found[:limit])
    next_cursor = encode_cursor(int(found[limit - 1]["seq"])) if len(found) > limit else None
    return Page(items, next_cursor)


def detail_from_rows(
    row: Row, steps: Sequence[Row], approvals: Sequence[Row], codec: Codec
) -> ExecutionDetail:
    return ExecutionDetail(
        execution_from_row(row, codec),
        tuple(step_from_row(s, codec) for s in steps),
        tuple(approval_from_row(a, codec) for a in approvals),
    )


def alert_page_from_rows(found: Sequence[Row], limit: int, codec: Codec) -> AlertPage:
    """A page of the inbox out of the ``limit + 1`` rows of :func:`kurative.journal.backend.select_alerts`."""
    items = tuple(
        InboxEntry(alert_from_row(r, codec), codec.maybe_time(r["matched_at"]), r["ruleset"])
        for r in found[:limit]
    )
    more = len(found) > limit
    next_cursor = encode_cursor(int(found[limit - 1]["position"]), prefix="a") if more else None
    return AlertPage(items, next_cursor)
