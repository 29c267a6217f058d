"""Daemon configuration documents (``kind: Config``): the schema and the references between sections.

Lint checks a config it meets beside the playbooks with these rules, and ``kurative serve`` refuses to
start on a config that breaks them, with the same positioned diagnostics.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from kurative.diagnostics import Diagnostic
from kurative.durations import DurationError, parse_duration
from kurative.playbooks.validation import schema_diagnostics
from kurative.playbooks.yamlload import Document


def _secret_refs(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every ``{secretRef: name}`` outside the ``secrets`` section, with its path."""
    if isinstance(data, dict):
        ref = data.get("secretRef")
        if isinstance(ref, str) and len(data) == 1:
            yield (*path, "secretRef"), ref
            return
        for key, value in data.items():
            if not path and key == "secrets":
                continue
            yield from _secret_refs(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _secret_refs(value, (*path, index))


MIN_READ_TIMEOUT = 1.0
"""Seconds: under this, listen.readTimeout would answer 408 before most requests arrive (0s: all)."""


def _read_timeout_diagnostics(doc: Document, data: dict[str, Any]) -> list[Diagnostic]:
    listen = data.get("listen")
    value = listen.get("readTimeout") if isinstance(listen, dict) else None
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except DurationError:
        return []  # the schema's duration pattern reports it
    if seconds is None or seconds >= MIN_READ_TIMEOUT:
        return []
    line, column = doc.position(("listen", "readTimeout"))
    return [
        Diagnostic.make(
            doc.path,
            line,
            column,
            "E104",
            f"listen.readTimeout must be at least 1s, not {value}",
            "a client has this long to send a whole request: use 1s or more (default 30s)",
        )
    ]


def config_diagnostics(doc: Document) -> list[Diagnostic]:
    """Schema errors, a readTimeout too short to receive a request, and secret references that name
    no secret of the ``secrets`` section."""
    found = schema_diagnostics(doc, "config")
    data = doc.data if isinstance(doc.data, dict) else {}
    found.extend(_read_timeout_diagnostics(doc, data))
    secrets = data.get("secrets")
    defined = set(secrets) if isinstance(secrets, dict) else set()
    for path, name in _secret_refs(data):
        if name not in defined:
            line, column = doc.position(path)
            close = difflib.get_close_matches(name, sorted(defined), n=1, cutoff=0.6)
            known = ", ".join(sorted(defined)) or "none is defined"
            hint = f"did you mean {close[0]!r}?" if close else f"define secrets.{name}; defined: {known}"
            found.append(
                Diagnostic.make(
                    doc.path,
                    line,
                    column,
                    "E110",
                    f"secretRef {name!r} names no secret of the secrets section",
                    hint,
                )
            )
    return sorted(found)
