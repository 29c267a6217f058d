"""The Kubernetes actions of the catalogue, one module per family, each action real.

Importing this package declares every ``kubernetes.*`` action and attaches its implementation; the
rendered params are checked against the declared schema before any action runs (``ActionSpec.run``).

What the runner provides (``ActionContext``):

- ``services["kubernetes"]``: clients by cluster (:class:`KubeClients`; the daemon passes an
  ``kurative.adapters.kubernetes.KubernetesAdapter``); ``ctx.cluster`` (the step's ``cluster:``) picks
  one, ``None`` the default context.
- ``services["kubernetes_guards"]``: :class:`KubeGuards` (protected namespaces, replica, resource and
  size ceilings); the defaults protect ``kube-system``.
- ``dry_run``: every mutating request is sent with ``dryRun=All``; nothing is stamped or stored.

Crash recovery asks :func:`check_effect` whether a step recorded as started already took effect:

- stamped actions (scale, rollout_restart, rollback_deployment, set_resources, trigger_cronjob) add
  ``<execution-id>/<step>`` to the ``kurative/step`` annotation (a comma-separated list of the 16
  most recent stamps, so a later step on the same object keeps earlier ones) in the same request
  as the change, preconditioned on the resourceVersion read: this step among the stamps means DONE,
  its absence NOT_DONE;
- preconditioned deletions (delete_pod, evict_pod, delete_job) stamp the object, then delete it with
  its uid as precondition: gone (or terminating) means DONE, still there and stamped NOT_DONE, there
  without our stamp (possibly a replacement of the same name) UNKNOWN;
- idempotent actions answer NOT_DONE: running them again has the effect of running them once;
- UNKNOWN means the runner parks the execution for review.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety
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
from kurative.actions.registry import get_action

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
