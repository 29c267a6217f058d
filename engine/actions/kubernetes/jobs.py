"""Job actions: suspend or resume a CronJob, start a Job from a CronJob now, delete a Job."""

from __future__ import annotations

from engine.actions.base import ActionSpec, RepeatSafety, Risk
from engine.actions.kubernetes._common import name_param, namespace_param, rule
from engine.actions.registry import declare
from engine.actions.schema import boolean, enum, obj, string

PROPAGATION = ("Background", "Foreground", "Orphan")
_CRONJOB_PARAMS = obj({"namespace": namespace_param(), "name": name_param("CronJob")}, ("namespace", "name"))
_SUSPEND_OUT = obj(
    {"suspended": boolean("spec.suspend after"), "changed": boolean("false when nothing needed changing")}
)

declare(
    ActionSpec(
        name="kubernetes.suspend_cronjob",
        summary="Suspend a CronJob so that it starts no new Jobs.",
        params=_CRONJOB_PARAMS,
        output=_SUSPEND_OUT,
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(rule("batch", "cronjobs", "get patch"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.resume_cronjob",
        summary="Resume a suspended CronJob.",
        params=_CRONJOB_PARAMS,
        output=_SUSPEND_OUT,
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
        rbac=(rule("batch", "cronjobs", "get patch"),),
    )
)

declare(
    ActionSpec(
        name="kubernetes.trigger_cronjob",
        summary="Start a Job from a CronJob's template now (`kubectl create job --from=cronjob/...`).",
        params=_CRONJOB_PARAMS,
        output=obj({"job": string("name of the Job created"), "created": boolean("false when it existed")}),
        risk=Risk.MEDIUM,
        repeat_safety=RepeatSafety.STAMPED,
        dry_run=True,
        rbac=(rule("batch", "cronjobs", "get"), rule("batch", "jobs", "create")),
    )
)

declare(
    ActionSpec(
        name="kubernetes.delete_job",
        summary="Delete a Job and (by default) its pods; preconditioned on the Job's uid.",
        params=obj(
            {
                "namespace": namespace_param(),
                "name": name_param("Job"),
                "propagation": enum("what happens to the Job's pods", PROPAGATION, "Background"),
            },
            ("namespace", "name"),
        ),
        output=obj({"uid": string("uid of the Job deleted"), "deleted": boolean("false when it was gone")}),
        risk=Risk.HIGH,
        repeat_safety=RepeatSafety.PRECONDITIONED,
        dry_run=True,
        rbac=(rule("batch", "jobs", "get delete"),),
    )
)
