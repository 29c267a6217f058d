"""Structured logs, configured once at start: JSON lines in production, readable lines on a terminal.

Every line is a snake_case event with stable keys; what a task binds with structlog's contextvars
(alert fingerprint, execution id, playbook, version, step) appears on every line it writes. Lines from
libraries that use the standard library's logging (uvicorn, psycopg_pool, the kubernetes client) go
through the same renderer. A last processor replaces every known secret value with ``***`` wherever it
appears in a line, so that a secret that slipped into an error message still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import urllib.parse
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
QUIET_LIBRARIES = ("httpx", "httpcore")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    format: LogFormat = "auto"
    """``json`` lines, ``console`` lines, or ``auto``: console on a terminal, JSON otherwise."""
    level: str = "info"
    """Lowest level written: debug, info, warning or error."""


MIN_SECRET_FORM = 4
"""A secret's form shorter than this is never blanked out: it would blank out ordinary words."""


def written_forms(value: str) -> set[str]:
    """``value`` as a message or a remote may quote it: as is, JSON-escaped (the text of a JSON answer
    or document inside an error, where a quote, a backslash or a non-ASCII letter is escaped) and
    percent-encoded (inside a URL); forms shorter than :data:`MIN_SECRET_FORM` left out."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_FORM}


class Redactor:
    """Knows the secret values in use and blanks them out of log lines."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()  # sorted once per add(), not per string logged

    def add(self, value: str) -> None:
        self._values.update(written_forms(value))
        # a longer form before its parts; one tuple swapped in whole, so a line logged meanwhile sees
        # either the old forms or the new ones
        self._longest_first = tuple(sorted(self._values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for value in self._longest_first:
            if value in text:
                text = text.replace(value, "***")
        return text

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self._values:
            for key, value in event.items():
                if isinstance(value, str):
                    event[key] = self.redact(value)
                elif not isinstance(value, int | float | bool | type(None)):
                    shown = self.redact(str(value))
                    if shown != str(value):
                        event[key] = shown
        return event


def _fallback(value: Any) -> Any:
    """What structlog's JSON renderer writes for a value JSON has no type for."""
    method = getattr(value, "__structlog__", None)
    return method() if callable(method) else repr(value)


# One encoder for every line: json.dumps with a ``default`` builds a new encoder per call.
_LINE_ENCODER = json.JSONEncoder(default=_fallback)


def _render_json(event: Any, **_options: Any) -> str:
    return _LINE_ENCODER.encode(event)


def configure_logging(settings: LoggingSettings, redactor: Redactor, stream: TextIO | None = None) -> None:
    """Set up structlog and the standard library's logging for the whole process."""
    out = stream or sys.stderr
    json_lines = settings.format == "json" or (settings.format == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_render_json)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finish: list[Any] = [structlog.processors.format_exc_info, redactor, renderer]
    level = LEVELS.get(settings.level, logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *finish],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # one write per line, newline included (print() makes two; stderr is unbuffered): a kill
        # between them would leave the line unended, and the next line glued to it
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))
    # httpx logs every request with its full URL at INFO; a webhook URL is often the secret itself
    # (a Slack hook from a secretRef), which the redactor does not know. Steps log their own lines.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
