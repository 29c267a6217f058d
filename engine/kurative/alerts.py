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
followed by the separator byte 0xff, printed as 16 lower-case hex digits. So the same alert gets the
same fingerprint whether it reached us through Alertmanager or straight from Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

import jsonschema

from kurative.errors import AlertError

AlertStatus = Literal["firing", "resolved"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1

# Alertmanager and Go write the zero time for "unset".
_ZERO_TIMES = frozenset({"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"})
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set, as 16 lower-case hex digits."""
    data = b"".join(
        name.encode("utf-8") + b"\xff" + labels[name].encode("utf-8") + b"\xff"
        for name in sorted(labels, key=lambda n: n.encode("utf-8"))
    )
    h = _FNV_OFFSET
    prime = _FNV_PRIME
    mask = _MASK
    for byte in data:
        h = ((h ^ byte) * prime) & mask
    return f"{h:016x}"


def parse_timestamp(text: str, where: str = "timestamp") -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime; Go's zero time means unset (``None``)."""
    if text in _ZERO_TIMES or text.startswith("0001-01-01T00:00:00"):
        return None
    match = _RFC3339.match(text)
    if match is None:
        raise AlertError(
            f"{where}: invalid timestamp {text!r}: write an RFC 3339 time such as 2024-05-01T12:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
    except ValueError as exc:
        raise AlertError(f"{where}: invalid timestamp {text!r}: {exc}") from None
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, the way Alertmanager writes times; ``None`` stays ``None``."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


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
        """Build an alert from already-checked values; the fingerprint is computed when not given."""
        label_dict = dict(labels)
        annotation_dict = dict(annotations or {})
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
    full = _schema()
    schema = {"$schema": full["$schema"], "$defs": full["$defs"], "$ref": f"#/$defs/{definition}"}
    validator_cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = validator_cls(schema)
    return validator


_LABEL_SETS = frozenset({"labels", "annotations", "groupLabels", "commonLabels", "commonAnnotations"})


def _where(prefix: str, path: Sequence[str | int]) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "payload"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_label_set(value: Any) -> bool:
    if type(value) is not dict:
        return False
    return all(type(key) is str and key and type(item) is str for key, item in value.items())


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
        type(payload["truncatedAlerts"]) is int and payload["truncatedAlerts"] >= 0
    ):
        return False
    alerts = payload.get("alerts")
    return type(alerts) is list and all(_is_plain_alert(a, True) for a in alerts)


def _validate(payload: Any, definition: str, prefix: str) -> None:
    if _certainly_valid(payload, definition):
        return
    errors = sorted(_validator(definition).iter_errors(payload), key=lambda e: list(e.absolute_path))
    if not errors:
        return
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
    else:
        message = error.message
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    raise AlertError(f"{where}: {message}{more}")


def _timestamp(raw: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    return parse_timestamp(str(value), f"{where}.{key}")


def _alert_from(raw: Mapping[str, Any], where: str, status: AlertStatus | None, now: datetime) -> Alert:
    for key in ("labels", "annotations"):
        odd = [name for name in raw.get(key) or {} if not isinstance(name, str)]
        if odd:  # only YAML can say this; JSON keys are always strings
            raise AlertError(f"{where}.{key}: names must be strings, not {_short(odd[0])}")
    starts_at = _timestamp(raw, "startsAt", where)
    ends_at = _timestamp(raw, "endsAt", where)
    starts_at_given = starts_at is not None
    if starts_at is None:
        starts_at = now  # as Alertmanager does for an alert without a start
    if status is None:
        # Prometheus sends no status: an alert whose end lies in the past is resolved.
        status = "resolved" if ends_at is not None and ends_at <= now else "firing"
    return Alert.make(
        raw["labels"],
        status=status,
        annotations=raw.get("annotations") or {},
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=str(raw.get("generatorURL") or ""),
        given_fingerprint=str(raw.get("fingerprint") or "") or None,
        starts_at_given=starts_at_given,
    )


def parse_notification(payload: Any, now: datetime | None = None) -> Notification:
    """Parse an Alertmanager webhook (v4), a Prometheus alert list, or one alert object.

    ``now`` stands in for a missing ``startsAt`` and decides whether a Prometheus alert whose
    ``endsAt`` is set is already resolved. Raises :class:`AlertError` naming the bad field.
    """
    moment = now or datetime.now(UTC)
    if isinstance(payload, list):
        _validate(payload, "prometheusAlerts", "")
        alerts = tuple(_alert_from(raw, f"[{i}]", None, moment) for i, raw in enumerate(payload))
        return Notification(alerts, None, "prometheus")
    if not isinstance(payload, Mapping):
        raise AlertError(
            f"payload: expected an Alertmanager webhook object, a list of alerts or one alert, "
            f"got {type(payload).__name__}"
        )
    if "alerts" in payload or "version" in payload:
        _validate(payload, "alertmanagerWebhook", "")
        group = AlertGroup(
            receiver=str(payload.get("receiver") or ""),
            group_key=str(payload.get("groupKey") or ""),
            status=payload["status"],
            group_labels=MappingProxyType(dict(payload.get("groupLabels") or {})),
            common_labels=MappingProxyType(dict(payload.get("commonLabels") or {})),
            common_annotations=MappingProxyType(dict(payload.get("commonAnnotations") or {})),
            external_url=str(payload.get("externalURL") or ""),
            truncated_alerts=int(payload.get("truncatedAlerts") or 0),
        )
        alerts = tuple(
            _alert_from(raw, f"alerts[{i}]", raw["status"], moment) for i, raw in enumerate(payload["alerts"])
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
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AlertError(f"payload: not valid JSON: {exc}") from None
    return parse_notification(payload, now)
