"""Structured logs, configured once at start: JSON lines in production, readable lines on a terminal.

Every line is a snake_case event with stable keys; what a task binds with :func:`bind` (alert
fingerprint, execution id, playbook, version, step) appears on every line it writes. Lines from
libraries that use the standard library's logging (uvicorn, psycopg_pool, the kubernetes client) go
through the same renderer. A last processor replaces every known secret value with ``***`` wherever it
appears in a line, so that a secret that slipped into an error message still never reaches the log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import urllib.parse
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
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
    or document inside an error, where a quote, a backslash or a non-ASCII letter is escaped),
    percent-encoded (inside a URL) and as the repr of its UTF-8 bytes shows it; forms shorter than
    :data:`MIN_SECRET_FORM` left out."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],  # inside the repr of bytes holding it
    }
    return {form for form in forms if len(form) >= MIN_SECRET_FORM}


_NOTHING_BOUND: Mapping[str, Any] = MappingProxyType({})
_BOUND: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "kurative_log_context", default=_NOTHING_BOUND
)


def bind(**values: Any) -> None:
    """Add ``values`` to every line the current task (and the tasks it starts) writes from now on."""
    _BOUND.set({**_BOUND.get(), **values})


def unbind(*keys: str) -> None:
    """Stop adding ``keys`` to the current task's lines."""
    bound = _BOUND.get()
    if any(key in bound for key in keys):
        _BOUND.set({key: value for key, value in bound.items() if key not in keys})


_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}


def _stamp(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """What the task bound (under what the line itself says), the level and the time, in one step."""
    bound = _BOUND.get()
    if bound:
        event = {**bound, **event}
    event["level"] = _LEVEL_OF_METHOD.get(method, method)
    event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return event


_STACK_INFO = structlog.processors.StackInfoRenderer()


def _exceptions(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A traceback or stack asked for, as text (looked for before anything is done on every line)."""
    if "exc_info" in event or "stack_info" in event:
        event = structlog.processors.format_exc_info(logger, method, _STACK_INFO(logger, method, event))
    return event


class Logger:
    """A module's logger, for the modules that log on every alert and step: structlog's own, taken from
    its lazy proxy at first use and, as the proxy itself does when the configuration says to cache it,
    kept from then on. Calling the proxy's methods costs a failed attribute lookup (a formatted
    ``AttributeError``) and a bind on every call, even a debug call that writes nothing."""

    __slots__ = ("_bound", "_proxy")

    def __init__(self, name: str) -> None:
        self._proxy = structlog.get_logger(name)
        self._bound: Any = None

    def _logger(self) -> Any:
        bound = self._bound
        if bound is None:
            bound = self._proxy.bind()
            if structlog.get_config()["cache_logger_on_first_use"]:
                self._bound = bound
        return bound

    def debug(self, event: str, **values: Any) -> Any:
        return self._logger().debug(event, **values)

    def info(self, event: str, **values: Any) -> Any:
        return self._logger().info(event, **values)

    def warning(self, event: str, **values: Any) -> Any:
        return self._logger().warning(event, **values)

    def error(self, event: str, **values: Any) -> Any:
        return self._logger().error(event, **values)

    def exception(self, event: str, **values: Any) -> Any:
        return self._logger().exception(event, **values)

    def log(self, level: int, event: str, **values: Any) -> Any:
        return self._logger().log(level, event, **values)


_NOT_SCALAR = object()


class Redactor:
    """Knows the secret values in use and blanks them out of log lines."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()  # sorted once per add(), not per string logged
        self._in_json: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        self._values.update(written_forms(value))
        # a longer form before its parts; one tuple swapped in whole, so a line logged meanwhile sees
        # either the old forms or the new ones
        self._longest_first = tuple(sorted(self._values, key=len, reverse=True))
        # each form as a JSON line writes it: escaping is per letter, so a value holding a form holds
        # it so escaped in the line
        self._in_json = tuple({json.dumps(form)[1:-1] for form in self._values})

    def in_json_line(self, line: str) -> bool:
        """Whether a JSON line may show a secret (then its event is blanked out and written again)."""
        for form in self._in_json:  # noqa: SIM110  # a loop: any() resumes a generator per form
            if form in line:
                return True
        return False

    def redact(self, text: str) -> str:
        """``text`` with every stretch that any secret's form covers replaced by ``***``: overlapping
        or adjacent matches (of two secrets, or of one repeating itself) become one, so that no part
        of a secret is left beside another's blank."""
        spans: list[tuple[int, int]] = []
        for form in self._longest_first:
            start = text.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = text.find(form, start + 1)
        if not spans:
            return text
        spans.sort()
        parts: list[str] = []
        kept = 0  # text before this is written
        begin, end = spans[0]
        for start, stop in spans[1:]:
            if start <= end:
                end = max(end, stop)
                continue
            parts += (text[kept:begin], "***")
            kept, (begin, end) = end, (start, stop)
        parts += (text[kept:begin], "***", text[end:])
        return "".join(parts)

    def _scalar(self, value: Any) -> Any:
        """A string blanked out; ``None``, a bool, or a number unless its digits show a secret (then
        its text, blanked out), as they are; :data:`_NOT_SCALAR` for anything else."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            shown = repr(value)
            blanked = self.redact(shown)
            return value if blanked == shown else blanked
        return _NOT_SCALAR

    def _as_text(self, value: Any) -> Any:
        """A value as a text line shows it (``str``, and ``repr`` for an object), blanked out."""
        scalar = self._scalar(value)
        if scalar is not _NOT_SCALAR:
            return scalar
        for show in (str, repr):  # a container's str shows its keys and items' reprs
            try:
                shown = show(value)
            except Exception:  # an object that cannot say itself: the renderer's problem
                continue
            blanked = self.redact(shown)
            if blanked != shown:
                return blanked
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Blank secrets out of an event rendered as text (console lines): its keys and values."""
        if self._values:
            return {self.redact(key): self._as_text(value) for key, value in event.items()}
        return event

    def _json_key(self, key: Any) -> Any:
        """A mapping's key as JSON writes it (text, whatever its type), blanked out."""
        if isinstance(key, str):
            return self.redact(key)
        if isinstance(key, int | float | bool) or key is None:
            return self.redact(json.dumps(key))
        return self.redact(repr(key))  # JSON takes no such key: its repr, as for an odd value

    def _as_json(self, value: Any, depth: int) -> Any:
        """A value with every string its JSON shows blanked out: keys and items at any depth, a number
        whose digits show a secret, and what JSON writes for an object it has no type for
        (``__structlog__``, else ``repr``)."""
        scalar = self._scalar(value)
        if scalar is not _NOT_SCALAR:
            return scalar
        if depth > MAX_REDACTED_DEPTH:  # deeper than any line needs: shown whole, blanked out
            return self.redact(repr(value))
        if isinstance(value, Mapping):
            return {self._json_key(key): self._as_json(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._as_json(item, depth + 1) for item in value]
        return self._as_json(_fallback(value), depth + 1)

    def json_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """``event`` with secrets blanked out of everything its JSON line would show as text."""
        return self._as_json(event, 0)  # type: ignore[no-any-return]


MAX_REDACTED_DEPTH = 32


def _fallback(value: Any) -> Any:
    """What structlog's JSON renderer writes for a value JSON has no type for."""
    method = getattr(value, "__structlog__", None)
    return method() if callable(method) else repr(value)


# One encoder for every line: json.dumps with a ``default`` builds a new encoder per call.
_LINE_ENCODER = json.JSONEncoder(default=_fallback)


class _RedactedJSON:
    """The JSON line of an event, its secrets blanked out: the line is written, then searched once for
    any secret as JSON writes it; only a line that shows one is written again from the event with
    every string in it blanked out (searching each value of every line cost more than writing it).
    The line itself is never edited: a form can start inside an escape, and JSON stays JSON."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        line = _LINE_ENCODER.encode(event)
        if self._redactor.in_json_line(line):
            line = _LINE_ENCODER.encode(self._redactor.json_event(event))
        return line


def configure_logging(settings: LoggingSettings, redactor: Redactor, stream: TextIO | None = None) -> None:
    """Set up structlog and the standard library's logging for the whole process."""
    out = stream or sys.stderr
    json_lines = settings.format == "json" or (settings.format == "auto" and not out.isatty())
    render: list[Any] = (
        [_RedactedJSON(redactor)] if json_lines else [redactor, structlog.dev.ConsoleRenderer(colors=False)]
    )
    finish: list[Any] = [_exceptions, *render]
    level = LEVELS.get(settings.level, logging.INFO)
    structlog.configure(
        processors=[_stamp, *finish],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # one write per line, newline included (print() makes two; stderr is unbuffered): a kill
        # between them would leave the line unended, and the next line glued to it
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_stamp, structlog.stdlib.add_logger_name],
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
