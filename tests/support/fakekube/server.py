"""The HTTP face of the fake API server: the REST paths, discovery and Status bodies of Kubernetes.

A Starlette app served by uvicorn in a thread, on 127.0.0.1 and a free port, that the official
``kubernetes`` client talks to exactly as it talks to a real API server (bearer tokens, JSON, the
three patch content types, ``dryRun=All``, label and field selectors, subresources). Faults can be
injected per path (an HTTP status with a ``Retry-After``, or a delay longer than the client's
timeout) to test how actions react to a failing or hanging server, and the whole server can be put
into an :class:`Outage` (every request answers 5xx with a ``Status`` body, or is held unanswered until
the outage ends) to test breakers and recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.fakekube.store import BY_PATH, RESOURCES, ApiStatus, ResourceType, Store

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FAKE_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kurative-fake", "platform": "linux/amd64"}
ADMIN = "admin"
UNPRIVILEGED = "kurative"


@dataclass
class Fault:
    """Answer requests whose method and path match with ``status`` (or hang for ``delay`` seconds)."""

    method: str
    path: str  # a regular expression, matched against the whole path
    status: int = 500
    delay: float = 0.0
    retry_after: int | None = None
    times: int | None = None  # None: forever
    seen: int = 0


@dataclass
class Outage:
    """The whole server is down: every request answers ``status`` or, with ``hang``, is accepted and
    held without an answer until :meth:`end` (then it is served as the recovered server serves it)."""

    status: int = 500
    hang: bool = False
    seen: int = 0
    """Requests that met the outage."""
    ended: threading.Event = field(default_factory=threading.Event)

    def end(self) -> None:
        self.ended.set()


@dataclass
class _Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _verbs(rt: ResourceType) -> list[str]:
    return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _discovery(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rt in RESOURCES:
        if (rt.group, rt.version) != (group, version):
            continue
        resources.append(
            {
                "name": rt.resource,
                "singularName": rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _verbs(rt),
            }
        )
        for sub in rt.subresources:
            entry: dict[str, Any] = {
                "name": f"{rt.resource}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
            }
            if sub == "eviction":
                entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            elif sub == "binding":
                entry.update(kind="Binding", verbs=["create"])
            elif sub == "scale":
                entry.update(
                    group="autoscaling", version="v1", kind="Scale", verbs=["get", "patch", "update"]
                )
            elif sub == "log":
                entry.update(kind="Pod", verbs=["get"])
            else:
                entry.update(kind=rt.kind, verbs=["get", "patch", "update"])
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _groups() -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {}
    for rt in RESOURCES:
        if rt.group and rt.version not in names.setdefault(rt.group, []):
            names[rt.group].append(rt.version)
    return [
        {
            "name": name,
            "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
        }
        for name, versions in names.items()
    ]


class FakeApiServer:
    """The ASGI app over one :class:`Store`."""

    def __init__(self, store: Store, tokens: dict[str, str]) -> None:
        self.store = store
        self.tokens = tokens
        self.faults: list[Fault] = []
        self.outage: Outage | None = None
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
        )

    async def handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.requests.append((request.method, path))
        outage = self.outage
        if outage is not None and not outage.ended.is_set():
            outage.seen += 1
            if not outage.hang:
                reason = {503: "ServiceUnavailable", 504: "Timeout"}.get(outage.status, "InternalError")
                return self._status(
                    ApiStatus(outage.status, reason, f"injected outage: HTTP {outage.status}")
                )
            while not outage.ended.is_set():
                await asyncio.sleep(0.02)
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in self.tokens.values():
            return self._status(ApiStatus(401, "Unauthorized", "Unauthorized"))
        user = next(name for name, known in self.tokens.items() if known == token)
        if user != ADMIN and (refused := _forbidden(user, request.method, path, request.query_params)):
            return self._status(refused)
        for fault in list(self.faults):
            if fault.method in (request.method, "*") and re.fullmatch(fault.path, path):
                fault.seen += 1
                if fault.times is not None and fault.seen >= fault.times:
                    self.faults.remove(fault)
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                    continue
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(
                    fault.status, "InternalError"
                )
                return self._status(
                    ApiStatus(
                        fault.status, reason, f"injected fault {fault.status} for {path}", headers=headers
                    )
                )
        try:
            return await self._dispatch(request, path)
        except ApiStatus as status:
            return self._status(status)

    @staticmethod
    def _status(status: ApiStatus) -> Response:
        return JSONResponse(status.body(), status_code=status.code, headers=status.headers)

    async def _dispatch(self, request: Request, path: str) -> Response:
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return JSONResponse(FAKE_VERSION)
        if parts == ["api"]:
            return JSONResponse({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": _groups()})
        if len(parts) == 2 and parts[0] == "apis":
            group = next((g for g in _groups() if g["name"] == parts[1]), None)
            if group is None:
                raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
            return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **group})
        if parts == ["api", "v1"]:
            return JSONResponse(_discovery("", "v1"))
        if len(parts) == 3 and parts[0] == "apis":
            if not any((rt.group, rt.version) == (parts[1], parts[2]) for rt in RESOURCES):
                raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
            return JSONResponse(_discovery(parts[1], parts[2]))
        route = self._route(parts)
        return await self._serve(request, route)

    def _route(self, parts: list[str]) -> _Route:
        missing = ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise missing
        namespace = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise missing
        rt = BY_PATH.get((group, version, rest[0]))
        if rt is None or (namespace is not None and not rt.namespaced):
            raise missing
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub is not None and sub not in rt.subresources):
            raise missing
        return _Route(rt, namespace, name, sub)

    async def _serve(self, request: Request, r: _Route) -> Response:
        q = request.query_params
        dry_run = q.get("dryRun") == "All"
        method = request.method
        store, rt, ns = self.store, r.rt, r.namespace or ""
        body: Any = None
        raw = await request.body()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ApiStatus(
                    400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
                ) from exc
        if rt.namespaced and r.name is not None and r.namespace is None:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if r.name is None:
            if method == "GET":
                limit = int(q["limit"]) if q.get("limit") else None
                return JSONResponse(
                    store.list(rt, r.namespace, q.get("labelSelector"), q.get("fieldSelector"), limit)
                )
            if method == "POST":
                return JSONResponse(store.create(rt, ns, body, dry_run=dry_run), status_code=201)
            raise ApiStatus(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        name = r.name
        if r.subresource == "eviction" and method == "POST":
            return JSONResponse(store.evict(ns, name, body or {}, dry_run=dry_run), status_code=201)
        if r.subresource == "binding" and method == "POST":
            return JSONResponse(store.bind(ns, name, body or {}, dry_run=dry_run), status_code=201)
        if r.subresource == "log" and method == "GET":
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            text = store.log(ns, name, q.get("container"), tail, q.get("previous") == "true")
            return PlainTextResponse(text)
        if r.subresource == "scale":
            if method in ("PUT", "PATCH"):
                if method == "PUT":
                    replicas = ((body or {}).get("spec") or {}).get("replicas")
                    rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
                else:
                    replicas = ((body or {}).get("spec") or {}).get("replicas")
                    rv = None
                patch: dict[str, Any] = {"spec": {"replicas": replicas}}
                if rv:
                    patch["metadata"] = {"resourceVersion": rv}
                store.patch(rt, ns, name, patch, "application/merge-patch+json", dry_run=dry_run)
            return JSONResponse(store.scale(rt, ns, name))
        if method == "GET":
            return JSONResponse(store.get(rt, ns, name))
        if method == "PUT":
            return JSONResponse(store.replace(rt, ns, name, body, subresource=r.subresource, dry_run=dry_run))
        if method == "PATCH":
            content_type = request.headers.get("content-type", "")
            return JSONResponse(
                store.patch(rt, ns, name, body, content_type, subresource=r.subresource, dry_run=dry_run)
            )
        if method == "DELETE" and r.subresource is None:
            options = dict(body or {})
            for key in ("gracePeriodSeconds",):
                if q.get(key) is not None:
                    options[key] = int(q[key])
            if q.get("propagationPolicy"):
                options["propagationPolicy"] = q["propagationPolicy"]
            return JSONResponse(
                store.delete(rt, ns, name, options, dry_run=dry_run or options.get("dryRun") == ["All"])
            )
        raise ApiStatus(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )


_NAMESPACE_SUBRESOURCES = ("status", "finalize")


def _forbidden(user: str, method: str, path: str, query: Any) -> ApiStatus | None:
    """The 403 of kube-apiserver's RBAC authorizer for a user granted nothing (None: discovery).

    The fake evaluates no Roles or bindings: every user but the admin may only read discovery, as the
    real server's ``kurative`` test user may. The request is parsed as the real server's
    RequestInfoFactory does, so the refusal comes before any lookup, even of unknown resources.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = (
        f'User "{user}" cannot {verb} resource "{resource + ("/" + subresource if subresource else "")}" '
        f'in API group "{group}" {scope}'
    )
    qualified = f"{resource}.{group}" if group else resource
    return ApiStatus(
        403,
        "Forbidden",
        f'{qualified} "{name}" is forbidden: {why}' if name else f"{qualified} is forbidden: {why}",
        {"name": name, "group": group, "kind": resource},
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeCluster:
    """A running fake API server, shaped like tests.support.realkube.RealCluster."""

    host: str
    tokens: dict[str, str]
    server: FakeApiServer
    _uvicorn: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    name: str = "fake"

    @property
    def store(self) -> Store:
        return self.server.store

    @property
    def admin_token(self) -> str:
        return self.tokens[ADMIN]

    def user_token(self, name: str) -> str:
        return self.tokens[name]

    def kubeconfig(self, path: Path, user: str = ADMIN) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.host}}],
            "users": [{"name": user, "user": {"token": self.user_token(user)}}],
            "contexts": [{"name": f"{user}@fakekube", "context": {"cluster": "fakekube", "user": user}}],
            "current-context": f"{user}@fakekube",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def api_client(self, user: str = ADMIN) -> ApiClient:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.host
        configuration.api_key = {"authorization": self.user_token(user)}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def inject(self, fault: Fault) -> Fault:
        self.server.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def outage(self, status: int = 500, *, hang: bool = False) -> Outage:
        """Take the whole server down (see :class:`Outage`), ending any outage before it."""
        self.recover()
        self.server.outage = made = Outage(status, hang)
        return made

    def recover(self) -> None:
        """End the outage: held requests are served, new ones too."""
        outage, self.server.outage = self.server.outage, None
        if outage is not None:
            outage.end()

    def set_log(self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False) -> None:
        """What the kubelet would serve as the container's log (nothing runs pods here)."""
        self.store.logs[(namespace, pod, container + ("#previous" if previous else ""))] = text

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)


def start_fake_cluster() -> FakeCluster:
    tokens = {ADMIN: "fake-admin-token", UNPRIVILEGED: "fake-kurative-token"}
    server = FakeApiServer(Store(), tokens)
    port = _free_port()
    config = uvicorn.Config(
        server.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        access_log=False,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, name="fakekube", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake API server did not start")
        time.sleep(0.01)
    return FakeCluster(f"http://127.0.0.1:{port}", tokens, server, runner, thread)


@contextlib.contextmanager
def fake_cluster() -> Iterator[FakeCluster]:
    cluster = start_fake_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
