"""Matching committed alerts to executions, so that a crash between the 200 and the match loses nothing.

The ingress only commits; this loop matches. It takes alerts the inbox holds as not yet matched
(oldest first, those of any replica that died after its 200), matches each against the live ruleset,
and creates the executions of a whole batch together with the "matched against ruleset R" mark in one
transaction: after a crash an alert is either matched with all its executions or not at all, and the
next pass (here or on another replica) does it. A resolved notification also cancels, in that same
transaction, the executions of that alert still waiting for approval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kurative.alerts import Notification
from kurative.errors import JournalError, KurativeError, PlaybookError, RecordRejected
from kurative.execution.recent import ParsedAlert, RecentAlerts
from kurative.journal import (
    CreationOutcome,
    CreationStatus,
    ExecutionRequest,
    Journal,
    LimitRequest,
    MatchResult,
    StoredAlert,
)
from kurative.journal.inbox import inbox_alert, received_alert
from kurative.logging import Logger
from kurative.matching.context import alert_context, playbook_context
from kurative.matching.planning import compute_dedupe_key, compute_limit_keys, needs_approval
from kurative.matching.ruleset import Ruleset
from kurative.metrics import Metrics

log = Logger("kurative.matcher")

BATCH = 500
FRESH = 2 * BATCH
"""At most this many alerts the ingress committed are kept parsed until matched (older ones are read
back from the journal and parsed again, as after a restart). Those another replica matched are let go
as soon as a pass sees every unmatched alert."""


@dataclass(frozen=True, slots=True)
class ActiveRuleset:
    """The ruleset in force and the version the inbox records alerts as matched against."""

    ruleset: Ruleset
    version: str


def requests_for(
    stored: StoredAlert, active: ActiveRuleset, dry_run: bool, parsed: ParsedAlert | None = None
) -> list[ExecutionRequest]:
    """One execution request per playbook the alert starts, in run order (``parsed``: the alert of
    ``stored`` already parsed)."""
    alert, group = parsed if parsed is not None else inbox_alert(stored)
    requests: list[ExecutionRequest] = []
    base = alert_context(alert, group)
    for compiled in active.ruleset.match(alert, group):
        playbook = compiled.playbook
        try:
            context = playbook_context(base, playbook)
            # planning cleans and bounds the keys as the journal takes them: a key it refuses costs
            # only this request, never the whole batch (refused again on every pass)
            dedupe_key = compute_dedupe_key(compiled, alert, context)
            limits = compute_limit_keys(compiled, context)
            if (playbook.dedupe.window is not None and not playbook.dedupe.window > 0) or any(
                not limit.per > 0 for limit in limits
            ):  # lint refuses them; were one in force, the journal would refuse the whole batch
                raise PlaybookError("a dedupe window or limit period of 0s")
        except KurativeError as exc:
            log.warning("playbook_not_started", alert_id=stored.id, playbook=playbook.name, error=str(exc))
            continue
        requests.append(
            ExecutionRequest(
                playbook_name=playbook.name,
                playbook_version=playbook.version,
                playbook_hash=playbook.content_hash,
                dedupe_key=dedupe_key,
                dedupe_window=playbook.dedupe.window,
                limits=tuple(LimitRequest(k.value, k.max, k.per, k.limit) for k in limits),
                requires_approval=needs_approval(playbook),
                dry_run=dry_run or playbook.dry_run,
            )
        )
    return requests


class Matcher:
    def __init__(
        self,
        journal: Journal,
        ruleset: Callable[[], ActiveRuleset | None],
        *,
        dry_run: bool,
        poll_interval: float,
        created: Callable[[], None] = lambda: None,
        recent: RecentAlerts | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._recent = recent
        self._metrics = metrics
        self._journal = journal
        self._ruleset = ruleset
        self._dry_run = dry_run
        self._poll_interval = poll_interval
        self._created = created
        self._wake = asyncio.Event()
        self._stopping = False
        self._fresh: dict[str, ParsedAlert] = {}

    def wake(self, ids: Sequence[str] = (), notification: Notification | None = None) -> None:
        """Match soon; ``ids`` were just committed, the alerts of ``notification`` in that order."""
        if notification is not None and len(ids) == len(notification.alerts):
            fresh = self._fresh
            for alert_id, alert in zip(ids, notification.alerts, strict=True):
                fresh[alert_id] = (alert, notification.group)
            while len(fresh) > FRESH:
                del fresh[next(iter(fresh))]
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                count = await self.match_pending()
            except JournalError as exc:
                log.warning("matching_failed", error=str(exc))
                count = 0
            if count >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def _match_one_by_one(
        self, batch: Sequence[tuple[str, Sequence[ExecutionRequest]]], version: str
    ) -> MatchResult:
        """``batch`` without the requests the journal refuses (each logged): they cost only themselves,
        not the alert's other playbooks nor the alerts behind it."""
        outcomes: list[tuple[CreationOutcome, ...]] = []
        cancelled: list[str] = []
        for alert_id, requests in batch:
            kept = []
            for request in requests:
                try:
                    self._journal.check_request(request)
                except RecordRejected as exc:
                    log.warning(
                        "playbook_not_started",
                        alert_id=alert_id,
                        playbook=request.playbook_name,
                        error=str(exc),
                    )
                    continue
                kept.append(request)
            result = await self._journal.match_alerts([(alert_id, kept)], version)
            outcomes.extend(result.outcomes)
            cancelled.extend(result.cancelled)
        return MatchResult(tuple(outcomes), tuple(sorted(cancelled)))

    async def match_pending(self) -> int:
        """Match one batch of unmatched alerts; return how many were matched."""
        active = self._ruleset()
        if active is None:
            return 0
        kept = list(self._fresh)
        alerts = await self._journal.unmatched_alerts(limit=BATCH)
        if len(alerts) < BATCH and kept:
            # every unmatched alert is in hand: one kept from before and not among them was matched
            # meanwhile (by another replica), and nobody will ask for it
            unmatched = {stored.id for stored in alerts}
            for alert_id in kept:
                if alert_id not in unmatched:
                    self._fresh.pop(alert_id, None)
        if not alerts:
            return 0
        batch = []
        parsed: dict[str, ParsedAlert] = {}
        for stored in alerts:
            try:
                sent = self._fresh.pop(stored.id, None)
                known = received_alert(stored, *sent) if sent is not None else None
                parsed[stored.id] = known if known is not None else inbox_alert(stored)
                requests = requests_for(stored, active, self._dry_run, parsed[stored.id])
            except KurativeError as exc:  # an inbox record that no longer parses: matched to nothing
                log.warning("alert_not_matchable", alert_id=stored.id, error=str(exc))
                requests = []
            batch.append((stored.id, requests))
        try:
            matched = await self._journal.match_alerts(batch, active.version)
        except RecordRejected:  # one alert's requests cannot be stored: it must not hold up the rest
            matched = await self._match_one_by_one(batch, active.version)
        created = 0
        for stored, results in zip(alerts, matched.outcomes, strict=True):
            for result in results:
                if result.status is CreationStatus.CREATED:
                    created += 1
                    if self._recent is not None and stored.id in parsed:
                        self._recent.remember(stored.id, parsed[stored.id])
                if self._metrics is not None:
                    metrics = self._metrics
                    metrics.child(metrics.matches, result.request.playbook_name, result.status.value).inc()
                log.info(
                    "alert_matched",
                    alert_id=stored.id,
                    alert_fingerprint=stored.fingerprint,
                    playbook=result.request.playbook_name,
                    outcome=result.status.value,
                    execution_id=result.execution_id,
                )
        if matched.cancelled:
            log.info("approvals_cancelled", reason="the alert resolved", executions=list(matched.cancelled))
        if created:
            self._created()
        return len(alerts)
