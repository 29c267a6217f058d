"""Alerts as kurative sees them: one immutable shape for both inputs it accepts.

Alertmanager POSTs webhook payloads (version 4: a group of alerts with the group's labels) and
Prometheus POSTs a bare list of alerts to ``/api/v2/alerts``. Both become :class:`Alert` values, and a
webhook's group fields become an :class:`AlertGroup`. Parsing validates against
``schemas/alerts.v1.json`` first and turns every problem into an :class:`~kurative.errors.AlertError`
that says where it is (``alerts[3].labels.severity``) and what is wrong, so that a sender or a user of
``kurative simulate`` can fix it; nothing in an alert is ever evaluated (a label value that looks like
JMESPath or ``${…}`` is just text).

When an input carries no ``fingerprint`` it is computed the way Alertmanager computes
``model.LabelSet.Fingerprint()``: FNV-1a 64 over the label names in byte order, each name and value
followed by the separator byte 0xff, printed as 16 lower-case hex digits. So that the same alert gets
the same fingerprint whether it reached us through Alertmanager or straight from Prometheus, labels
are first normalised the way Alertmanager normalises them before it fingerprints an alert: a label
with an empty value is dropped (``removeEmptyLabels`` in its ``POST /api/v2/alerts`` handler, so
what it sends on in a webhook never has one), and a lone UTF-16 surrogate (``"\ud800"`` in JSON)
becomes U+FFFD, as Go's JSON decoder makes it. tests/e2e checks both against a real Alertmanager.

The parser is total: whatever JSON value (or YAML-loaded value) it is given, of any depth and up to
:data:`MAX_PAYLOAD_BYTES`, it returns a :class:`Notification` or raises :class:`AlertError`.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from kurative.errors import AlertError

if TYPE_CHECKING:
    import jsonschema

AlertStatus = Literal["firing", "resolved"]

MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""The largest alert payload accepted (an HTTP body, an alerts file): 2,000 alerts take about 600 KB."""
MAX_DEPTH = 16
"""The deepest nesting accepted; a webhook's label values are four levels down."""

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1

# Alertmanager and Go write the zero time for "unset".
_ZERO_TIMES = frozenset({"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"})
_RFC3339_DATE_TIME = r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
_RFC3339_OFFSET = r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
_RFC3339 = re.compile(_RFC3339_DATE_TIME + r"(\.[0-9]{1,9})?" + _RFC3339_OFFSET)  # as Go writes them
_RFC3339_ANY_FRACTION = re.compile(_RFC3339_DATE_TIME + r"(\.[0-9]+)?" + _RFC3339_OFFSET)
_MAX_INT_BITS = 14_284  # at most 4,300 decimal digits: what JSON accepts, and what Python will print
_LOG10_2 = 0.30103
_MAX_UINT64 = 2**64 - 1  # truncatedAlerts is a uint64 in Alertmanager
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, as Go's JSON decoder does.

    Python's JSON decoder keeps ``"\ud800"`` as a code point no UTF-8 encoder accepts; Alertmanager
    sees U+FFFD there. Replacing it keeps our fingerprints equal to Alertmanager's and our output
    encodable."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set, as 16 lower-case hex digits."""
    encoded = {
        clean_text(name).encode("utf-8"): clean_text(value).encode("utf-8") for name, value in labels.items()
    }
    data = b"".join(name + b"\xff" + encoded[name] + b"\xff" for name in sorted(encoded))
    h = _FNV_OFFSET
    prime = _FNV_PRIME
    mask = _MASK
    for byte in data:
        h = ((h ^ byte) * prime) & mask
    return f"{h:016x}"


_KNOWN_TIMES: dict[str, datetime] = {}
"""Times already parsed (an alert's ``startsAt`` comes again with every notification of its group)."""
_MAX_KNOWN_TIMES = 4096


def parse_timestamp(text: str, where: str = "timestamp") -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime; Go's zero time means unset (``None``)."""
    known = _KNOWN_TIMES.get(text)
    if known is not None:
        return known
    if text in _ZERO_TIMES or text.startswith("0001-01-01T00:00:00"):
        return None
    parsed = parse_rfc3339(text, where)
    if len(_KNOWN_TIMES) >= _MAX_KNOWN_TIMES:
        _KNOWN_TIMES.clear()
    _KNOWN_TIMES[text] = parsed
    return parsed


def parse_rfc3339(text: str, where: str, *, any_fraction: bool = False) -> datetime:
    """An RFC 3339 time as an aware UTC datetime; an :class:`AlertError` naming ``where`` if it is not one.

    Fractions of a second have at most 9 digits, as Go writes them, unless ``any_fraction`` (RFC 3339
    allows any number); either way they are kept to the microsecond."""
    if (_RFC3339_ANY_FRACTION if any_fraction else _RFC3339).fullmatch(text) is None:
        raise AlertError(
            f"{where}: invalid timestamp {_quoted(text)}: write an RFC 3339 time such as 2024-05-01T12:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
        return parsed.astimezone(UTC)
    except ValueError as exc:
        raise AlertError(f"{where}: invalid timestamp {_quoted(text)}: {exc}") from None
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is a valid RFC 3339 time, but lies in the year 10000 in UTC
        raise AlertError(
            f"{where}: timestamp {_quoted(text)} is out of range: "
            "times must lie between the years 0001 and 9999 in UTC"
        ) from None


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


_FORMATTED_TIMES: dict[datetime, str] = {}
"""Times already formatted (an alert's start comes again with every notification of its group)."""


def format_timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, the way Alertmanager writes times; ``None`` stays ``None``."""
    if moment is None:
        return None
    known = _FORMATTED_TIMES.get(moment)
    if known is not None and moment.tzinfo is UTC:  # equal instants in other offsets format the same
        return known
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if moment.tzinfo is UTC:
        if len(_FORMATTED_TIMES) >= _MAX_KNOWN_TIMES:
            _FORMATTED_TIMES.clear()
        _FORMATTED_TIMES[moment] = text
    return text


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert. ``labels`` and ``annotations`` are read-only mappings of strings."""

    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""
    fingerprint: str = ""
    starts_at_given: bool = True
    """False when the sender gave no ``startsAt``: ``starts_at`` is then the time of receipt, until the
    alert joins the open firing episode of its fingerprint (:meth:`with_start`)."""
    # The JSON view expressions read (``alert`` in the context). Built once; never handed out mutable.
    _document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def make(
        cls,
        labels: Mapping[str, str],
        *,
        status: AlertStatus = "firing",
        annotations: Mapping[str, str] | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        generator_url: str = "",
        given_fingerprint: str | None = None,
        starts_at_given: bool = True,
    ) -> Alert:
        """Build an alert from already-checked values; the fingerprint is computed when not given.

        Labels with an empty value are dropped and lone surrogates replaced, as Alertmanager does
        before it fingerprints an alert (see the module docstring)."""
        # clean_text, inlined for the usual ASCII name or value
        label_dict = {
            (name if name.isascii() else clean_text(name)): (value if value.isascii() else clean_text(value))
            for name, value in labels.items()
            if value != ""
        }
        annotation_dict = {
            (name if name.isascii() else clean_text(name)): (value if value.isascii() else clean_text(value))
            for name, value in (annotations or {}).items()
        }
        generator_url = clean_text(generator_url)
        given_fingerprint = clean_text(given_fingerprint) if given_fingerprint else None
        fp = given_fingerprint or fingerprint(label_dict)
        document = {
            "status": status,
            "labels": label_dict,
            "annotations": annotation_dict,
            "startsAt": format_timestamp(starts_at),
            "endsAt": format_timestamp(ends_at),
            "generatorURL": generator_url,
            "fingerprint": fp,
        }
        return cls(
            status=status,
            labels=MappingProxyType(label_dict),
            annotations=MappingProxyType(annotation_dict),
            starts_at=starts_at,
            ends_at=ends_at,
            generator_url=generator_url,
            fingerprint=fp,
            starts_at_given=starts_at_given,
            _document=document,
        )

    def with_start(self, starts_at: datetime) -> Alert:
        """This alert with ``starts_at`` as its start: the start of the firing episode it joins."""
        if starts_at == self.starts_at:
            return self
        return Alert.make(
            self.labels,
            status=self.status,
            annotations=self.annotations,
            starts_at=starts_at,
            ends_at=self.ends_at,
            generator_url=self.generator_url,
            given_fingerprint=self.fingerprint,
            starts_at_given=self.starts_at_given,
        )

    def __hash__(self) -> int:
        return hash((self.fingerprint, self.status, self.starts_at, self.ends_at))

    @property
    def name(self) -> str:
        """The ``alertname`` label, or an empty string."""
        return self.labels.get("alertname", "")

    @property
    def document(self) -> Mapping[str, Any]:
        """The alert as the expression context's ``alert`` sees it (read-only by convention)."""
        return self._document

    def to_json(self) -> dict[str, Any]:
        """A fresh JSON-ready copy (for output and the journal)."""
        doc = dict(self._document)
        doc["labels"] = dict(self.labels)
        doc["annotations"] = dict(self.annotations)
        return doc


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """The group fields of an Alertmanager webhook notification."""

    receiver: str = ""
    group_key: str = ""
    status: AlertStatus = "firing"
    group_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    common_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    common_annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    external_url: str = ""
    truncated_alerts: int = 0
    _document: dict[str, Any] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_document",
            {
                "receiver": self.receiver,
                "groupKey": self.group_key,
                "groupLabels": dict(self.group_labels),
                "commonLabels": dict(self.common_labels),
                "externalURL": self.external_url,
            },
        )

    def __hash__(self) -> int:
        return hash((self.receiver, self.group_key, self.status))

    @property
    def document(self) -> Mapping[str, Any]:
        """``group`` in the expression context: exactly the fields PRODUCT.md lists."""
        return self._document

    def to_json(self) -> dict[str, Any]:
        doc = {
            key: (dict(value) if isinstance(value, dict) else value) for key, value in self._document.items()
        }
        doc["status"] = self.status
        doc["commonAnnotations"] = dict(self.common_annotations)
        doc["truncatedAlerts"] = self.truncated_alerts
        return doc


@dataclass(frozen=True, slots=True)
class Notification:
    """What one POST carried: the alerts, and the group when Alertmanager sent it."""

    alerts: tuple[Alert, ...]
    group: AlertGroup | None = None
    kind: Literal["alertmanager", "prometheus", "alert"] = "alertmanager"


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("kurative").joinpath("schemas/alerts.v1.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(definition: str) -> jsonschema.protocols.Validator:
    import jsonschema  # on the first payload the quick check cannot vouch for, not at start

    full = _schema()
    schema = {"$schema": full["$schema"], "$defs": full["$defs"], "$ref": f"#/$defs/{definition}"}
    validator_cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = validator_cls(schema)
    return validator


_LABEL_SETS = frozenset({"labels", "annotations", "groupLabels", "commonLabels", "commonAnnotations"})


def _where(prefix: str, path: Sequence[str | int]) -> str:
    out = prefix
    for part in path:
        # other names are quoted as JMESPath quotes them: labels."app.kubernetes.io/name"
        name = part if isinstance(part, str) and _IDENTIFIER.fullmatch(part) else _short(part)
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out or "payload"


def _short(value: Any, depth: int = 0) -> str:
    """At most 60 characters of ``value`` as JSON, for messages; total on any value of any size."""
    if isinstance(value, list | tuple):
        if depth >= 2:
            return "[...]" if value else "[]"
        items = [_short(item, depth + 1) for item in itertools.islice(value, 4)]
        text = "[" + ", ".join(items[:3]) + (", ...]" if len(items) > 3 else "]")
    elif isinstance(value, dict):
        text = "{...}" if value else "{}"
    elif isinstance(value, str):
        text = json.dumps(clean_text(value[:60]) + ("..." if len(value) > 60 else ""), ensure_ascii=False)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        text = json.dumps(value)
    elif isinstance(value, int):
        text = (
            str(value)
            if value.bit_length() < 200
            else f"a number of about {int(value.bit_length() * _LOG10_2) + 1} digits"
        )
    else:
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_shape(payload: Any) -> None:
    """Refuse values nested deeper than any alert input is, and integers too long to print (a Python
    caller's; JSON stops at 4,300 digits), before anything recurses into them or formats them."""
    # entries: value, depth, parent entry, key in the parent (the path is rebuilt only for the message)
    stack: list[tuple[Any, int, Any, Any]] = [(payload, 0, None, None)]
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1]
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list | tuple):
            items = enumerate(value)
        else:
            continue
        for key, item in items:
            if isinstance(item, dict | list | tuple):
                if depth + 1 > MAX_DEPTH:
                    raise AlertError(
                        f"{_path_of((item, depth + 1, entry, key))}: nested deeper than {MAX_DEPTH} levels"
                    )
                stack.append((item, depth + 1, entry, key))
            elif isinstance(item, int) and item.bit_length() > _MAX_INT_BITS:
                raise AlertError(f"{_path_of((item, depth + 1, entry, key))}: {_short(item)} is too large")


def _path_of(entry: tuple[Any, int, Any, Any]) -> str:
    path: list[str | int] = []
    while entry[2] is not None:
        key = entry[3]
        path.append(key if isinstance(key, str | int) and not isinstance(key, bool) else _short(key))
        entry = entry[2]
    return _where("", path[::-1])


def _is_label_set(value: Any) -> bool:
    if type(value) is not dict:
        return False
    for key, item in value.items():  # noqa: SIM110 - a loop: about twice as fast as all() over a generator
        if type(key) is not str or not key or type(item) is not str:
            return False
    return True


_OPTIONAL_STRINGS = ("startsAt", "endsAt", "generatorURL")


def _is_plain_alert(value: Any, with_status: bool) -> bool:
    if type(value) is not dict or not _is_label_set(value.get("labels")):
        return False
    if with_status and value.get("status") not in ("firing", "resolved"):
        return False
    for key in _OPTIONAL_STRINGS:
        if key in value and type(value[key]) is not str:
            return False
    if "fingerprint" in value and (not with_status or type(value["fingerprint"]) is not str):
        return False
    return "annotations" not in value or _is_label_set(value["annotations"])


def _certainly_valid(payload: Any, definition: str) -> bool:
    """A quick check for the common, well-formed payload; ``False`` only means "ask the schema"."""
    if definition == "prometheusAlerts":
        return type(payload) is list and all(_is_plain_alert(a, False) for a in payload)
    if definition in ("postableAlert", "webhookAlert"):
        return _is_plain_alert(payload, definition == "webhookAlert")
    if definition != "alertmanagerWebhook" or type(payload) is not dict:
        return False
    if payload.get("version") != "4" or payload.get("status") not in ("firing", "resolved"):
        return False
    for key in ("groupKey", "receiver", "externalURL"):
        if key in payload and type(payload[key]) is not str:
            return False
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in payload and not _is_label_set(payload[key]):
            return False
    if "truncatedAlerts" in payload and not (
        type(payload["truncatedAlerts"]) is int and 0 <= payload["truncatedAlerts"] <= _MAX_UINT64
    ):
        return False
    alerts = payload.get("alerts")
    return type(alerts) is list and all(_is_plain_alert(a, True) for a in alerts)


def _validate(payload: Any, definition: str, prefix: str) -> bool:
    """Raise :class:`AlertError` for a payload that is not a ``definition``; True when it is plain
    JSON (every name a string), as :func:`_certainly_valid` found it."""
    if _certainly_valid(payload, definition):
        return True  # nothing but the fields read below, all plain; unknown fields are never looked at
    _check_shape(payload)
    try:
        errors = sorted(_validator(definition).iter_errors(payload), key=lambda e: list(e.absolute_path))
    except (ValueError, RecursionError, TypeError):
        # jsonschema formats its messages eagerly: a Python caller's integer of 10,000 digits, say
        raise AlertError(f"{prefix or 'payload'}: cannot be checked (a value is too large)") from None
    if not errors:
        return False
    error = errors[0]
    where = _where(prefix, list(error.absolute_path))
    if error.validator == "type":
        message = f"{_short(error.instance)} is not a {error.validator_value}"
        path = list(error.absolute_path)
        if len(path) >= 2 and path[-2] in _LABEL_SETS:
            message += " (label and annotation values must be strings: quote numbers and booleans)"
    elif error.validator == "required":
        message = error.message
    elif error.validator == "enum":
        message = f"{_short(error.instance)} is not one of {error.validator_value}"
    elif error.validator == "const":
        message = f"{_short(error.instance)} is not supported (only {error.validator_value!r})"
    elif error.validator == "minLength":
        message = "label names must not be empty"
    elif error.validator == "minimum":
        message = f"{_short(error.instance)} is less than the minimum of {error.validator_value}"
    elif error.validator == "maximum":
        message = f"{_short(error.instance)} is more than the maximum of {error.validator_value}"
    else:
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    raise AlertError(f"{where}: {message}{more}")


def _timestamp(raw: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    return parse_timestamp(str(value), f"{where}.{key}")


def _checked_names(value: Mapping[Any, str] | None, where: str) -> Mapping[str, str]:
    odd = [name for name in value or {} if not isinstance(name, str)]
    if odd:  # only YAML can say this; JSON keys are always strings
        raise AlertError(f"{where}: names must be strings, not {_short(odd[0])}")
    return value or {}


def _label_set(
    value: Mapping[Any, str] | None, where: str, *, labels: bool, plain: bool = False
) -> dict[str, str]:
    """A checked group label or annotation set, normalised as :meth:`Alert.make` normalises an alert's."""
    if not value:
        return {}
    if not plain:
        value = _checked_names(value, where)
    return {
        (name if name.isascii() else clean_text(name)): (text if text.isascii() else clean_text(text))
        for name, text in value.items()
        if text != "" or not labels
    }


def _alert_from(
    raw: Mapping[str, Any], where: str, status: AlertStatus | None, now: datetime, plain: bool = False
) -> Alert:
    """``plain``: :func:`_validate` found every name a string already."""
    if plain:
        labels = raw["labels"]
        annotations = raw.get("annotations") or {}
    else:
        labels = _checked_names(raw["labels"], f"{where}.labels")
        annotations = _checked_names(raw.get("annotations"), f"{where}.annotations")
    starts_at = _timestamp(raw, "startsAt", where)
    ends_at = _timestamp(raw, "endsAt", where)
    starts_at_given = starts_at is not None
    if starts_at is None:
        starts_at = now  # as Alertmanager does for an alert without a start
    # Only Alertmanager's webhook carries a fingerprint; Alertmanager ignores one in a posted alert.
    given = str(raw.get("fingerprint") or "") or None if status is not None else None
    if status is None:
        # Prometheus sends no status: an alert whose end lies in the past is resolved.
        status = "resolved" if ends_at is not None and ends_at <= now else "firing"
    return Alert.make(
        labels,
        status=status,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=str(raw.get("generatorURL") or ""),
        given_fingerprint=given,
        starts_at_given=starts_at_given,
    )


def parse_notification(payload: Any, now: datetime | None = None) -> Notification:
    """Parse an Alertmanager webhook (v4), a Prometheus alert list, or one alert object.

    ``now`` stands in for a missing ``startsAt`` and decides whether a Prometheus alert whose
    ``endsAt`` is set is already resolved. Raises :class:`AlertError` naming the bad field.
    """
    moment = now or datetime.now(UTC)
    if isinstance(payload, list):
        plain = _validate(payload, "prometheusAlerts", "")
        alerts = tuple(_alert_from(raw, f"[{i}]", None, moment, plain) for i, raw in enumerate(payload))
        return Notification(alerts, None, "prometheus")
    if not isinstance(payload, Mapping):
        raise AlertError(
            f"payload: expected an Alertmanager webhook object, a list of alerts or one alert, "
            f"got {type(payload).__name__}"
        )
    if "alerts" in payload or "version" in payload:
        plain = _validate(payload, "alertmanagerWebhook", "")
        group = AlertGroup(
            receiver=clean_text(str(payload.get("receiver") or "")),
            group_key=clean_text(str(payload.get("groupKey") or "")),
            status=payload["status"],
            group_labels=MappingProxyType(
                _label_set(payload.get("groupLabels"), "groupLabels", labels=True, plain=plain)
            ),
            common_labels=MappingProxyType(
                _label_set(payload.get("commonLabels"), "commonLabels", labels=True, plain=plain)
            ),
            common_annotations=MappingProxyType(
                _label_set(payload.get("commonAnnotations"), "commonAnnotations", labels=False, plain=plain)
            ),
            external_url=clean_text(str(payload.get("externalURL") or "")),
            truncated_alerts=int(payload.get("truncatedAlerts") or 0),
        )
        alerts = tuple(
            _alert_from(raw, f"alerts[{i}]", raw["status"], moment, plain)
            for i, raw in enumerate(payload["alerts"])
        )
        return Notification(alerts, group, "alertmanager")
    if "labels" in payload:
        if "status" in payload:
            _validate(payload, "webhookAlert", "")
            return Notification((_alert_from(payload, "alert", payload["status"], moment),), None, "alert")
        _validate(payload, "postableAlert", "")
        return Notification((_alert_from(payload, "alert", None, moment),), None, "alert")
    raise AlertError(
        "payload: not an alert: expected an Alertmanager webhook (with 'version' and 'alerts'), "
        "a list of alerts, or one alert with 'labels'"
    )


def parse_json(text: str | bytes, now: datetime | None = None) -> Notification:
    """Parse a JSON document (an HTTP body, a file) into a :class:`Notification`."""
    if len(text) > MAX_PAYLOAD_BYTES:
        raise AlertError(
            f"payload: {len(text) / 1_048_576:.1f} MiB is more than the "
            f"{MAX_PAYLOAD_BYTES // 1_048_576} MiB an alert payload may hold"
        )
    return parse_notification(load_json(text, "payload"), now)


def load_json(text: str | bytes, where: str) -> Any:
    """The JSON value of ``text``; every problem (syntax, encoding, depth, huge numbers) an AlertError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AlertError(
            f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise AlertError(f"{where}: not valid JSON: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise AlertError(f"{where}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise AlertError(
                f"{where}: a number has more than {sys.get_int_max_str_digits()} digits "
                "(write such values as strings)"
            ) from None
        raise AlertError(f"{where}: not valid JSON: {exc}") from None
