"""What an action is: its declaration (:class:`ActionSpec`) and the context it runs in.

The declaration is data that lint, ``kurative actions`` and ``kurative rbac`` read without running
anything: the params as JSON Schema, the output shape, the RBAC rules, the risk, how the action is made
safe to repeat after a crash, and whether it supports server-side dry-run. The implementation is an
async callable attached to the declaration; a declared action without one fails at run time with
:class:`~kurative.errors.ActionNotImplemented`, never silently.

:meth:`ActionSpec.run` is the one place where rendered params meet their schema: lint checks literal
params, but templates are only known at run time, so a label that rendered to a number or a typo in
a param name fails here, before the implementation runs, with a permanent error naming the param.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kurative.durations import format_checker
from kurative.errors import ActionNotImplemented, PermanentActionError

# Seconds an action's own timeout ends before its step's: the action's (a request's) then fires first,
# fails as the action's timeout does (and counts against the target's breaker) instead of the step
# being cancelled, which counts as nothing.
DEADLINE_MARGIN = 0.05
# A schema's own words for a failed oneOf/anyOf ("give replicas or delta"), shown instead of
# jsonschema's "is not valid under any of the given schemas".
HINT_KEY = "x-kurative-hint"
MAX_PARAM_PROBLEMS = 5


class Risk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RepeatSafety(enum.StrEnum):
    """How a step interrupted by a crash is made safe to run again."""

    IDEMPOTENT = "idempotent"  # running it twice has the effect of running it once
    STAMPED = "stamped"  # the mutation writes an annotation with execution/step id; a repeat sees it
    PRECONDITIONED = "preconditioned"  # guarded by the uid / resourceVersion read before
    UNSAFE = "unsafe"  # recovery parks the execution for review instead of repeating


@dataclass(frozen=True, slots=True)
class RbacRule:
    """One Kubernetes PolicyRule. ``cluster_scoped`` marks resources that need a ClusterRole."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    cluster_scoped: bool = False


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action knows about the step it runs for.

    ``idempotency_key`` is stable across retries and restarts of the same step of the same execution,
    so that remote systems (and the stamp annotation) can recognise a repeat.
    """

    execution_id: str
    step: str
    attempt: int = 1
    dry_run: bool = False
    cluster: str | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    deadline: float | None = None
    """When the step's ``timeout`` ends, on the event loop's clock (``loop.time()``); None: no timeout."""

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}/{self.step}"

    @property
    def action_deadline(self) -> float | None:
        """When an action's own timeout (a request's) must fire at the latest: just before the step's."""
        return None if self.deadline is None else self.deadline - DEADLINE_MARGIN


ActionFunc = Callable[[ActionContext, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """The declaration of one action of the catalogue."""

    name: str
    summary: str
    params: Mapping[str, Any]  # JSON Schema (draft 2020-12) of the params object
    output: Mapping[str, Any]  # JSON Schema of the output object
    risk: Risk
    repeat_safety: RepeatSafety
    dry_run: bool = False
    rbac: tuple[RbacRule, ...] = ()
    implementation: ActionFunc | None = field(default=None, compare=False, repr=False)
    _validator: Any = field(init=False, default=None, compare=False, repr=False)

    def _params_validator(self) -> Any:
        """Built on the first check: declaring the catalogue does not import jsonschema."""
        if self._validator is None:
            import jsonschema

            validator = jsonschema.Draft202012Validator(self.params, format_checker=format_checker())
            object.__setattr__(self, "_validator", validator)
        return self._validator

    @property
    def implemented(self) -> bool:
        return self.implementation is not None

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`PermanentActionError` naming each param (path) that breaks the schema."""
        if not isinstance(params, Mapping):
            raise PermanentActionError(f"invalid params for {self.name}: params must be an object")
        problems = sorted(
            self._params_validator().iter_errors(dict(params)), key=lambda e: list(map(str, e.absolute_path))
        )
        if problems:
            details = "; ".join(
                f"{'.'.join(map(str, e.absolute_path)) or 'params'}: "
                + (
                    str(e.schema[HINT_KEY])
                    if e.validator in ("oneOf", "anyOf") and HINT_KEY in e.schema
                    else e.message[:200]
                )
                for e in problems[:MAX_PARAM_PROBLEMS]
            )
            raise PermanentActionError(f"invalid params for {self.name}: {details}")

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check the rendered params against the schema, then run the implementation."""
        if self.implementation is None:
            raise ActionNotImplemented(
                f"action {self.name} is declared in the catalogue but not implemented in this build; "
                "the step cannot run"
            )
        self.check_params(params)
        return await self.implementation(ctx, params)
