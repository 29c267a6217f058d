"""The Prometheus adapter: instant queries over the HTTP API (``GET /api/v1/query``).

It runs on its own :class:`~kurative.adapters.http.HttpAdapter` (its own connection pools), whose
breakers are named ``prometheus/<host:port>``, so a Prometheus that is down opens its breaker without
touching the webhooks' ones. Prometheus's own error answers are mapped by their ``errorType``: a query
that does not parse (``bad_data``, 400) or cannot run (``execution``, 422) is permanent; a timeout,
cancellation or an unavailable server (503) is temporary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker

from kurative.adapters.http import MAX_BODY_IN_MESSAGE, HttpAdapter, HttpSettings, without_credentials
from kurative.errors import PermanentActionError, TemporaryActionError

_TEMPORARY_ERROR_TYPES = frozenset({"timeout", "canceled", "unavailable", "internal"})


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """Where ``prometheus.query`` asks by default. Frozen: built from ``prometheus:`` in the config."""

    url: str | None = None
    """Base URL of the Prometheus server (``http://prometheus:9090``); a step's ``url`` overrides it."""
    timeout: float = 10.0
    """Seconds a query may take unless the step says otherwise (also sent to Prometheus)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The ``data`` of a successful query: ``vector``, ``matrix``, ``scalar`` or ``string``."""

    result_type: str
    result: Any


class PrometheusAdapter:
    """Instant queries against the configured Prometheus or the one a step names."""

    def __init__(
        self,
        settings: PrometheusSettings | None = None,
        *,
        http_settings: HttpSettings | None = None,
        breakers: Callable[[str], pybreaker.CircuitBreaker] | None = None,
    ) -> None:
        self.settings = settings or PrometheusSettings()
        self._http = HttpAdapter(http_settings, breakers=breakers, kind="prometheus")

    def target(self, url: str | None = None) -> str:
        """The breaker target of ``url`` (default: the configured one): ``prometheus/<host:port>``."""
        return self._http.target(self._base(url))

    def _base(self, url: str | None) -> str:
        base = url or self.settings.url
        if not base:
            raise PermanentActionError(
                "prometheus.query: no Prometheus URL: set prometheus.url in the daemon config "
                "or give the step a url"
            )
        return base

    async def query(
        self,
        query: str,
        *,
        url: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        shown: str | None = None,
        scrub: Callable[[str], str] | None = None,
    ) -> QueryResult:
        """Run ``query`` now; the mapped error when Prometheus refuses it or cannot be reached.

        ``deadline`` (the event loop's clock) cuts ``timeout`` short, as for an HTTP request;
        ``shown`` is the URL as messages show it (default: the URL without its credentials);
        ``scrub`` is applied to what Prometheus says before it is cut to fit a message."""
        import httpx  # on the first query, not at start: the daemon needs none to be ready

        base = self._base(url)
        shown = shown or without_credentials(base)
        scrub = scrub or str
        limit = self.settings.timeout if timeout is None else timeout
        endpoint = base.rstrip("/") + "/api/v1/query"
        try:
            full = str(httpx.URL(endpoint, params={"query": query, "timeout": f"{limit:g}"}))
        except (httpx.InvalidURL, TypeError, UnicodeError):
            raise PermanentActionError(f"prometheus.query: {shown} is not a valid URL") from None
        answer = await self._http.request(
            "GET", full, timeout=limit, deadline=deadline, shown=f"{shown.rstrip('/')}/api/v1/query"
        )
        what = f"prometheus.query at {shown}"
        try:
            payload = answer.json() if not answer.truncated else None
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            payload = None
        if not isinstance(payload, dict):
            if answer.status >= 300:
                raise answer.failure(scrub=scrub)
            if answer.truncated:
                raise PermanentActionError(f"{what}: the result is too large; narrow the query")
            raise PermanentActionError(
                f"{what}: the answer is not the Prometheus HTTP API's JSON (is the URL a Prometheus?)"
            )
        if payload.get("status") != "success":
            kind = str(payload.get("errorType") or "")
            message = scrub(str(payload.get("error") or f"HTTP {answer.status}"))[:MAX_BODY_IN_MESSAGE]
            text = f"{what}: {kind + ': ' if kind else ''}{message} (query `{query[:200]}`)"
            if kind in _TEMPORARY_ERROR_TYPES or answer.status >= 500 or answer.status == 429:
                raise TemporaryActionError(text, retry_after=answer.retry_after)
            raise PermanentActionError(text)
        data = payload.get("data", {})
        if not isinstance(data, dict):
            raise PermanentActionError(
                f"{what}: the answer's data is not an object (is the URL a Prometheus?)"
            )
        return QueryResult(str(data.get("resultType") or ""), data.get("result"))

    async def aclose(self) -> None:
        await self._http.aclose()
