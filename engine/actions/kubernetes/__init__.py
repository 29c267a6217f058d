"""The Kubernetes actions of the catalogue, one module per family, each action real.

Importing this package declares every ``kubernetes.*`` action and attaches its implementation. The
implementations reach the cluster through ``ctx.services["kubernetes"]`` (see
:class:`~engine.actions.kubernetes._common.KubeClients`) and enforce the guards of
``ctx.services["kubernetes_guards"]`` (:class:`~engine.actions.kubernetes._common.KubeGuards`).

Crash recovery asks :func:`check_effect` whether a step recorded as started already took effect.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema

from engine.actions.base import ActionContext, ActionFunc, RepeatSafety
from engine.actions.kubernetes import (  # noqa: F401  (importing declares the actions)
    generic,
    jobs,
    metadata,
    network,
    nodes,
    pods,
    storage,
    workloads,
)
from engine.actions.kubernetes._common import (
    CHECKS,
    STAMP_ANNOTATION,
    Effect,
    KubeClient,
    KubeClients,
    KubeGuards,
)
from engine.actions.registry import all_actions, get_action, implement
from engine.errors import PermanentActionError

HINT_KEY = "x-kurative-hint"  # a schema's own words for a oneOf/anyOf failure ("give replicas or delta")


def _validating(name: str, schema: Mapping[str, Any], func: ActionFunc) -> ActionFunc:
    """Check the rendered params against the declared schema before the action runs.

    Lint checks literal params; templates are only known at run time, so a label that rendered to a
    number, or a typo in a param name, is caught here with a clear permanent error.
    """
    validator = jsonschema.Draft202012Validator(schema)

    @functools.wraps(func)
    async def run(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        problems = sorted(validator.iter_errors(dict(params)), key=lambda e: list(map(str, e.absolute_path)))
        if problems:
            details = "; ".join(
                f"{'.'.join(map(str, e.absolute_path)) or 'params'}: "
                + (
                    e.schema.get(HINT_KEY)
                    if e.validator in ("oneOf", "anyOf") and HINT_KEY in e.schema
                    else e.message
                )
                for e in problems[:5]
            )
            raise PermanentActionError(f"invalid params for {name}: {details}")
        return await func(ctx, params)

    return run


for _spec in list(all_actions()):
    if _spec.name.startswith("kubernetes.") and _spec.implementation is not None:
        implement(_spec.name)(_validating(_spec.name, _spec.params, _spec.implementation))

__all__ = ["STAMP_ANNOTATION", "Effect", "KubeClient", "KubeClients", "KubeGuards", "check_effect"]


async def check_effect(action: str, ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    """Did the step (``ctx.execution_id``/``ctx.step``) running ``action`` with ``params`` take effect?

    Stamped actions look for their ``kurative/step`` annotation, preconditioned ones for the object
    they acted on, idempotent ones answer NOT_DONE (running them again is harmless). Actions without
    a hook answer UNKNOWN, which parks the execution for review.
    """
    hook = CHECKS.get(action)
    if hook is not None:
        return await hook(ctx, params)
    spec = get_action(action)
    if spec is not None and spec.repeat_safety is RepeatSafety.IDEMPOTENT:
        return Effect.NOT_DONE
    return Effect.UNKNOWN
