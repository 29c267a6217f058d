"""The Kubernetes actions of the catalogue, one module per family, each action real.

Importing this package declares every ``kubernetes.*`` action, attaches its implementation and
wraps it so that the rendered params are checked against the declared schema before it runs.

What the runner provides (``ActionContext``):

- ``services["kubernetes"]``: clients by cluster (:class:`KubeClients`; the daemon passes an
  ``kurative.adapters.kubernetes.KubernetesAdapter``); ``ctx.cluster`` (the step's ``cluster:``) picks
  one, ``None`` the default context.
- ``services["kubernetes_guards"]``: :class:`KubeGuards` (protected namespaces, replica, resource and
  size ceilings); the defaults protect ``kube-system``.
- ``dry_run``: every mutating request is sent with ``dryRun=All``; nothing is stamped or stored.

Crash recovery asks :func:`check_effect` whether a step recorded as started already took effect:

- stamped actions (scale, rollout_restart, rollback_deployment, set_resources, trigger_cronjob) write
  ``kurative/step: <execution-id>/<step>`` in the same request as the change: the annotation on the
  object means DONE, its absence NOT_DONE;
- preconditioned deletions (delete_pod, evict_pod, delete_job) stamp the object, then delete it with
  its uid as precondition: gone (or terminating) means DONE, still there and stamped NOT_DONE, there
  without our stamp (possibly a replacement of the same name) UNKNOWN;
- idempotent actions answer NOT_DONE: running them again has the effect of running them once;
- UNKNOWN means the runner parks the execution for review.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema

from kurative.actions.base import ActionContext, ActionFunc, RepeatSafety
from kurative.actions.kubernetes import (  # noqa: F401  (importing declares the actions)
    generic,
    jobs,
    metadata,
    network,
    nodes,
    pods,
    storage,
    workloads,
)
from kurative.actions.kubernetes._common import (
    CHECKS,
    STAMP_ANNOTATION,
    Effect,
    KubeClient,
    KubeClients,
    KubeGuards,
)
from kurative.actions.registry import all_actions, get_action, implement
from kurative.durations import FORMAT_CHECKER
from kurative.errors import PermanentActionError

HINT_KEY = "x-kurative-hint"  # a schema's own words for a oneOf/anyOf failure ("give replicas or delta")


def _validating(name: str, schema: Mapping[str, Any], func: ActionFunc) -> ActionFunc:
    """Check the rendered params against the declared schema before the action runs.

    Lint checks literal params; templates are only known at run time, so a label that rendered to a
    number, or a typo in a param name, is caught here with a clear permanent error.
    """
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER)

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
