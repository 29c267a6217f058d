"""The generic actions that run without a remote system, and the declared ones that cannot run yet."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from kurative.actions.base import ActionContext, ActionSpec
from kurative.actions.registry import get_action
from kurative.errors import ActionNotImplemented, PermanentActionError

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


@pytest.mark.parametrize("name", ["approval"])
async def test_declared_without_implementation_says_so(name: str) -> None:
    assert not action(name).implemented
    with pytest.raises(
        ActionNotImplemented, match=f"{name} is declared in the catalogue but not implemented"
    ):
        await action(name).run(CTX, {})


@pytest.mark.parametrize(
    ("name", "params", "problem"),
    [
        ("sleep", {"duration": 5}, "duration: 5 is not of type 'string'"),
        ("sleep", {"duration": "soon"}, "duration: 'soon' does not match"),
        ("log", {"mesage": "hi"}, "params: 'message' is a required property"),
        ("http.request", {"url": "http://x", "json": {}, "body": "y"}, "params: "),
        ("http.request", {"url": {"secretRef": 3}}, "url: "),
        ("prometheus.query", {"query": "up", "expect": ["x"]}, "expect: ['x'] is not of type 'string'"),
        ("kubernetes.scale", {"namespace": "shop", "name": "web", "replicas": "3"}, "replicas: '3'"),
    ],
)
async def test_rendered_params_are_checked_against_the_schema_before_running(
    name: str, params: dict[str, object], problem: str
) -> None:
    with pytest.raises(PermanentActionError) as caught:
        await action(name).run(CTX, params)
    message = str(caught.value)
    assert message.startswith(f"invalid params for {name}: ")
    assert problem in message
    assert message.count("invalid params") == 1  # the Kubernetes actions' own check does not repeat it
