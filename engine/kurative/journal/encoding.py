"""Turning records into what a database will accept, before any database sees them.

Bad input must get a clear error and never crash a backend half-way through a transaction, so every
check happens here, in the caller's task: payload size bounds, JSON that the database can store (no
NaN), and strings that PostgreSQL cannot hold (NUL bytes, lone surrogates from invalid UTF-8), which
are replaced by U+FFFD and the alert flagged as sanitized rather than lost.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kurative.alerts import parse_timestamp
from kurative.errors import AlertError, RecordRejected
from kurative.journal.models import AlertStatus, IncomingAlert, JSONValue

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# a NUL as json.dumps escapes it: \u0000 after an even number of backslashes (not a literal "\\u0000")
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


@dataclass(frozen=True, slots=True)
class JournalLimits:
    """Bounds checked before the database; sized for Alertmanager traffic, not for abuse."""

    max_alert_bytes: int = 256 * 1024
    """One alert's payload as JSON; Alertmanager alerts are around 1 KB, big annotations 10s of KB."""
    max_batch_alerts: int = 10_000
    """Alerts in one committed batch (one webhook); Alertmanager's max_alerts is usually far below."""
    max_record_bytes: int = 1024 * 1024
    """A step's rendered params or output, an approval reason, a playbook body."""
    max_text_chars: int = 4096
    """Short text fields: fingerprints, names, keys, owners, errors are cut to this length."""


DEFAULT_LIMITS = JournalLimits()


@dataclass(frozen=True, slots=True)
class PreparedAlert:
    id: str
    fingerprint: str
    status: str
    alertname: str
    labels_json: str
    payload_json: str
    source: str
    sanitized: bool
    starts_at: datetime | None = None
    """The sender's ``startsAt``; ``None`` when it sent none (the alert joins its episode)."""


def new_id() -> str:
    return str(uuid.uuid4())


def _clean_text(text: str) -> tuple[str, bool]:
    """``text`` with NUL and unencodable code points (lone surrogates) replaced by U+FFFD."""
    changed = False
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
        changed = True
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub(REPLACEMENT, text), True
    return text, changed


def sanitize(value: Any) -> tuple[Any, bool]:
    """A copy of the JSON ``value`` whose strings (keys too) are storable; and whether anything changed."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bytes | bytearray):
        return _clean_text(bytes(value).decode("utf-8", "replace"))[0], True
    if isinstance(value, Mapping):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            clean_key, key_changed = sanitize(key) if isinstance(key, str | bytes) else (key, False)
            clean_item, item_changed = sanitize(item)
            out[clean_key] = clean_item
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, list | tuple):
        items = [sanitize(item) for item in value]
        return [item for item, _ in items], any(flag for _, flag in items)
    return value, False


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_STATUSES = {status.value: status.value for status in AlertStatus}


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)  # json.dumps with these options, without a new encoder per call


def encode_json(value: JSONValue, what: str, max_bytes: int) -> tuple[str, bool]:
    """``value`` as compact JSON text the database can store, and whether it had to be sanitized.

    Raises :class:`RecordRejected` naming ``what`` when it is not JSON or larger than ``max_bytes``.
    """
    try:
        text = _dumps(value)
    except (TypeError, ValueError) as exc:
        raise RecordRejected(f"{what} is not storable as JSON: {exc}") from None
    except RecursionError:
        raise RecordRejected(f"{what} is nested too deeply to store as JSON") from None
    sanitized = False
    if text.isascii():  # the usual case: no lone surrogate, and as many bytes as characters
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            size = 0
            sanitized = True
    if sanitized or ("\\u0000" in text and _ESCAPED_NUL.search(text)):
        clean, _ = sanitize(value)
        text = _dumps(clean)
        size = len(text.encode("utf-8"))
        sanitized = True
    if size > max_bytes:
        raise RecordRejected(
            f"{what} is {_size(size)} as JSON, over the journal's limit of {_size(max_bytes)}"
        )
    return text, sanitized


def clean_text(text: str | None, what: str, max_chars: int) -> str | None:
    """Short text made storable; longer than ``max_chars`` is refused for identifiers."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise RecordRejected(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise RecordRejected(f"{what} is {len(text)} characters long, over the limit of {max_chars}")
    return _clean_text(text)[0]


def bounded_text(text: str, what: str, max_bytes: int) -> str:
    """Long text (a playbook body) made storable; larger than ``max_bytes`` as UTF-8 is refused."""
    if not isinstance(text, str):
        raise RecordRejected(f"{what} must be a string, got {type(text).__name__}")
    clean = _clean_text(text)[0]
    size = len(clean.encode("utf-8"))
    if size > max_bytes:
        raise RecordRejected(f"{what} is {_size(size)}, over the journal's limit of {_size(max_bytes)}")
    return clean


def truncate_text(text: str | None, max_chars: int) -> str | None:
    """Free text such as an error message, cut (not refused) to ``max_chars``."""
    if text is None:
        return None
    text = _clean_text(str(text))[0]
    if len(text) > max_chars:
        return text[: max_chars - 1] + "…"
    return text


def prepare_alerts(alerts: Sequence[IncomingAlert], limits: JournalLimits) -> list[PreparedAlert]:
    """Check and encode a batch; raise :class:`AlertError` saying which alert is wrong and why.

    These are the sender's mistakes, so they are alert errors (the ingress answers 400 and the sender
    must not retry), not journal errors (503, retry).
    """
    if len(alerts) > limits.max_batch_alerts:
        raise AlertError(
            f"batch of {len(alerts)} alerts is over the journal's limit of {limits.max_batch_alerts} "
            "per commit; split it (Alertmanager: lower max_alerts)"
        )
    prepared: list[PreparedAlert] = []
    for position, alert in enumerate(alerts):
        where = f"alert #{position}"
        try:
            fingerprint = clean_text(alert.fingerprint, f"{where} fingerprint", limits.max_text_chars)
            where = f"alert #{position} ({fingerprint})"
            status = (type(alert.status) is str and _STATUSES.get(alert.status)) or AlertStatus(
                alert.status
            ).value
            source = clean_text(alert.source, f"{where} source", limits.max_text_chars)
            if not isinstance(alert.labels, Mapping):
                raise RecordRejected(f"{where} labels must be an object")
            text_only = True
            for name, label in alert.labels.items():
                if type(name) is str and type(label) is str:
                    continue
                if not isinstance(name, str | bytes) or not isinstance(label, str | bytes):
                    raise RecordRejected(f"{where} label {name!r} must map a string to a string")
                text_only = text_only and isinstance(name, str) and isinstance(label, str)
            if not isinstance(alert.payload, Mapping):
                raise RecordRejected(f"{where} payload must be a JSON object")
            labels: dict[str, Any] = dict(alert.labels)
            labels_sanitized = False
            if not text_only:
                labels, labels_sanitized = sanitize(labels)  # bytes: decode them
            labels_json, labels_had_bad_text = encode_json(labels, f"{where} labels", limits.max_alert_bytes)
            if labels_had_bad_text:
                labels, _ = sanitize(labels)
                labels_sanitized = True
            payload_json, payload_sanitized = encode_json(
                alert.payload, f"{where} payload", limits.max_alert_bytes
            )
        except ValueError:
            raise AlertError(
                f"{where}: status must be 'firing' or 'resolved', got {alert.status!r}"
            ) from None
        except RecordRejected as exc:
            raise AlertError(str(exc)) from None
        alertname = labels.get("alertname", "")
        starts_at = alert.payload.get("startsAt")
        if starts_at is not None and not isinstance(starts_at, str):
            raise AlertError(f"{where} startsAt must be an RFC 3339 time as text, got {starts_at!r}")
        prepared.append(
            PreparedAlert(
                id=new_id(),
                fingerprint=fingerprint or "",
                status=status,
                alertname=alertname[: limits.max_text_chars],
                labels_json=labels_json,
                payload_json=payload_json,
                source=source or "",
                sanitized=labels_sanitized or payload_sanitized,
                starts_at=parse_timestamp(starts_at, f"{where} startsAt") if starts_at else None,
            )
        )
    return prepared


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def encode_cursor(seq: int, *, prefix: str = "e") -> str:
    return base64.urlsafe_b64encode(f"{prefix}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, prefix: str = "e") -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith(prefix) or not text[1:].isascii() or not text[1:].isdigit():
            raise ValueError(text)
        seq = int(text[1:])
        if seq >= 2**63:  # beyond every database's integer
            raise ValueError(text)
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RecordRejected(f"invalid cursor {cursor[:64]!r}: pass back a next_cursor unchanged") from None
