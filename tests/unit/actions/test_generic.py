"""The generic actions that run without a remote system, and the declared ones that cannot run yet."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from kurative.actions.base import ActionContext, ActionSpec
from kurative.actions.registry import get_action
from kurative.errors import ActionNotImplemented

CTX = ActionContext(execution_id="exec-1", step="note")


def action(name: str) -> ActionSpec:
    spec = get_action(name)
    assert spec is not None
    return spec


async def test_log_writes_at_the_requested_level() -> None:
    with capture_logs() as logs:
        output = await action("log").run(CTX, {"message": "restarted web", "level": "warning"})
    assert output == {"message": "restarted web"}
    assert logs == [
        {"event": "playbook_log", "message": "restarted web", "step": "note", "log_level": "warning"}
    ]


async def test_sleep_reports_the_seconds_slept() -> None:
    assert await action("sleep").run(CTX, {"duration": "20ms"}) == {"slept": 0.02}


@pytest.mark.parametrize("name", ["http.request", "prometheus.query", "approval"])
async def test_declared_without_implementation_says_so(name: str) -> None:
    assert not action(name).implemented
    with pytest.raises(
        ActionNotImplemented, match=f"{name} is declared in the catalogue but not implemented"
    ):
        await action(name).run(CTX, {})
