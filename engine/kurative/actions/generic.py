"""Actions beyond Kubernetes: HTTP webhooks, Prometheus checks, human approval, sleep and log.

``http.request`` sends ``Idempotency-Key: <execution id>/<step name>`` (``ActionContext.idempotency_key``)
with every request: the same on every retry of the step and on its re-run after a crash, so that a
receiver that honours the header (PagerDuty, Stripe-style APIs, our own sink) can drop the repeat. A
playbook cannot replace it. Secrets (``{secretRef: name}`` as ``url``, a header, or any value inside
``json``: a PagerDuty routing key travels in the body) are resolved when the step runs and scrubbed
from the output and from every error; the journal keeps the reference. A URL that is a secret shows
as ``<secret name>``. The action declares no dry-run support: a webhook cannot be sent "for pretend".

``prometheus.query`` evaluates ``expect`` with the ``jmespath`` library itself: actions sit below
:mod:`kurative.matching` in the layers, so they cannot use the playbook compiler, and the service
returns the raw result so that the condition stays with the step. A false ``expect`` fails the step
with :class:`~kurative.errors.ExpectationFailed` (temporary: a step ``retry`` polls until it holds).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from kurative.actions.base import ActionContext, ActionSpec, RepeatSafety, Risk
from kurative.actions.registry import declare, implement
from kurative.actions.schema import duration, enum, integer, obj, secret_or_string, string
from kurative.actions.services import (
    HttpClient,
    HttpResponse,
    PrometheusClient,
    ResolvedSecrets,
    service,
)
from kurative.durations import parse_duration
from kurative.errors import ActionError, BreakerOpen, ExpectationFailed, PermanentActionError
from kurative.logging import Logger

# How much of a text answer ends up in a step's output (and so in the journal).
MAX_BODY_IN_OUTPUT = 16_384
# How much of a result ends up in an error message.
MAX_RESULT_IN_MESSAGE = 400
IDEMPOTENCY_HEADER = "Idempotency-Key"

log = Logger("kurative.actions")

declare(
    ActionSpec(
        name="http.request",
        summary="Call a webhook (Slack, PagerDuty, JIRA, ServiceNow); sends an Idempotency-Key header.",
        params=obj(
            {
                "method": enum("HTTP method", ("GET", "POST", "PUT", "PATCH", "DELETE"), "POST"),
                "url": secret_or_string("target URL; webhook URLs are secrets: use {secretRef: name}"),
                "headers": {
                    "type": "object",
                    "description": "extra headers; values may be secret references",
                    "additionalProperties": secret_or_string("header value"),
                },
                "json": {"description": "JSON body; a value {secretRef: name} in it is the secret's"},
                "body": string("raw text body (instead of json)"),
                "timeout": duration("request timeout", "10s"),
                "expect_status": {
                    "description": "accepted status codes (default: any 2xx)",
                    "oneOf": [
                        integer("one status", minimum=100, maximum=599),
                        {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599}},
                    ],
                },
            },
            ("url",),
            **{"not": {"required": ["json", "body"]}},
        ),
        output=obj({"status": integer("HTTP status"), "body": {"description": "JSON or text body"}}),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.STAMPED,
    )
)

declare(
    ActionSpec(
        name="prometheus.query",
        summary="Run an instant PromQL query, e.g. to verify that a remediation worked.",
        params=obj(
            {
                "query": string("PromQL expression"),
                "expect": string('JMESPath over the result that must be true (e.g. "length(@) == `0`")'),
                "url": secret_or_string("Prometheus base URL (default: from the daemon config)"),
                "timeout": duration("query timeout", "10s"),
            },
            ("query",),
        ),
        output=obj(
            {
                "result": {"type": "array", "description": "the result vector"},
                "ok": {"type": "boolean", "description": "whether `expect` held (true without expect)"},
            }
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
    )
)

declare(
    ActionSpec(
        name="approval",
        summary="Wait for a human to approve or reject through the API, the CLI or the web page.",
        params=obj(
            {
                "message": string("what the approver is asked"),
                "timeout": duration("how long to wait before the step fails", "1h"),
            },
            ("message",),
        ),
        output=obj(
            {
                "decision": enum("approved or rejected", ("approved", "rejected")),
                "by": string("who decided"),
                "reason": string("why"),
            }
        ),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
    )
)

SLEEP = declare(
    ActionSpec(
        name="sleep",
        summary="Wait for a while, e.g. to let a restarted workload settle before verifying.",
        params=obj({"duration": duration("how long to wait")}, ("duration",)),
        output=obj({"slept": {"type": "number", "description": "seconds slept"}}),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
    )
)

LOG_LEVELS = ("debug", "info", "warning", "error")
_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

declare(
    ActionSpec(
        name="log",
        summary="Write a structured log line bound to the execution, alert and step.",
        params=obj(
            {"message": string("the text to log"), "level": enum("log level", LOG_LEVELS, "info")},
            ("message",),
        ),
        output=obj({"message": string("the text logged")}),
        risk=Risk.LOW,
        repeat_safety=RepeatSafety.IDEMPOTENT,
        dry_run=True,
    )
)


@implement("sleep")
async def run_sleep(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    seconds = parse_duration(params["duration"])
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@implement("log")
async def run_log(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    level = params.get("level", "info")
    message = str(params["message"])
    # written at once, like every other line of the runner: the async variant hands each line to a
    # thread, which costs more than the write itself
    log.log(_LEVEL_NUMBERS[level], "playbook_log", message=message, step=ctx.step)
    return {"message": message}


def _expected(value: Any) -> tuple[frozenset[int], str]:
    """The accepted statuses and how messages say them (default: any 2xx)."""
    if value is None:
        return frozenset(range(200, 300)), "2xx"
    codes = [value] if isinstance(value, int) else list(value)
    return frozenset(codes), ", ".join(map(str, codes))


def _output_body(answer: HttpResponse, secrets: ResolvedSecrets) -> Any:
    """The answer's body as JSON when it is JSON (and small enough to keep), else truncated text.

    JSON nested too deeply to parse or scrub is kept as text. Text is scrubbed whole, then cut: a
    secret quoted back across the cut must not leave its first part behind."""
    if answer.is_json and not answer.truncated and len(answer.content) <= MAX_BODY_IN_OUTPUT:
        try:
            return secrets.scrub(answer.json())
        except (ValueError, RecursionError):
            pass
    return secrets.scrub_text(answer.text)[:MAX_BODY_IN_OUTPUT]


@implement("http.request")
async def run_http_request(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    if ctx.dry_run:
        raise PermanentActionError("http.request does not support dry run: the step must be skipped")
    http: HttpClient = service(ctx, "http", "HTTP client")
    secrets = ResolvedSecrets(ctx)
    method = params.get("method", "POST")
    try:
        url, shown = await secrets.text(params["url"], "url", url=True)
        headers: dict[str, str] = {}
        for name, value in (params.get("headers") or {}).items():
            if str(name).lower() != IDEMPOTENCY_HEADER.lower():
                headers[name], _ = await secrets.text(value, f"header {name}")
        headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key
        body: dict[str, Any] = (
            {"json_body": await _with_secrets(params["json"], secrets)} if "json" in params else {}
        )
        if "body" in params:
            body["content"] = params["body"]
        timeout = parse_duration(params.get("timeout", "10s"))
        accepted, wording = _expected(params.get("expect_status"))
        answer = await http.request(
            method,
            url,
            headers=headers,
            timeout=timeout,
            deadline=ctx.action_deadline,
            shown=shown,
            **body,
        )
        if answer.status not in accepted:
            raise answer.failure(f"HTTP {answer.status}, expected {wording}", scrub=secrets.scrub_text)
        return {"status": answer.status, "body": _output_body(answer, secrets)}
    except (ActionError, BreakerOpen) as error:
        raise secrets.scrub_error(error) from None


async def _with_secrets(value: Any, secrets: ResolvedSecrets, where: str = "json") -> Any:
    """``value`` with every ``{secretRef: name}`` in it (at any depth) replaced by the secret's value."""
    if isinstance(value, Mapping):
        if set(value) == {"secretRef"}:
            return (await secrets.text(value, where))[0]
        return {key: await _with_secrets(item, secrets, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [await _with_secrets(item, secrets, f"{where}[{n}]") for n, item in enumerate(value)]
    return value


@functools.lru_cache(maxsize=256)
def _compile_expect(source: str) -> ParsedResult:
    try:
        return jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise PermanentActionError(f"expect `{source}` is not valid JMESPath: {exc}") from None


def _holds(value: Any) -> bool:
    """JMESPath truth: everything but null, false, '', [] and {} (0 is true)."""
    return not (value is None or value is False or value in ("", [], {}))


@implement("prometheus.query")
async def run_prometheus_query(ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    prometheus: PrometheusClient = service(ctx, "prometheus", "Prometheus (prometheus.url in the config)")
    secrets = ResolvedSecrets(ctx)
    query = params["query"]
    try:
        url, shown = (
            (None, None) if params.get("url") is None else await secrets.text(params["url"], "url", url=True)
        )
        found = await prometheus.query(
            query,
            url=url,
            timeout=parse_duration(params.get("timeout", "10s")),
            deadline=ctx.action_deadline,
            shown=shown,
            scrub=secrets.scrub_text,
        )
        # what is stored and shown is scrubbed; ``expect`` holds or not on what Prometheus answered
        try:
            result = secrets.scrub(found.result)
        except RecursionError:
            raise PermanentActionError(
                f"prometheus.query: the result of `{query}` is nested too deeply to keep"
            ) from None
        expect = params.get("expect")
        if expect is None:
            return {"result": result, "ok": True}
        compiled = _compile_expect(expect)
        try:
            # JMESPath runs on remote data: whatever its functions raise on it (ceil of 1e999 is an
            # OverflowError) is the expression not applying to this result
            value = compiled.search(found.result)
            if _holds(value):
                return {"result": result, "ok": True}
            seen = json.dumps(result, separators=(",", ":"), default=str)
            said = json.dumps(secrets.scrub(value), default=str)
        except (
            jmespath.exceptions.JMESPathError,
            TypeError,
            ValueError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            raise PermanentActionError(
                f"expect `{expect}` cannot be evaluated on the result: {exc or type(exc).__name__}"
            ) from None
        if len(seen) > MAX_RESULT_IN_MESSAGE:
            seen = seen[:MAX_RESULT_IN_MESSAGE] + "…"
        raise ExpectationFailed(
            f"prometheus.query: expect `{expect}` is {said} for `{query}`; the result was {seen}",
            output={"result": result, "ok": False},
        )
    except (ActionError, BreakerOpen) as error:
        raise secrets.scrub_error(error) from None
