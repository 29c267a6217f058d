"""What to do with a step that a dead holder recorded as started but never finished.

Finished steps are never run again. For an open step, and before another attempt of a step whose
last attempt failed after it may have reached its target (a timeout, a reset connection, a 5xx after
the change was applied), the action's declared repeat-safety decides:
idempotent actions run again; stamped and preconditioned Kubernetes actions are asked whether their
effect is there (the stamp annotation, the object gone): done means it is recorded as succeeded and
flagged recovered, not done means it runs, unknown parks the execution for review. A stamped action
outside Kubernetes (``http.request``) carries the same ``Idempotency-Key`` on every repeat, which is how
its receiver recognises one: it is sent again. Unsafe actions are parked for review.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, ActionSpec, RepeatSafety
from kurative.actions.kubernetes import Effect, check_effect
from kurative.errors import BreakerOpen, KurativeError, TemporaryActionError


class Recovery(enum.StrEnum):
    DONE = "done"
    RUN = "run"
    REVIEW = "review"


async def recover_step(
    spec: ActionSpec, ctx: ActionContext, params: Mapping[str, Any], *, ask_again: bool = False
) -> Recovery:
    """The fate of a step of ``spec`` that may have taken effect (it was interrupted, or an attempt
    failed in a way that does not prove nothing happened), run as ``ctx`` with the recorded ``params``.
    :class:`~kurative.errors.BreakerOpen` while the target cannot even be asked; with ``ask_again``, a
    temporary error of the check too (the caller asks again later), instead of parking for review.
    A dry run changes nothing (and stamps nothing to look for): it runs again."""
    if ctx.dry_run or spec.repeat_safety is RepeatSafety.IDEMPOTENT:
        return Recovery.RUN
    if spec.repeat_safety is RepeatSafety.UNSAFE:
        return Recovery.REVIEW
    if not spec.name.startswith("kubernetes."):
        return Recovery.RUN if spec.repeat_safety is RepeatSafety.STAMPED else Recovery.REVIEW
    try:
        effect = await check_effect(spec.name, ctx, params)
    except BreakerOpen:
        raise
    except TemporaryActionError:
        if ask_again:
            raise
        return Recovery.REVIEW
    except KurativeError:
        return Recovery.REVIEW
    return {Effect.DONE: Recovery.DONE, Effect.NOT_DONE: Recovery.RUN}.get(effect, Recovery.REVIEW)
