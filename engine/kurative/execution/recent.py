"""The alerts this process just matched, parsed, so that the runner of their executions need not read
and parse them again from the journal.

The matcher parses every inbox record it matches; the runner of an execution needs the same alert
moments later (the claim follows the match). An inbox record does not change once committed (its
episode start is fixed in the commit), so the parsed alert is as good as a fresh read. Bounded: an
execution claimed by another replica, or much later, reads its alert from the journal as before.
"""

from __future__ import annotations

from collections import OrderedDict

from kurative.alerts import Alert, AlertGroup

ParsedAlert = tuple[Alert, AlertGroup | None]


class RecentAlerts:
    """The last ``size`` matched alerts by inbox id."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._alerts: OrderedDict[str, ParsedAlert] = OrderedDict()

    def remember(self, alert_id: str, parsed: ParsedAlert) -> None:
        self._alerts[alert_id] = parsed
        self._alerts.move_to_end(alert_id)
        while len(self._alerts) > self._size:
            self._alerts.popitem(last=False)

    def get(self, alert_id: str) -> ParsedAlert | None:
        return self._alerts.get(alert_id)
