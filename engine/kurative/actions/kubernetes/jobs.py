"""Job actions: suspend or resume a CronJob, start a Job from a CronJob now, delete a Job."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kurative.actions.base import ActionContext, RepeatSafety, Risk
from kurative.actions.kubernetes._common import (
    Effect,
    check,
    check_name,
    check_target,
    client_for,
    declare_action,
    deletion_effect,
    dry_run_query,
    patch,
    read,
    rule,
    stamp,
    stamp_effect,
    stamp_then_delete,
    stamped,
    target_params,
)
from kurative.actions.kubernetes._kinds import KINDS, object_path
from kurative.actions.registry import implement
from kurative.actions.schema import boolean, enum, obj, string
from kurative.errors import ObjectConflict, PermanentActionError

PROPAGATION = ("Background", "Foreground", "Orphan")
_CRONJOB_PARAMS = target_params("CronJob")
_SUSPEND_OUT = obj(
    {"suspended": boolean("spec.suspend after"), "changed": boolean("false when nothing needed changing")}
)

for _name, _summary, _risk in (
    ("suspend_cronjob", "Suspend a CronJob so that it starts no new Jobs.", Risk.MEDIUM),
    ("resume_cronjob", "Resume a suspended CronJob.", Risk.LOW),
):
    declare_action(
        name=f"{_name}",
        summary=_summary,
        params=_CRONJOB_PARAMS,
        output=_SUSPEND_OUT,
        risk=_risk,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        rbac=(rule("batch", "cronjobs", "get patch"),),
    )

declare_action(
    name="trigger_cronjob",
    summary="Start a Job from a CronJob's template now (`kubectl create job --from=cronjob/...`).",
    params=_CRONJOB_PARAMS,
    output=obj({"job": string("name of the Job created"), "created": boolean("false when it existed")}),
    risk=Risk.MEDIUM,
    repeat_safety=RepeatSafety.STAMPED,
    rbac=(rule("batch", "cronjobs", "get"), rule("batch", "jobs", "get create")),
)

declare_action(
    name="delete_job",
    summary="Delete a Job and (by default) its pods; preconditioned on the Job's uid.",
    params=target_params(
        "Job", {"propagation": enum("what happens to the Job's pods", PROPAGATION, "Background")}
    ),
    output=obj({"uid": string("uid of the Job deleted"), "deleted": boolean("false when it was gone")}),
    risk=Risk.HIGH,
    repeat_safety=RepeatSafety.PRECONDITIONED,
    rbac=(rule("batch", "jobs", "get patch delete"),),
)


async def _cronjob(
    ctx: ActionContext, params: Mapping[str, Any], *, mutating: bool = True
) -> tuple[str, str, str]:
    namespace, name = check_target(ctx, params, "CronJob name", mutating=mutating)
    api_version, path = await object_path(client_for(ctx), KINDS["CronJob"], namespace, name)
    return api_version, name, path


async def _set_suspend(ctx: ActionContext, params: Mapping[str, Any], value: bool) -> Mapping[str, Any]:
    _v, _name, path = await _cronjob(ctx, params)
    client = client_for(ctx)
    current = await read(client, path)
    if bool((current.get("spec") or {}).get("suspend")) == value:
        return {"suspended": value, "changed": False}
    await patch(ctx, client, path, {"spec": {"suspend": value}})
    return {"suspended": value, "changed": True}


@implement("kubernetes.suspend_cronjob")
async def suspend_cronjob(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await _set_suspend(ctx, params, True)


@implement("kubernetes.resume_cronjob")
async def resume_cronjob(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    return await _set_suspend(ctx, params, False)


def manual_job_name(cronjob: str, ctx: ActionContext) -> str:
    """A Job name that is the same for every attempt of one step, so a repeat finds its Job."""
    digest = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8]
    return f"{cronjob[: 63 - 18].rstrip('-.')}-kurative-{digest}"


@implement("kubernetes.trigger_cronjob")
async def trigger_cronjob(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    api_version, name, path = await _cronjob(ctx, params)
    client = client_for(ctx)
    cronjob = await read(client, path)
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    namespace = str(params["namespace"])
    job_name = manual_job_name(name, ctx)
    meta = template.get("metadata") or {}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": namespace,
            "labels": dict(meta.get("labels") or {}),
            "annotations": {
                **(meta.get("annotations") or {}),
                "cronjob.kubernetes.io/instantiate": "manual",
                **stamp(ctx),
            },
            "ownerReferences": [
                {
                    "apiVersion": api_version,
                    "kind": "CronJob",
                    "name": name,
                    "uid": cronjob["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template.get("spec") or {},
    }
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    try:
        await client.request("POST", jobs_path, body=job, query=dry_run_query(ctx))
    except ObjectConflict:
        existing = await read(client, f"{jobs_path}/{job_name}")
        if not stamped(existing, ctx):
            raise PermanentActionError(
                f"a Job named {job_name} exists in {namespace} and was not created by this step"
            ) from None
        return {"job": job_name, "created": False}
    return {"job": job_name, "created": True}


@check("kubernetes.trigger_cronjob")
async def trigger_done(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    namespace = check_name(params.get("namespace"), "namespace", label=True)
    job = manual_job_name(check_name(params.get("name"), "CronJob name"), ctx)
    return await stamp_effect(client_for(ctx), f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}", ctx)


@implement("kubernetes.delete_job")
async def delete_job(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    namespace, name = check_target(ctx, params, "Job name")
    propagation = params.get("propagation", "Background")
    if propagation not in PROPAGATION:
        raise PermanentActionError(
            f"propagation must be one of {', '.join(PROPAGATION)}, got {propagation!r}"
        )
    uid, deleted = await stamp_then_delete(
        ctx,
        client_for(ctx),
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
        options={"propagationPolicy": propagation},
    )
    return {"uid": uid, "deleted": deleted}


@check("kubernetes.delete_job")
async def job_deleted(ctx: ActionContext, params: Mapping[str, Any]) -> Effect:
    namespace = check_name(params.get("namespace"), "namespace", label=True)
    name = check_name(params.get("name"), "Job name")
    return await deletion_effect(ctx, client_for(ctx), f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
