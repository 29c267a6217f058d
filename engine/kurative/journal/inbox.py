"""Alerts in and out of the inbox: what the ingress commits, and the alert the matcher and runner read.

An inbox record keeps the alert as matching reads it (``Alert.to_json``) with the group of the
notification it came in (receiver, groupKey, groupLabels, commonLabels, externalURL, which ``group`` in
expressions reads), so that an alert matched after a crash sees exactly what it would have seen at
once. A ``startsAt`` the parser filled in is left out: the journal gives the alert the start of its
firing episode (:mod:`kurative.journal.episodes`), and reading the record back applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kurative.alerts import Alert, AlertGroup, parse_notification
from kurative.journal.models import IncomingAlert, StoredAlert

GROUP_KEY = "group"


def inbox_record(alert: Alert, source: str, group: AlertGroup | None = None) -> IncomingAlert:
    """A parsed alert (of ``group``) as the inbox takes it."""
    payload = {key: value for key, value in alert.to_json().items() if value is not None}
    if not alert.starts_at_given:
        payload.pop("startsAt", None)
    if group is not None:
        payload[GROUP_KEY] = dict(group.document)
    return IncomingAlert(alert.fingerprint, alert.status, dict(alert.labels), payload, source)


def _labels(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def inbox_group(alert: Alert, kept: Mapping[str, Any]) -> AlertGroup:
    """The group an inbox record keeps (``kept``: its group document), as matching reads it."""
    return AlertGroup(
        receiver=str(kept.get("receiver") or ""),
        group_key=str(kept.get("groupKey") or ""),
        status=alert.status,
        group_labels=_labels(kept.get("groupLabels")),
        common_labels=_labels(kept.get("commonLabels")),
        external_url=str(kept.get("externalURL") or ""),
    )


def inbox_alert(stored: StoredAlert) -> tuple[Alert, AlertGroup | None]:
    """The alert of an inbox record, with its episode's start, and its group when it had one.
    Raises :class:`~kurative.errors.AlertError` for a record that no longer parses."""
    payload = dict(stored.payload)
    kept = payload.pop(GROUP_KEY, None)
    alert = parse_notification(payload).alerts[0]
    if stored.starts_at is not None:
        alert = alert.with_start(stored.starts_at)
    return alert, (inbox_group(alert, kept) if isinstance(kept, Mapping) else None)


def received_alert(
    stored: StoredAlert, alert: Alert, group: AlertGroup | None
) -> tuple[Alert, AlertGroup | None] | None:
    """What :func:`inbox_alert` reads from ``stored``, from the alert the ingress parsed and committed
    as ``stored`` (and its notification's group), without parsing its record again; None when the
    record is not the alert as sent (the journal sanitized it: read it back instead)."""
    if stored.sanitized or stored.starts_at is None:
        return None
    alert = alert.with_start(stored.starts_at)
    return alert, (inbox_group(alert, group.document) if group is not None else None)
