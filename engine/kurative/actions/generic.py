"""Actions beyond Kubernetes: HTTP webhooks, Prometheus checks, human approval, sleep and log."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from kurative.actions.base import ActionContext, ActionSpec, RepeatSafety, Risk
from kurative.actions.registry import declare, implement
from kurative.actions.schema import duration, enum, integer, obj, secret_or_string, string
from kurative.durations import parse_duration

log = structlog.get_logger("kurative.actions")

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
                "json": {"description": "JSON body"},
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
    await log.alog(_LEVEL_NUMBERS[level], "playbook_log", message=message, step=ctx.step)
    return {"message": message}
