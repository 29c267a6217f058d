"""The Kubernetes actions of the catalogue, one module per family, each action real.

Importing this package declares every ``kubernetes.*`` action and attaches its implementation. The
implementations reach the cluster through ``ctx.services["kubernetes"]`` (see
:class:`~engine.actions.kubernetes._common.KubeClients`) and enforce the guards of
``ctx.services["kubernetes_guards"]`` (:class:`~engine.actions.kubernetes._common.KubeGuards`).

Crash recovery asks :func:`check_effect` whether a step recorded as started already took effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.actions.base import ActionContext, RepeatSafety
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
from engine.actions.registry import get_action

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
