"""From an HTTP body to the inbox records the journal commits: total over whatever the network sends.

The body is parsed by :func:`kurative.alerts.parse_json` (an Alertmanager webhook v4 on
``/api/v1/alerts``, the list Prometheus sends on ``/api/v2/alerts``); anything else is an
:class:`~kurative.errors.AlertError` naming the JSON path and the problem, which the app answers 400.
"""

from __future__ import annotations

from typing import Literal

from kurative.alerts import Notification, parse_json
from kurative.errors import AlertError
from kurative.journal import IncomingAlert
from kurative.journal.inbox import inbox_record

Endpoint = Literal["alertmanager", "prometheus"]

EXPECTED = {
    "alertmanager": "an Alertmanager webhook notification (version 4: an object with 'alerts')",
    "prometheus": "a list of alerts, as Prometheus posts to Alertmanager's /api/v2/alerts",
}


def parse_body(body: bytes, endpoint: Endpoint) -> Notification:
    """The notification of one POST to ``endpoint``; :class:`AlertError` when it is not one."""
    notification = parse_json(body)
    if notification.kind != endpoint:
        raise AlertError(f"payload: expected {EXPECTED[endpoint]}, got a {notification.kind} payload")
    return notification


def inbox_records(notification: Notification, endpoint: Endpoint) -> list[IncomingAlert]:
    """One inbox record per alert, with the group it came in."""
    return [inbox_record(alert, endpoint, notification.group) for alert in notification.alerts]
