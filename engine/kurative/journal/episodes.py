"""Firing episodes: the start an alert sent without ``startsAt`` gets, so that its repeats run once.

The default dedupe key is the alert's fingerprint and ``startsAt``: one execution per firing episode.
Alertmanager and Prometheus always send ``startsAt``, but a script posting to ``/api/v2/alerts`` may
not, and the parser then takes the time of receipt, which differs on every repeat. Alertmanager keeps
the first start of an alert that is still firing; so does kurative: a firing alert of a fingerprint
with an open episode and no ``startsAt`` joins that episode (takes its start). A firing alert with a
``startsAt`` opens the episode at that start (or moves it there); a resolved one closes it, joining it
first when it has no start of its own. A start-less resolved notification sent again joins the episode
it closed, so that a playbook it starts runs once. With no episode open, a start-less firing alert
starts one at its receipt. An episode stays open until a resolved notification of its fingerprint
arrives.

:func:`episode_start` is that rule, written once. The journal applies it in ``commit_alerts``, in the
transaction that stores the alerts (``StoredAlert.starts_at`` holds the result): the inbox itself
records the episodes — the last episode of a fingerprint is the start of its newest alert, open when
that one is firing — so alerts that carry ``startsAt`` cost nothing more, and only a batch with a
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


@dataclass(frozen=True, slots=True)
class Episode:
    """The last firing episode of a fingerprint: its start, and whether it is still open."""

    start: datetime
    open: bool


def episode_start(
    status: str, given: datetime | None, last: Episode | None, received_at: datetime
) -> tuple[datetime, Episode]:
    """The start of an alert and its fingerprint's last episode after it, as ``(start, last)``.

    ``given`` is the alert's own ``startsAt`` (``None`` when it sent none), ``last`` the fingerprint's
    last episode (``None`` when it has none), ``received_at`` the time of receipt.
    """
    resolved = status == "resolved"
    if given is not None:
        start = given
    elif last is not None and (last.open or resolved):
        start = last.start  # joins the open episode, or repeats the resolution of the last one
    else:
        start = received_at
    return start, Episode(start, not resolved)


@dataclass(slots=True)
class EpisodeTracker:
    """The firing episodes of one run of ``kurative simulate`` or one ``kurative test`` case."""

    _last: dict[str, Episode] = field(default_factory=dict)

    def join(self, alert: Alert, received_at: datetime | None = None) -> Alert:
        """``alert`` with the start :func:`episode_start` gives it; remembers the episode it leaves.

        ``received_at`` defaults to the start the parser gave a start-less alert: its time of receipt.
        """
        given = alert.starts_at if alert.starts_at_given else None
        receipt = received_at or alert.starts_at or datetime.now(UTC)
        start, self._last[alert.fingerprint] = episode_start(
            alert.status, given, self._last.get(alert.fingerprint), receipt
        )
        return alert.with_start(start)


def joining(batch: Sequence[PreparedAlert]) -> list[str]:
    """The fingerprints whose last episode a backend must read (sorted): those of start-less alerts."""
    return sorted({alert.fingerprint for alert in batch if alert.starts_at is None})


def last_episode(status: str, starts_at: datetime) -> Episode:
    """The last episode of a fingerprint, given its newest stored alert (open while that one fires)."""
    return Episode(starts_at, status == "firing")


def join_episodes(
    batch: Sequence[PreparedAlert], last: Mapping[str, Episode], received_at: datetime
) -> list[datetime]:
    """:func:`episode_start` over a batch in order: each alert's start. ``last`` holds the last episode
    of (at least) every fingerprint of :func:`joining` that has one, read in the transaction that
    stores the batch."""
    episodes = dict(last)
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
