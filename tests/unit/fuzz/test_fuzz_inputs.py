"""Fuzzing what the outside world sends: alert payloads, alert files and journal URLs.

The daemon's ingress will hand the alert parser whatever the network sends, and the CLI reads files
and URLs it is given. For each entry point the property is the same: a result or a
:class:`~kurative.errors.KurativeError`, nothing else, within a time bound (hypothesis' deadline) and
a memory bound (the peak of traced allocations). Every class of input that once crashed, hung or
exhausted memory is pinned as an ``@example``.
"""

from __future__ import annotations

import argparse
import json
import re
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kurative.alerts import Notification, fingerprint, parse_json, parse_notification
from kurative.commands.migrate import wait_seconds
from kurative.commands.simulate import read_payload
from kurative.errors import KurativeError
from kurative.journal import JournalTarget, parse_journal_url, redact_url

T = TypeVar("T")

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
DEADLINE = timedelta(seconds=5)  # generous for a loaded 2-core machine; the bugs took 10 s to forever
MEMORY_BOUND = 64 * 1024 * 1024  # peak traced bytes per example; an alias bomb took 270 MB
HEX16 = re.compile(r"[0-9a-f]{16}")


def bounded(call: Callable[[], T]) -> T | KurativeError:
    """``call()``'s result or the KurativeError it raised; any other exception fails the test, and so
    does a peak of traced allocations above MEMORY_BOUND."""
    tracemalloc.start()
    try:
        try:
            return call()
        except KurativeError as exc:
            message = str(exc)
            assert message
            assert "\n" not in message.strip(), message  # one clear line
            message.encode("utf-8")  # printable
            return exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"peak of {peak / 1_048_576:.0f} MiB"


# -- strategies -----------------------------------------------------------------------------------

SURROGATES = ["\ud800", "\udfff", "a\udc80b", "\ud83d", "\ude00\ud83d"]
hostile_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from([*SURROGATES, "", "\x00", "${labels.x}", "\ufeff", "a" * 300]),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.text(st.characters(codec="utf-8"), max_size=4).map(lambda t: t + "\ud800"),
)

EDGE_TIMES = [
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999999Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:01+01:00",
    "0000-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-05-01T24:00:00Z",
    "2024-05-01T12:00:60Z",
    "2024-05-01T12:00:00+24:00",
    "2024-05-01T12:00:00-23:59",
    "2024-05-01T12:00:00Z\n",
    "٢٠٢٤-05-01T12:00:00Z",
    "2024-05-01T12:00:00.1234567890Z",
    "1" * 5000,
]


@st.composite
def rfc3339_like(draw: st.DrawFn) -> str:
    """Times that fit the RFC 3339 shape, with every field allowed out of its range."""
    year = draw(st.integers(0, 9999))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    fraction = draw(st.one_of(st.just(""), st.integers(1, 9).map(lambda n: "." + "9" * n)))
    zone = draw(
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.tuples(st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61)).map(
                lambda z: f"{z[0]}{z[1]:02d}:{z[2]:02d}"
            ),
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


timestamps = st.one_of(st.sampled_from(EDGE_TIMES), rfc3339_like(), hostile_text)
numbers = st.one_of(
    st.integers(),
    st.integers(0, 6000).map(lambda n: 10**n),  # from Python callers: any size
    st.integers(0, 6000).map(lambda n: -(10**n)),
    st.floats(),  # with NaN and infinities
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
FIELDS = [
    "version",
    "status",
    "alerts",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "truncatedAlerts",
    "receiver",
    "groupKey",
    "externalURL",
]
any_json = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), hostile_text), inner, max_size=5),
    ),
    max_leaves=25,
)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


class Deep:
    """A seed too deep for hypothesis to print: ``build()`` puts ``nested(depth)`` where ``at`` says."""

    def __init__(self, depth: int, at: Callable[[Any], Any] = lambda value: value) -> None:
        self.depth, self.at = depth, at

    def __repr__(self) -> str:
        return f"Deep({self.depth})"

    def build(self) -> Any:
        return self.at(nested(self.depth))


deep = st.integers(17, 200).map(nested)  # deeper than any alert input; shallow enough to print
label_sets = st.dictionaries(hostile_text, st.one_of(hostile_text, hostile_text, scalars, deep), max_size=5)
status = st.one_of(st.sampled_from(["firing", "resolved"]), hostile_text)


@st.composite
def alerts(draw: st.DrawFn, webhook: bool) -> dict[str, Any]:
    alert: dict[str, Any] = {"labels": draw(label_sets)}
    if webhook:
        alert["status"] = draw(status)
    for key, values in (
        ("annotations", label_sets),
        ("startsAt", timestamps),
        ("endsAt", timestamps),
        ("generatorURL", hostile_text),
        ("fingerprint", hostile_text),
    ):
        if draw(st.booleans()):
            alert[key] = draw(values)
    return alert


@st.composite
def webhooks(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "version": draw(st.one_of(st.just("4"), scalars)),
        "status": draw(status),
        "alerts": draw(st.lists(alerts(webhook=True), max_size=4)),
    }
    for key, values in (
        ("groupLabels", label_sets),
        ("commonLabels", label_sets),
        ("commonAnnotations", label_sets),
        ("truncatedAlerts", numbers),
        ("receiver", hostile_text),
        ("groupKey", hostile_text),
        ("externalURL", hostile_text),
    ):
        if draw(st.booleans()):
            payload[key] = draw(values)
    return payload


payloads = st.one_of(
    webhooks(),
    st.lists(alerts(webhook=False), max_size=4),
    alerts(webhook=False),
    alerts(webhook=True),
    any_json,
    deep,
)


def check_notification(notification: Notification) -> None:
    """What every accepted payload must give: label sets Alertmanager would keep, encodable output."""
    for alert in notification.alerts:
        assert all(type(k) is str and type(v) is str and v != "" for k, v in alert.labels.items())
        json.dumps(alert.to_json(), ensure_ascii=False).encode("utf-8")
        alert.fingerprint.encode("utf-8")
        if notification.kind == "prometheus":  # no fingerprint sent: ours is Alertmanager's
            assert HEX16.fullmatch(alert.fingerprint)
            assert alert.fingerprint == fingerprint(alert.labels)
    if notification.group is not None:
        json.dumps(notification.group.to_json(), ensure_ascii=False).encode("utf-8")


# -- the alert parser: Python values (what a YAML file or the daemon hands it) --------------------

SETTINGS = settings(
    max_examples=150,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(payload=payloads)
@example(payload=[{"labels": {"alertname": "\ud800"}}])
@example(payload=[{"labels": {"\udfff": "x", "pod": ""}, "annotations": {"s": "\ud800"}}])
@example(payload=[{"labels": {"a": "b"}, "startsAt": "9999-12-31T23:59:59-01:00"}])
@example(payload={"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": -(10**5000)})
@example(payload=[{"labels": {"a": 10**5000}}])
@example(payload=Deep(100_000, lambda value: [{"labels": {"a": value}}]))
@example(payload=Deep(100_000))
@example(payload=Deep(100_000, lambda value: {"labels": {"a": "b"}, "extra": value}))
@example(payload={"labels": {1: "x"}})
@example(payload={"version": "4", "status": "firing", "groupLabels": {2: "x"}, "alerts": []})
@example(payload=[{"labels": {"a": "b"}, "startsAt": "1" * 100_000}])
@example(payload=[{"labels": {"a": float("nan")}, "status": float("inf")}])
def test_the_alert_parser_gives_alerts_or_an_alert_error(payload: Any) -> None:
    if isinstance(payload, Deep):
        payload = payload.build()
    result = bounded(lambda: parse_notification(payload, NOW))
    if isinstance(result, Notification):
        check_notification(result)


# -- the alert parser: JSON text and bytes (what the network sends) ------------------------------


def number_text(digits: int) -> str:
    return "1" + "0" * digits


json_leaves = st.one_of(
    st.sampled_from(["null", "true", "NaN", "-Infinity", "1e400", '"\\ud800"', '"\\udfff\\ud800"', '""']),
    st.integers(0, 6000).map(number_text),
    st.sampled_from(EDGE_TIMES).map(json.dumps),
    st.text(max_size=8).map(json.dumps),
)


def as_json_text(payload: Any) -> str:
    try:
        return json.dumps(payload, default=str)[:20_000]
    except ValueError:  # an integer json.dumps will not print: JSON numbers are the json_texts' job
        return "[]"


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON documents written as text, so they can hold what json.dumps never writes."""
    inner = st.recursive(
        json_leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
            st.dictionaries(st.sampled_from([*FIELDS, "a", "\\ud800"]), children, max_size=5).map(
                lambda d: "{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}"
            ),
        ),
        max_leaves=20,
    )
    text = draw(inner)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return text


@SETTINGS
@given(body=st.one_of(json_texts(), payloads.map(as_json_text), st.binary()))
@example(body='[{"labels": {"alertname": "\\ud800"}}]')
@example(body='[{"labels": {"a": 1' + "0" * 5000 + "}}]")
@example(body="[" * 100_000 + "]" * 100_000)
@example(body=b"\xff\xfe[]")
@example(body="[" + '{"labels": {"a": "b"}}, ' * 100_000)
@example(body=b" " * (16 * 1024 * 1024 + 1))
def test_json_bodies_give_alerts_or_an_alert_error(body: str | bytes) -> None:
    result = bounded(lambda: parse_json(body, NOW))
    if isinstance(result, Notification):
        check_notification(result)


# -- the alerts-file reader of simulate ----------------------------------------------------------

BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 10) if prev else ', '.join(['x'] * 10)}]\n"
        for prev, name in zip(
            [None, "a", "b", "c", "d", "e", "f"], ["a", "b", "c", "d", "e", "f", "g"], strict=True
        )
    )
    + "labels: {alertname: X}\n"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alert-files")


yaml_texts = st.one_of(
    st.sampled_from(
        [
            BOMB,
            'labels: {alertname: "\\ud800"}\n',
            "labels: {a: 1" + "0" * 5000 + "}\n",
            "labels: {a: b}\nstartsAt: 9999-12-31T23:59:59-01:00\n",
            "labels: {a: b}\nstartsAt: 2024-05-01 12:00:00\n",
            "labels: !!python/object:os.system {a: b}\n",
            "---\nlabels: {a: b}\n---\nlabels: {c: d}\n",
            "labels:\n" + "  " * 200 + "a: b\n",
        ]
    ),
    st.text(max_size=200),
)


@settings(
    max_examples=100,
    deadline=DEADLINE,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    content=st.one_of(
        yaml_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_texts().map(str.encode),
        st.binary(),
    ),
    suffix=st.sampled_from([".json", ".yaml", ".yml", ".txt", ""]),
)
@example(content=BOMB.encode(), suffix=".yaml")
@example(content=BOMB.encode(), suffix=".txt")
@example(content=b"[" + b'{"labels": {"a": "b"}}, ' * 100_000, suffix=".txt")  # 2.4 MB, truncated
@example(content=b"[" + b'{"labels": {"a": "b"}}, ' * 100_000, suffix=".json")
@example(content=b'[{"labels": {"alertname": "\\ud800"}}]', suffix=".json")
@example(content=b'[{"labels": {"a": 1' + b"0" * 5000 + b"}}]", suffix=".json")
@example(content=b"labels: {a: 1" + b"0" * 5000 + b"}\n", suffix=".yaml")
@example(content=b'[{"labels": {"a": "b"}, "startsAt": "9999-12-31T23:59:59-01:00"}]', suffix=".json")
@example(content=b"\xed\xa0\x80", suffix=".json")  # a surrogate encoded as UTF-8: not UTF-8
def test_alert_files_give_alerts_or_a_clear_error(folder: Path, content: bytes, suffix: str) -> None:
    path = folder / f"alerts{suffix}"
    path.write_bytes(content)

    def read_and_parse() -> Notification:
        return parse_notification(read_payload(str(path)), NOW)

    result = bounded(read_and_parse)
    if isinstance(result, Notification):
        check_notification(result)


def test_an_oversized_alert_file_costs_no_memory(folder: Path) -> None:
    path = folder / "big.json"
    with path.open("wb") as file:
        file.truncate(64 * 1024 * 1024)  # sparse
    result = bounded(lambda: read_payload(str(path)))
    assert isinstance(result, KurativeError)
    assert "64.0 MiB, more than the 16 MiB" in str(result)


# -- journal URLs and --wait --------------------------------------------------------------------

url_parts = st.tuples(
    st.sampled_from(
        ["sqlite:///", "sqlite:////", "sqlite://", "postgresql://", "postgres://", "mysql://", ""]
    ),
    st.one_of(
        st.just(""),
        st.sampled_from(["u@", "u:s3cret@", "%00@", "u:@", "@"]),
        hostile_text.map(lambda t: t + "@"),
    ),
    st.one_of(
        st.sampled_from(["db", "[::1]", "[::1", "::1]", "my db", "db\x00", "a,b", "[", "]"]), hostile_text
    ),
    st.one_of(
        st.just(""),
        st.sampled_from(
            [":5432", ":0", ":65535", ":65536", ":99999", ":-1", ":abc", ":５４３２", ":", ":1e3"]
        ),
        st.integers().map(lambda n: f":{n}"),
    ),
    st.one_of(
        st.just(""),
        st.sampled_from(["/j", "/j%00", "/%ed%a0%80", "/a b", "/j?port=70000", "/j?x=%zz"]),
        hostile_text,
    ),
)


@settings(max_examples=400, deadline=DEADLINE)
@given(url=st.one_of(url_parts.map("".join), st.text(), hostile_text))
@example(url="sqlite:////tmp/journal%00.db")
@example(url="sqlite:///journal\x00.db")
@example(url="postgresql://u@db:99999/j")
@example(url="postgresql://u@db:abc/j")
@example(url="postgresql://u:s3cret@[::1/j")
@example(url="postgresql://u@my db/j")
@example(url="postgresql://u@db/\udcff")
@example(url="postgres://%00@db/j")
@example(url="postgresql://db/%ed%a0%80")
def test_journal_urls_give_a_target_or_a_usage_error(url: str) -> None:
    shown = redact_url(url)  # total: used in every message about the URL
    with_password = url.startswith(("postgresql://u:s3cret@", "postgres://u:s3cret@"))
    if with_password:
        assert "s3cret" not in shown
    result = bounded(lambda: parse_journal_url(url))
    if isinstance(result, JournalTarget):
        assert result.backend in ("sqlite", "postgresql")
        assert "\x00" not in result.target
        result.target.encode("utf-8")
        assert result.shown == shown
    elif with_password:
        assert "s3cret" not in str(result)


@settings(max_examples=200, deadline=DEADLINE)
@given(text=st.one_of(st.floats().map(repr), st.integers().map(str), st.text(max_size=10)))
@example(text="nan")
@example(text="1e400")
@example(text="-inf")
@example(text="1" + "0" * 5000)
def test_wait_is_a_bounded_finite_number_or_a_usage_error(text: str) -> None:
    try:
        seconds = wait_seconds(text)
    except argparse.ArgumentTypeError:
        return
    assert 0 <= seconds <= 86_400
