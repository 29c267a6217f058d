"""What every Kubernetes action shares: param schemas, guards, the cluster client seam and stamps.

Actions do not import the adapter (the layers contract keeps ``kurative.actions`` and
``kurative.adapters`` independent); they talk to whatever ``ctx.services["kubernetes"]`` holds through
the small :class:`KubeClient` protocol, which :mod:`kurative.adapters.kubernetes` implements. Guards
(protected namespaces, scale bounds, resource caps) are enforced here, in the action, so that a
playbook that slipped past lint still cannot touch ``kube-system``.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import functools
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kurative.actions.base import ActionContext, ActionSpec, RbacRule, RepeatSafety, Risk
from kurative.actions.registry import declare
from kurative.actions.schema import JSON, integer, obj, string
from kurative.errors import (
    GuardRefused,
    ObjectConflict,
    ObjectNotFound,
    PermanentActionError,
    TemporaryActionError,
)

STAMP_ANNOTATION = "kurative/step"
# How many steps' stamps an object keeps: the most recent ones, so the annotation stays small (~2 KB).
STAMP_HISTORY = 16
# Where kubectl keeps the revision of a Deployment's ReplicaSets (`kubectl rollout undo` reads it).
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --- param schemas -------------------------------------------------------------------------------
# Names are not constrained by a `pattern` in the schema: params are often templates such as
# "${labels.pod}", which lint accepts in place of any value; the action checks the rendered name.


def namespace_param() -> JSON:
    return string("namespace of the object (a DNS-1123 label)", maxLength=63)


def name_param(what: str) -> JSON:
    return string(f"name of the {what} (a DNS-1123 subdomain)", maxLength=253)


def node_param() -> JSON:
    return string("name of the node", maxLength=253)


def kind_param(kinds: tuple[str, ...], description: str = "kind of the workload") -> JSON:
    return {"type": "string", "enum": list(kinds), "description": description}


def target_params(
    what: str, extra: JSON | None = None, required: tuple[str, ...] = (), *, key: str = "name", **schema: Any
) -> JSON:
    """Params of an action on one namespaced object: its namespace, its name under ``key``, ``extra``."""
    return obj(
        {"namespace": namespace_param(), key: name_param(what), **(extra or {})},
        ("namespace", key, *required),
        **schema,
    )


def alternatives(combinator: str, keys: tuple[str, ...], hint: str) -> JSON:
    """A ``oneOf``/``anyOf`` over which of ``keys`` are given, with the words lint shows when it fails."""
    return {combinator: [{"required": [key]} for key in keys], "x-kurative-hint": hint}


def grace_param(whose: str = "the pod") -> JSON:
    return integer(f"seconds {whose} gets to shut down (default: the pod's own)", minimum=0)


def names_output(description: str) -> JSON:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def object_output() -> JSON:
    return {"type": "object", "description": "the object as the API server returned it"}


def declare_action(
    *,
    name: str,
    summary: str,
    params: JSON,
    output: JSON,
    risk: Risk,
    repeat_safety: RepeatSafety,
    rbac: tuple[RbacRule, ...],
) -> None:
    """Declare ``kubernetes.<name>``; every Kubernetes action honours dry run (``dryRun=All``)."""
    declare(
        ActionSpec(
            name=f"kubernetes.{name}",
            summary=summary,
            params=params,
            output=output,
            risk=risk,
            repeat_safety=repeat_safety,
            dry_run=True,
            rbac=rbac,
        )
    )


# --- RBAC helpers ----------------------------------------------------------------------------------


def rule(group: str, resources: str | tuple[str, ...], verbs: str, *, cluster: bool = False) -> RbacRule:
    names = (resources,) if isinstance(resources, str) else resources
    return RbacRule((group,), names, tuple(verbs.split()), cluster_scoped=cluster)


# --- the client seam -------------------------------------------------------------------------------


class KubeClient(Protocol):
    """One cluster's API, as JSON; errors arrive already mapped to :mod:`kurative.errors`.

    404 raises :class:`~kurative.errors.ObjectNotFound`, 409 :class:`~kurative.errors.ObjectConflict`;
    the rest are permanent or temporary action errors (429 and 5xx carry ``retry_after``).
    """

    @property
    def cluster(self) -> str: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any: ...

    async def read_text(self, path: str, *, query: Mapping[str, Any] | None = None) -> str:
        """GET a plain-text resource; never more than the query's ``limitBytes`` of it is read."""
        ...

    async def resource_path(self, group: str, versions: tuple[str, ...], resource: str) -> tuple[str, str]:
        """(apiVersion, base path) of the first of ``versions`` that serves ``resource``."""
        ...

    async def eviction_version(self) -> str:
        """``policy/v1`` or ``policy/v1beta1``, as the server's discovery says."""
        ...


class KubeClients(Protocol):
    """Clients by cluster name; ``None`` is the default cluster (current context or in-cluster)."""

    def client(self, cluster: str | None) -> KubeClient: ...


@dataclass(frozen=True, slots=True)
class KubeGuards:
    """Safety limits enforced by the actions themselves (``ctx.services["kubernetes_guards"]``)."""

    protected_namespaces: tuple[str, ...] = ("kube-system",)
    """Namespaces no mutating action may touch; reading is still allowed."""
    allowed_namespaces: tuple[str, ...] = ()
    """When not empty, the only namespaces mutating actions may touch (``safety.namespaces.allow``)."""
    denied_namespaces: tuple[str, ...] = ()
    """Namespaces mutating actions may not touch either (``safety.namespaces.deny``)."""
    max_replicas: int = 100
    """Hard ceiling for ``scale`` and ``patch_hpa`` whatever the playbook says."""
    max_cpu_millicores: int = 16_000
    """Highest CPU request or limit ``set_resources`` may set."""
    max_memory_bytes: int = 64 * 1024**3
    """Highest memory request or limit ``set_resources`` may set."""
    max_pvc_bytes: int = 4 * 1024**4
    """Largest size ``expand_pvc`` may request."""

    def refusal(self, namespace: str) -> str | None:
        """Why no mutating action may touch ``namespace`` ("is protected"...), or None if one may."""
        if namespace in self.protected_namespaces:
            return "is protected"
        if namespace in self.denied_namespaces:
            return "is denied (safety.namespaces.deny)"
        if self.allowed_namespaces and namespace not in self.allowed_namespaces:
            return "is not allowed (safety.namespaces.allow)"
        return None


def client_for(ctx: ActionContext) -> KubeClient:
    clients = ctx.services.get("kubernetes")
    if clients is None:
        raise PermanentActionError(
            "no Kubernetes client is configured: the daemon must be given a kubeconfig or run in-cluster"
        )
    client: KubeClient = clients.client(ctx.cluster)
    return client


def guards_for(ctx: ActionContext) -> KubeGuards:
    guards = ctx.services.get("kubernetes_guards")
    return guards if isinstance(guards, KubeGuards) else KubeGuards()


def check_name(value: Any, what: str, *, label: bool = False) -> str:
    """The rendered name, or a clear permanent error for an empty, non-string or malformed one."""
    if not isinstance(value, str) or not value:
        raise PermanentActionError(f"{what} must be a non-empty string, got {value!r}")
    pattern = _DNS_LABEL if label else _DNS_SUBDOMAIN
    limit = 63 if label else 253
    if len(value) > limit or not pattern.fullmatch(value):
        kind, chars = ("DNS-1123 label", "'-'") if label else ("DNS-1123 subdomain", "'-', '.'")
        raise PermanentActionError(
            f"{what} {value!r} is not a valid {kind}: use lower-case letters, digits and {chars}, "
            f"starting and ending with a letter or digit, at most {limit} characters"
        )
    return value


def check_namespace(ctx: ActionContext, value: Any, *, mutating: bool = True) -> str:
    namespace = check_name(value, "namespace", label=True)
    refusal = guards_for(ctx).refusal(namespace) if mutating else None
    if refusal is not None:
        raise GuardRefused(
            f"namespace {namespace} {refusal}: kurative does not change objects in it "
            "(configure safety.protectedNamespaces and safety.namespaces in the daemon settings)"
        )
    return namespace


def check_target(
    ctx: ActionContext, params: Mapping[str, Any], what: str, *, key: str = "name", mutating: bool = True
) -> tuple[str, str]:
    """(namespace, name) of the namespaced object a step names, after the guards."""
    return check_namespace(ctx, params.get("namespace"), mutating=mutating), check_name(params.get(key), what)


def dry_run_query(ctx: ActionContext) -> dict[str, str]:
    return {"dryRun": "All"} if ctx.dry_run else {}


MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


async def patch(
    ctx: ActionContext, client: KubeClient, path: str, body: Any, content_type: str = MERGE_PATCH
) -> Any:
    """PATCH ``path`` (server-side dry run when the step is one); the object as the server returns it."""
    return await client.request("PATCH", path, body=body, content_type=content_type, query=dry_run_query(ctx))


async def patch_read(
    ctx: ActionContext,
    client: KubeClient,
    path: str,
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    *,
    stamping: bool = False,
    content_type: str = MERGE_PATCH,
) -> Any:
    """PATCH ``changes`` onto the object as read (``current``): a 409 if it changed since.

    With ``stamping`` this step joins the ``kurative/step`` stamps in the same request, so that the
    check hook can tell whether the change took effect; the resourceVersion precondition makes the
    change and the stamp list one atomic write that loses no other step's stamp.
    """
    metadata: dict[str, Any] = {"resourceVersion": current["metadata"]["resourceVersion"]}
    if stamping:
        metadata["annotations"] = stamp(ctx, current)
    return await patch(ctx, client, path, {"metadata": metadata, **changes}, content_type)


def delete_options(ctx: ActionContext, uid: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DeleteOptions preconditioned on ``uid``, so that a new object of the same name is never hit."""
    found: dict[str, Any] = {"preconditions": {"uid": uid}, **(options or {})}
    if ctx.dry_run:
        found["dryRun"] = ["All"]
    return found


async def delete(ctx: ActionContext, client: KubeClient, path: str, options: Mapping[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "DeleteOptions", **options}
    await client.request("DELETE", path, body=body, query=dry_run_query(ctx))


async def evict(
    ctx: ActionContext,
    client: KubeClient,
    path: str,
    version: str,
    meta: Mapping[str, Any],
    options: Mapping[str, Any],
) -> None:
    """POST an Eviction of the pod at ``path`` (``meta``: its name and namespace)."""
    body = {
        "apiVersion": version,
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
        "deleteOptions": options,
    }
    await client.request("POST", f"{path}/eviction", body=body, query=dry_run_query(ctx))


def stamps_of(obj: Mapping[str, Any] | None) -> list[str]:
    """The steps (``<execution-id>/<step>``) that stamped ``obj``, oldest first.

    The annotation holds them comma-separated (step names and execution ids have no commas); a
    single id, as older builds wrote it, reads as a list of one.
    """
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(STAMP_ANNOTATION)
    return [part for part in value.split(",") if part] if isinstance(value, str) else []


def stamp(ctx: ActionContext, current: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The annotation a stamped mutation of ``current`` writes, so that a repeat can see it took effect.

    This step's id is appended to the stamps ``current`` already carries, so that a later step of
    another execution on the same object does not erase it; only the :data:`STAMP_HISTORY` most
    recent are kept, which bounds the annotation (a step is checked soon after it ran: at recovery).
    """
    kept = [key for key in stamps_of(current) if key != ctx.idempotency_key]
    return {STAMP_ANNOTATION: ",".join([*kept, ctx.idempotency_key][-STAMP_HISTORY:])}


def stamped(obj: Mapping[str, Any], ctx: ActionContext) -> bool:
    """Whether this step is among the stamps of ``obj``."""
    return ctx.idempotency_key in stamps_of(obj)


# --- "did this step already take effect?" ----------------------------------------------------------


class Effect(enum.StrEnum):
    """Answer of a check hook, for crash recovery of a step recorded as started but not finished."""

    DONE = "done"  # the step took effect: record it as finished without running it again
    NOT_DONE = "not_done"  # nothing happened: running it (again) is safe
    UNKNOWN = "unknown"  # cannot tell: recovery parks the execution for review


CheckFunc = Callable[[ActionContext, Mapping[str, Any]], Awaitable[Effect]]
CHECKS: dict[str, CheckFunc] = {}


def check(name: str) -> Callable[[CheckFunc], CheckFunc]:
    """Register the check hook of an action (its companion to the declaration)."""

    def attach(func: CheckFunc) -> CheckFunc:
        CHECKS[name] = func
        return func

    return attach


# --- helpers shared by the implementations --------------------------------------------------------

# The Kubernetes quantity grammar (k8s.io/apimachinery resource.Quantity): a number with an optional
# sign (digits, "1.5", "1." or ".5"), then a binary suffix, a decimal exponent (e3, E-2) or a decimal
# suffix. "E" alone is exa; "E" followed by digits is an exponent, which the alternation tries first.
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE](?P<exponent>[+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_FACTORS = {
    None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4, "Pi": 1024.0**5,
    "Ei": 1024.0**6,
}  # fmt: skip


def parse_quantity(value: Any, what: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``512Mi``, ``129e6``) in base units, or a clear
    permanent error; negative quantities, valid in the grammar, are refused: nothing here takes one."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise PermanentActionError(
            f"{what} {value!r} is not a Kubernetes quantity (such as 500m, 2, 512Mi, 20Gi, 129e6)"
        )
    if match["sign"] == "-" and float(match["number"]) != 0:
        raise PermanentActionError(f"{what} {value!r} is negative: give a quantity of 0 or more")
    exponent = match["exponent"]
    if float(match["number"]) == 0:
        return 0.0
    try:
        factor = 10.0 ** int(exponent) if exponent is not None else _FACTORS[match["suffix"]]
    except (OverflowError, ValueError):  # ValueError: an exponent of over 4,300 digits
        factor = math.inf
    quantity = float(match["number"]) * factor
    if not math.isfinite(quantity):
        raise PermanentActionError(f"{what} {str(value)[:40]!r} is too large a quantity")
    return quantity


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def read(client: KubeClient, path: str) -> dict[str, Any]:
    found = await client.request("GET", path)
    if not isinstance(found, dict):
        raise PermanentActionError(f"GET {path}: the API server answered no object")
    return found


async def delete_preconditioned(
    ctx: ActionContext,
    client: KubeClient,
    path: str,
    meta: Mapping[str, Any],
    *,
    evict_version: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> bool:
    """Delete (or evict) the object ``meta`` describes, preconditioned on its uid; False when gone.

    Gone means a 404, or the 409 of the uid precondition with a new object of that name in its place
    (a StatefulSet pod comes back under its name): the object acted on no longer exists, and the
    replacement is not ours to delete, so this is done, not a conflict to retry. Any temporary
    failure is checked the same way (v1.20 retries an eviction's uid conflict for 10 s before its
    409, which can outlast the read timeout). While the same object is still there (a lost race on
    a PodDisruptionBudget, a 429), the error is the temporary one it says.
    """
    uid = str(meta["uid"])
    found = delete_options(ctx, uid, options)
    try:
        if evict_version is not None:
            await evict(ctx, client, path, evict_version, meta, found)
        else:
            await delete(ctx, client, path, found)
    except ObjectNotFound:
        return False
    except TemporaryActionError:
        if await _replaced(client, path, uid):
            return False
        raise
    return True


async def _replaced(client: KubeClient, path: str, uid: str) -> bool:
    """Whether the object with ``uid`` is gone from ``path`` (absent, or another object by that name)."""
    try:
        current = await read(client, path)
    except ObjectNotFound:
        return True
    return bool(current["metadata"].get("uid") != uid)


async def stamp_then_delete(
    ctx: ActionContext,
    client: KubeClient,
    path: str,
    *,
    evict_version: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[str, bool]:
    """Delete (or evict) the object at ``path`` preconditioned on the uid read first.

    Before a real deletion the object is stamped with ``kurative/step``, so that crash recovery can
    tell "never deleted" (stamped object still there) from "already replaced" (a new, unstamped
    object of the same name). The stamp is preconditioned on the uid and resourceVersion read, so
    it never lands on a replacement nor drops another step's stamp. Returns (uid of the object acted
    on, whether this step deleted it): ("", False) when it was gone already, (uid, False) when it
    was replaced meanwhile.
    """
    uid = ""
    for tries in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            current = await read(client, path)
        except ObjectNotFound:
            return uid, False
        meta = current["metadata"]
        if uid and meta["uid"] != uid:
            return uid, False  # replaced while this step stamped it: the new object is not ours
        uid = str(meta["uid"])
        if ctx.dry_run or stamped(current, ctx):
            break
        changes = {"uid": uid, "resourceVersion": meta["resourceVersion"], "annotations": stamp(ctx, current)}
        try:
            await patch(ctx, client, path, {"metadata": changes})
            break
        except ObjectNotFound:
            return uid, False
        except ObjectConflict:
            if tries == CONFLICT_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * tries)
    sent = await delete_preconditioned(ctx, client, path, meta, evict_version=evict_version, options=options)
    return uid, sent


async def deletion_effect(ctx: ActionContext, client: KubeClient, path: str) -> Effect:
    """Check hook of the stamp-then-delete actions (see :func:`stamp_then_delete`)."""
    try:
        current = await read(client, path)
    except ObjectNotFound:
        return Effect.DONE
    if current["metadata"].get("deletionTimestamp") and stamped(current, ctx):
        return Effect.DONE
    if stamped(current, ctx):
        return Effect.NOT_DONE
    return Effect.UNKNOWN


async def stamp_effect(client: KubeClient, path: str, ctx: ActionContext) -> Effect:
    """Check hook of stamped mutations: the annotation and the change are written in one request."""
    try:
        current = await read(client, path)
    except ObjectNotFound:
        return Effect.NOT_DONE
    return Effect.DONE if stamped(current, ctx) else Effect.NOT_DONE


def owner_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            found: Mapping[str, Any] = ref
            return found
    return None


CONFLICT_ATTEMPTS = 5
ActionImpl = Callable[[ActionContext, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


def retry_conflicts(func: ActionImpl) -> ActionImpl:
    """Re-run a read-modify-write action when its write lost a race (409), as kubectl does.

    Controllers update status all the time, so the resourceVersion read a moment ago is often stale
    already; the action reads again and recomputes. After a few lost races the conflict goes to the
    runner as a temporary error.
    """

    @functools.wraps(func)
    async def attempt(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        for tries in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await func(ctx, params)
            except ObjectConflict:
                if tries == CONFLICT_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * tries)
        raise AssertionError("unreachable")  # pragma: no cover

    return attempt
