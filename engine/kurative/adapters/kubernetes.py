"""The Kubernetes adapter: the official client, one per cluster, called from a bounded thread pool.

The official ``kubernetes`` client is synchronous, so every call runs in a shared, bounded
:class:`~concurrent.futures.ThreadPoolExecutor` and never blocks the event loop. Requests carry a
connect and a read timeout, so an API server that hangs fails the call instead of the daemon.

Actions speak JSON to the API (``request(method, path, ...)``) and get our own errors back: the
HTTP status and the ``Status`` body are mapped to :mod:`kurative.errors`, split into permanent (404,
403, 422, 400, 401) and temporary (409, 429 with its ``Retry-After``, 5xx, timeouts, refused
connections) failures. Versions that differ between clusters (Eviction and PodDisruptionBudget are
``policy/v1`` on new clusters and ``policy/v1beta1`` on 1.20; CronJob ``batch/v1`` or ``batch/v1beta1``)
are chosen by discovery, as kubectl does, and cached per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pybreaker
import structlog
import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as _k8s_config

from kurative.adapters.breaking import call_through_sync
from kurative.adapters.kube_settings import (
    KubeSettings,
    kubeconfig_path,
    missing_config,
    uses_service_account,
)
from kurative.errors import (
    ConfigError,
    ObjectConflict,
    ObjectNotFound,
    PermanentActionError,
    TemporaryActionError,
)

Answer = tuple[int, str, Mapping[str, str]]  # HTTP status, body text, headers
log = structlog.get_logger("kurative.adapters.kubernetes")
k8s_config: Any = _k8s_config  # untyped module

# How much of a remote error body ends up in a message (and so in logs and the journal).
MAX_BODY_IN_MESSAGE = 400
READ_CHUNK = 64 * 1024  # how much of a bounded answer (read_text with limitBytes) is read at a time


def _read_at_most(raw: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of a streamed answer (a urllib3 response not yet read), in chunks."""
    data = bytearray()
    while len(data) < limit:
        chunk = raw.read(min(READ_CHUNK, limit - len(data)))
        if not chunk:
            raw.release_conn()
            return bytes(data)
        data += chunk
    raw.close()  # the rest stays unread: this connection cannot be reused
    return bytes(data)


class ForbiddenError(PermanentActionError):
    """403: the identity kurative runs as lacks an RBAC rule (``kurative rbac`` prints the ones needed)."""


class UnauthorizedError(PermanentActionError):
    """401: the credentials were rejected (expired token, wrong kubeconfig user)."""


class InvalidObjectError(PermanentActionError):
    """422 or 400: the API server refused the request or the object as invalid."""


class TooManyRequestsError(TemporaryActionError):
    """429: throttled, or an eviction that would violate a PodDisruptionBudget; retry after the delay."""


class ServerError(TemporaryActionError):
    """5xx: the API server failed; retrying later may help."""


class ApiTimeoutError(TemporaryActionError):
    """The API server did not answer in time."""


class UnreachableError(TemporaryActionError):
    """The API server could not be reached (refused connection, DNS, TLS handshake)."""


class _FailedAnswer(Exception):
    """A 5xx answer, raised only inside the breaker so that it counts as a failure."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


class ClusterConfigError(ConfigError, PermanentActionError):
    """No usable kubeconfig or in-cluster config for the cluster a step names."""


def _status_message(body: str) -> tuple[str, str, Any]:
    """(message, reason, details) of a Kubernetes ``Status`` body, or the truncated raw body."""
    try:
        status = json.loads(body)
    except (ValueError, TypeError):
        return (body or "").strip()[:MAX_BODY_IN_MESSAGE], "", None
    if not isinstance(status, dict):
        return str(status)[:MAX_BODY_IN_MESSAGE], "", None
    message = str(status.get("message") or status.get("reason") or "")[:MAX_BODY_IN_MESSAGE]
    return message, str(status.get("reason") or ""), status.get("details")


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_status(
    status: int, body: str, headers: Mapping[str, str] | None, what: str
) -> PermanentActionError | TemporaryActionError:
    """The error of our tree for an HTTP status from the API server; ``what`` names the request."""
    message, reason, details = _status_message(body)
    text = f"{what}: {message or f'HTTP {status}'}"
    retry_after = _retry_after(headers)
    if status == 404:
        return ObjectNotFound(text)
    if status == 409:
        return ObjectConflict(text, retry_after=retry_after if retry_after is not None else 1.0)
    if status == 403:
        return ForbiddenError(f"{text} (grant the rule with the output of `kurative rbac`)")
    if status == 401:
        return UnauthorizedError(f"{text} (the cluster credentials were rejected)")
    if status in (400, 422):
        causes = (details or {}).get("causes") if isinstance(details, dict) else None
        if causes and not message:
            text += "; " + "; ".join(str(c.get("message")) for c in causes if isinstance(c, dict))
        return InvalidObjectError(text)
    if status == 429:
        return TooManyRequestsError(text, retry_after=retry_after if retry_after is not None else 1.0)
    if status == 410:
        return TemporaryActionError(f"{text} (resource version expired)", retry_after=0.0)
    if status >= 500:
        return ServerError(
            f"{text} (HTTP {status}{', ' + reason if reason else ''})", retry_after=retry_after
        )
    return PermanentActionError(f"{text} (HTTP {status})")


class ClusterClient:
    """One cluster's API server, reached through one official ``ApiClient``."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        name: str = "default",
        executor: ThreadPoolExecutor | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        breaker: pybreaker.CircuitBreaker | None = None,
    ) -> None:
        self._api: Any = api_client  # the client is only partly typed
        self._breaker = breaker
        self._name = name
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube")
        self._timeout = (connect_timeout, read_timeout)
        self._discovery: dict[str, frozenset[str] | None] = {}
        self._discovery_lock = threading.Lock()
        # A refused connection must fail now, not after urllib3's default three silent retries;
        # retrying is the runner's decision (with backoff and the breaker). Reads are never retried
        # here because a POST that timed out may have been applied.
        retries = urllib3.Retry(
            total=1, connect=1, read=0, redirect=0, status=0, other=0, respect_retry_after_header=False
        )
        api_client.configuration.retries = retries
        api_client.rest_client.pool_manager.connection_pool_kw["retries"] = retries

    @property
    def cluster(self) -> str:
        return self._name

    @property
    def api_client(self) -> k8s_client.ApiClient:
        api: k8s_client.ApiClient = self._api
        return api

    def close(self) -> None:
        self._api.close()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def breaker(self) -> pybreaker.CircuitBreaker | None:
        """This cluster's circuit breaker (its state is what metrics export), if it has one."""
        return self._breaker

    async def _run(self, func: Callable[[], Answer]) -> Answer:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._through_breaker(func))

    def _through_breaker(self, func: Callable[[], Answer]) -> Answer:
        """Count refused connections, timeouts and 5xx answers; fail fast while the breaker is open.
        Calls run outside the breaker's lock, so calls to one cluster run side by side.

        4xx answers are the API working as it should (a missing object, a conflict, a PDB saying
        no), so they count as successes.
        """
        if self._breaker is None:
            return func()

        def attempt() -> Answer:
            answer = func()
            if answer[0] >= 500:
                raise _FailedAnswer(answer)
            return answer

        try:
            return call_through_sync(self._breaker, attempt, target=f"kubernetes/{self._name}")
        except _FailedAnswer as failed:
            return failed.answer

    def _call(
        self,
        method: str,
        *,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str | None,
        accept: str,
        limit: int | None = None,
    ) -> Answer:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        query_params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        m, url, header_params, ser_body, _post = self._api.param_serialize(
            method,
            path,
            query_params=query_params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        what = f"{method} {path}"
        try:
            response = self._api.call_api(
                m, url, header_params=header_params, body=ser_body, _request_timeout=self._timeout
            )
            data = response.read() if limit is None else _read_at_most(response.response, limit)
        except urllib3.exceptions.MaxRetryError as exc:
            reason = exc.reason
            # NewConnectionError derives from ConnectTimeoutError in urllib3: test it first.
            if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError
            ):
                raise ApiTimeoutError(
                    f"{what}: the API server of cluster {self._name} did not answer in time"
                ) from exc
            raise UnreachableError(
                f"{what}: cannot reach the API server of cluster {self._name}: {reason}"
            ) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise ApiTimeoutError(
                f"{what}: the API server of cluster {self._name} did not answer within {self._timeout[1]:g}s"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UnreachableError(f"{what}: connection to cluster {self._name} failed: {exc}") from exc
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data or "")
        return int(response.status), text, dict(response.headers or {})

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON answer or raise a mapped error."""
        status, text, headers = await self._run(
            lambda: self._call(
                method,
                path=path,
                query=query,
                body=body,
                content_type=content_type,
                accept="application/json",
            )
        )
        if status >= 300:
            error = map_status(status, text, headers, f"{method} {path}")
            # Throttling and server failures matter to operators; 404s and 409s are routine.
            await log.alog(
                logging.WARNING if status >= 500 or status == 429 else logging.DEBUG,
                "kube_api_error",
                cluster=self._name,
                method=method,
                path=path,
                status=status,
                error=str(error)[:MAX_BODY_IN_MESSAGE],
            )
            raise error
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ServerError(f"{method} {path}: the API server answered something that is not JSON") from exc

    async def read_text(self, path: str, *, query: Mapping[str, Any] | None = None) -> str:
        """GET a plain-text resource (pod logs). With ``limitBytes`` in the query no more than that
        is read, even from a server that sends more: a huge log never sits in memory whole."""
        limit = (query or {}).get("limitBytes")
        status, text, headers = await self._run(
            lambda: self._call(
                "GET",
                path=path,
                query=query,
                body=None,
                content_type=None,
                accept="*/*",
                limit=int(limit) if limit is not None else None,
            )
        )
        if status >= 300:
            raise map_status(status, text, headers, f"GET {path}")
        return text

    async def resource_path(self, group: str, versions: tuple[str, ...], resource: str) -> tuple[str, str]:
        """(apiVersion, base path) of the first of ``versions`` in which the server serves ``resource``."""
        for version in versions:
            base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            served = await self._served(base)
            if served is not None and resource in served:
                return (version if not group else f"{group}/{version}"), base
        wanted = ", ".join(f"{group}/{v}" if group else v for v in versions)
        raise PermanentActionError(
            f"cluster {self._name} serves no {resource} in any of {wanted}: "
            "this Kubernetes version is not supported for the action"
        )

    async def eviction_version(self) -> str:
        """The Eviction apiVersion the server wants, read from the ``pods/eviction`` discovery entry."""
        cached = self._discovery.get("eviction")
        if cached:
            return next(iter(cached))
        version = "policy/v1beta1"  # servers too old to say
        for entry in ((await self.request("GET", "/api/v1")) or {}).get("resources", []):
            if entry.get("name") == "pods/eviction" and entry.get("group") and entry.get("version"):
                version = f"{entry['group']}/{entry['version']}"
        with self._discovery_lock:
            self._discovery["eviction"] = frozenset({version})
        return version

    async def _served(self, base: str) -> frozenset[str] | None:
        with self._discovery_lock:
            if base in self._discovery:
                return self._discovery[base]
        try:
            answer = await self.request("GET", base)
            names = frozenset(str(r.get("name")) for r in (answer or {}).get("resources", []))
        except ObjectNotFound:
            names = None
        with self._discovery_lock:
            self._discovery[base] = names
        return names


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    """Log every breaker transition, so an open breaker is never silent."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        log.warning(
            "breaker_state_changed",
            breaker=cb.name,
            old=getattr(old_state, "name", str(old_state)),
            new=getattr(new_state, "name", str(new_state)),
        )


class KubernetesAdapter:
    """Clients by cluster name, built lazily from kubeconfig contexts (or in-cluster config)."""

    def __init__(
        self,
        settings: KubeSettings | None = None,
        *,
        breaker_listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
        breakers: Callable[[str], pybreaker.CircuitBreaker] | None = None,
    ) -> None:
        """``breakers`` hands out the breaker of a target (``kubernetes/<cluster>``), as the daemon's
        breaker policy does; without it each cluster gets one built from ``settings``."""
        self.settings = settings or KubeSettings()
        self._breakers = breakers
        self._executor = ThreadPoolExecutor(max_workers=self.settings.max_workers, thread_name_prefix="kube")
        self._clients: dict[str | None, ClusterClient] = {}
        self._lock = threading.Lock()
        self._listeners = (_LogTransitions(), *breaker_listeners)

    def _new_client(self, api_client: Any, name: str) -> ClusterClient:
        breaker = None
        if self._breakers is not None:
            breaker = self._breakers(f"kubernetes/{name}")
        elif self.settings.breaker_fail_max > 0:
            breaker = pybreaker.CircuitBreaker(
                fail_max=self.settings.breaker_fail_max,
                reset_timeout=self.settings.breaker_reset_timeout,
                listeners=self._listeners,
                name=f"kubernetes/{name}",
                throw_new_error_on_trip=False,  # the call that trips still reports its own error
            )
        return ClusterClient(
            api_client,
            name=name,
            executor=self._executor,
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            breaker=breaker,
        )

    def client(self, cluster: str | None) -> ClusterClient:
        key = cluster or None
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = self._build(key)
            return found

    def add_client(self, cluster: str | None, api_client: k8s_client.ApiClient) -> ClusterClient:
        """Register an already configured ``ApiClient`` (tests, or a daemon with its own auth)."""
        made = self._new_client(api_client, cluster or "default")
        with self._lock:
            self._clients[cluster or None] = made
        return made

    def _build(self, cluster: str | None) -> ClusterClient:
        if cluster is not None and cluster not in self.settings.contexts:
            known = ", ".join(sorted(self.settings.contexts)) or "none"
            raise ClusterConfigError(
                f"unknown cluster {cluster!r}: map it to a kubeconfig context in the config (known: {known})"
            )
        context = self.settings.contexts.get(cluster) if cluster else self.settings.default_context
        return self._new_client(self._load(context), cluster or context or "default")

    def _load(self, context: str | None) -> Any:
        """An ApiClient as kubectl would build it: an explicit kubeconfig wins; in a pod (and with
        no context asked for) the service account; otherwise ``$KUBECONFIG`` (several files merged,
        as kubectl merges them) or ``~/.kube/config``."""
        path = kubeconfig_path(self.settings)
        missing = missing_config(self.settings, context)
        if missing is not None:
            raise ClusterConfigError(missing)
        try:
            if uses_service_account(self.settings, context):
                configuration = k8s_client.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)
                return k8s_client.ApiClient(configuration)
            return k8s_config.new_client_from_config(config_file=path, context=context)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise ClusterConfigError(f"cannot load Kubernetes config from {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for made in clients:
            with contextlib.suppress(Exception):
                made.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
