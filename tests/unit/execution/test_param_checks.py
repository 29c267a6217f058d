"""The runner checks every step's params against its action's schema before the action runs: through the
compiled quick check when it is sure they are valid, else through jsonschema, which names the problems."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from kurative.actions.base import ActionContext, ActionSpec
from kurative.actions.registry import get_action
from kurative.errors import PermanentActionError
from kurative.execution.runner import ExecutionRunner, PlaybookCache
from kurative.execution.services import Services
from kurative.execution.settings import RunnerSettings

pytestmark = pytest.mark.timeout(30)


def _runner() -> ExecutionRunner:
    journal: Any = None  # never reached: only the params check and the action run here
    return ExecutionRunner(journal, Services(), RunnerSettings(), PlaybookCache(journal))


def _recording(spec: ActionSpec, ran: list[Mapping[str, Any]]) -> ActionSpec:
    async def run(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        ran.append(params)
        return {"message": params.get("message")}

    return dataclasses.replace(spec, implementation=run)


async def test_valid_params_run_the_action_and_invalid_ones_never_do() -> None:
    declared = get_action("log")
    assert declared is not None
    ran: list[Mapping[str, Any]] = []
    spec = _recording(declared, ran)
    runner = _runner()
    ctx = ActionContext("e-1", "first")
    hello = {"message": "hello", "level": "warning"}
    assert await runner._act(spec, ctx, hello) == {"message": "hello"}
    for bad in ({"message": 3}, {"level": "info"}, {"message": "", "level": "loud"}, {"y": 1}):
        with pytest.raises(PermanentActionError, match="invalid params for log"):
            await runner._act(spec, ctx, bad)
    assert ran == [hello]


async def test_a_schema_the_quick_check_cannot_take_is_checked_by_jsonschema_alone() -> None:
    ran: list[Mapping[str, Any]] = []
    declared = get_action("log")
    assert declared is not None
    schema = {  # dependentSchemas: a keyword the quick check does not take, jsonschema decides
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
        "dependentSchemas": {"message": {"required": ["level"]}},
    }
    spec = _recording(dataclasses.replace(declared, params=schema), ran)
    runner = _runner()
    with pytest.raises(PermanentActionError, match="level"):
        await runner._act(spec, ActionContext("e-1", "first"), {"message": "hello"})
    assert await runner._act(spec, ActionContext("e-1", "first"), {"message": "m", "level": "info"})
    assert len(ran) == 1
