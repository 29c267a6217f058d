"""Firing episodes: the start an alert sent without ``startsAt`` gets, so that its repeats run once.

The default dedupe key is the alert's fingerprint and ``startsAt``: one execution per firing episode.
Alertmanager and Prometheus always send ``startsAt``, but a script posting to ``/api/v2/alerts`` may
not, and the parser then takes the time of receipt, which differs on every repeat. Alertmanager keeps
the first start of an alert that is still firing; so does kurative: a firing alert of a fingerprint
with an open episode and no ``startsAt`` joins that episode (takes its start). A firing alert with a
``startsAt`` opens the episode at that start (or moves it there); a resolved one closes it, joining it
first when it has no start of its own. With no episode open, a start-less alert starts one at its
receipt. An episode stays open until a resolved notification of its fingerprint arrives.

:func:`episode_start` is that rule, written once. The journal applies it in ``commit_alerts``, in the
transaction that stores the alerts (``StoredAlert.starts_at`` holds the result): the inbox itself
records the episodes — the open episode of a fingerprint is the start of its newest alert when that
one is firing — so alerts that carry ``startsAt`` cost nothing more, and only a batch with a
start-less alert reads the inbox, serialized per fingerprint so that replicas agree.
:class:`EpisodeTracker` applies the rule in memory for ``kurative simulate`` and ``kurative test``.
:func:`commit_and_join` is the ingress's way in: it commits parsed alerts and hands them back with the
start the journal gave them, ready to plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kurative.alerts import Alert
from kurative.journal.base import Journal
from kurative.journal.encoding import PreparedAlert
from kurative.journal.inbox import inbox_record


def episode_start(
    status: str, given: datetime | None, open_start: datetime | None, received_at: datetime
) -> tuple[datetime, datetime | None]:
    """The start of an alert and its fingerprint's open episode after it, as ``(start, open)``.

    ``given`` is the alert's own ``startsAt`` (``None`` when it sent none), ``open_start`` the start of
    the fingerprint's open episode (``None`` when none is open), ``received_at`` the time of receipt.
    """
    start = given if given is not None else (open_start if open_start is not None else received_at)
    return start, (None if status == "resolved" else start)


@dataclass(slots=True)
class EpisodeTracker:
    """The open firing episodes of one run of ``kurative simulate`` or one ``kurative test`` case."""

    _open: dict[str, datetime] = field(default_factory=dict)

    def join(self, alert: Alert, received_at: datetime | None = None) -> Alert:
        """``alert`` with the start :func:`episode_start` gives it; remembers the episode it leaves open.

        ``received_at`` defaults to the start the parser gave a start-less alert: its time of receipt.
        """
        given = alert.starts_at if alert.starts_at_given else None
        receipt = received_at or alert.starts_at or datetime.now(UTC)
        start, still_open = episode_start(alert.status, given, self._open.get(alert.fingerprint), receipt)
        if still_open is None:
            self._open.pop(alert.fingerprint, None)
        else:
            self._open[alert.fingerprint] = still_open
        return alert.with_start(start)


def joining(batch: Sequence[PreparedAlert]) -> list[str]:
    """The fingerprints whose open episode a backend must read (sorted): those of start-less alerts."""
    return sorted({alert.fingerprint for alert in batch if alert.starts_at is None})


def open_episode(status: str, starts_at: datetime | None) -> datetime | None:
    """The open episode's start, given the newest stored alert of a fingerprint (none once resolved)."""
    return starts_at if status == "firing" else None


def join_episodes(
    batch: Sequence[PreparedAlert], open_starts: Mapping[str, datetime | None], received_at: datetime
) -> list[datetime]:
    """:func:`episode_start` over a batch in order: each alert's start. ``open_starts`` holds the open
    episode of (at least) every fingerprint of :func:`joining`, read in the transaction that stores
    the batch."""
    episodes = dict(open_starts)
    starts: list[datetime] = []
    for alert in batch:
        start, episodes[alert.fingerprint] = episode_start(
            alert.status, alert.starts_at, episodes.get(alert.fingerprint), received_at
        )
        starts.append(start)
    return starts


async def commit_and_join(
    journal: Journal, alerts: Sequence[Alert], source: str
) -> tuple[tuple[str, Alert], ...]:
    """Commit ``alerts`` in one batch; return each one's id with the alert as it must be planned (an
    alert that came without ``startsAt`` carries its episode's start, read back from the journal)."""
    ids = await journal.commit_alerts([inbox_record(alert, source) for alert in alerts])
    joined: list[tuple[str, Alert]] = []
    for alert_id, sent in zip(ids, alerts, strict=True):
        start = None if sent.starts_at_given else (await journal.get_alert(alert_id)).starts_at
        joined.append((alert_id, sent if start is None else sent.with_start(start)))
    return tuple(joined)
