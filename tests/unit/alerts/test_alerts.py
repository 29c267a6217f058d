"""Parsing both alert inputs into Alert values, fingerprints, and the bad input senders produce."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurative.alerts import (
    Alert,
    _certainly_valid,
    _validator,
    fingerprint,
    parse_json,
    parse_notification,
    parse_rfc3339,
    parse_timestamp,
)
from kurative.errors import AlertError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# Values from prometheus/common model (signature_test.go): labelSetToFingerprint.
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, 14695981039346656037),
        ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
        ({"first-label": "first-label-value"}, 5146282821936882169),
        ({"first-label": "first-label-value", "second-label": "second-label-value"}, 3195800080984914717),
        (
            {
                "first-label": "first-label-value",
                "second-label": "second-label-value",
                "third-label": "third-label-value",
            },
            13843036195897128121,
        ),
    ],
)
def test_fingerprint_matches_prometheus_model(labels: dict[str, str], expected: int) -> None:
    assert fingerprint(labels) == f"{expected:016x}"


def test_fingerprint_does_not_depend_on_label_order_but_on_every_byte() -> None:
    a = fingerprint({"a": "b", "c": "d"})
    assert a == fingerprint({"c": "d", "a": "b"})
    assert a != fingerprint({"a": "bc", "": "d"})  # the separator byte keeps names and values apart
    assert fingerprint({"ü": "ß"}) != fingerprint({"u": "s"})


WEBHOOK = {
    "version": "4",
    "groupKey": '{}:{alertname="KubePodCrashLooping"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "kurative",
    "groupLabels": {"alertname": "KubePodCrashLooping"},
    "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "critical", "pod": "web-1"},
            "annotations": {"summary": "web-1 restarts"},
            "startsAt": "2024-05-01T11:58:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c0ffee00c0ffee00",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "critical", "pod": "web-2"},
            "startsAt": "2024-05-01T11:00:00+02:00",
            "endsAt": "2024-05-01T11:30:00+02:00",
        },
    ],
}


def test_alertmanager_webhook_becomes_alerts_and_a_group() -> None:
    notification = parse_notification(WEBHOOK, NOW)
    assert notification.kind == "alertmanager"
    first, second = notification.alerts
    assert first.status == "firing"
    assert first.fingerprint == "c0ffee00c0ffee00"  # the sender's fingerprint wins
    assert first.starts_at == datetime(2024, 5, 1, 11, 58, 0, 123456, tzinfo=UTC)
    assert first.ends_at is None
    assert first.document["endsAt"] is None
    assert first.document["startsAt"] == "2024-05-01T11:58:00.123456Z"
    assert second.status == "resolved"
    assert second.fingerprint == fingerprint(dict(second.labels))
    assert second.starts_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    group = notification.group
    assert group is not None
    assert dict(group.document) == {
        "receiver": "kurative",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "critical"},
        "externalURL": "http://alertmanager:9093",
    }


def test_prometheus_list_gets_status_from_ends_at() -> None:
    payload = [
        {"labels": {"alertname": "A"}, "startsAt": "2024-05-01T11:00:00Z", "endsAt": "2024-05-01T13:00:00Z"},
        {"labels": {"alertname": "B"}, "startsAt": "2024-05-01T11:00:00Z", "endsAt": "2024-05-01T11:59:00Z"},
        {"labels": {"alertname": "C"}},
    ]
    notification = parse_notification(payload, NOW)
    assert notification.kind == "prometheus"
    assert notification.group is None
    assert [a.status for a in notification.alerts] == ["firing", "resolved", "firing"]
    assert notification.alerts[2].starts_at == NOW  # a missing start is "now", as Alertmanager does


def test_single_alert_object() -> None:
    notification = parse_json(json.dumps({"labels": {"alertname": "A"}, "status": "resolved"}), NOW)
    assert notification.kind == "alert"
    assert notification.alerts[0].status == "resolved"


def test_same_alert_same_fingerprint_from_either_sender() -> None:
    labels = {"alertname": "A", "instance": "x:9100"}
    via_prometheus = parse_notification([{"labels": labels}], NOW).alerts[0]
    via_alertmanager = parse_notification(
        {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": labels}]}, NOW
    ).alerts[0]
    assert via_prometheus.fingerprint == via_alertmanager.fingerprint == fingerprint(labels)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            [{"labels": {"alertname": "A", "replicas": 3}}],
            "[0].labels.replicas: 3 is not a string (label and annotation values must be strings",
        ),
        ([{"labels": {"alertname": "A", "ok": None}}], "[0].labels.ok: null is not a string"),
        ([{"labels": {"": "x"}}], "[0].labels: label names must not be empty"),
        ([{"annotations": {}}], "[0]: 'labels' is a required property"),
        ([{"labels": {"a": "b"}, "startsAt": "yesterday"}], "[0].startsAt: invalid timestamp 'yesterday'"),
        ([{"labels": {"a": "b"}, "endsAt": "2024-13-01T00:00:00Z"}], "[0].endsAt: invalid timestamp"),
        ([{"labels": {"a": "b"}, "startsAt": "2024-05-01T00:00:00"}], "invalid timestamp"),  # no zone
        ({"version": "3", "status": "firing", "alerts": []}, 'version: "3" is not supported'),
        (
            {"version": "4", "status": "firing", "alerts": [{"status": "pending", "labels": {}}]},
            "alerts[0].status: \"pending\" is not one of ['firing', 'resolved']",
        ),
        ("just text", "payload: expected an Alertmanager webhook object"),
        ({"hello": "world"}, "payload: not an alert"),
    ],
)
def test_bad_input_is_a_clear_alert_error(payload: object, message: str) -> None:
    with pytest.raises(AlertError) as caught:
        parse_notification(payload, NOW)
    assert message in str(caught.value)


def test_invalid_json_is_an_alert_error() -> None:
    with pytest.raises(AlertError, match="not valid JSON"):
        parse_json(b"{not json", NOW)


def test_timestamps_normalise_to_utc() -> None:
    assert parse_timestamp("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("2024-05-01t12:00:00z") == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_a_thousand_labels() -> None:
    labels = {f"label_{i:04d}": f"value {i}" for i in range(1000)}
    labels["alertname"] = "Huge"
    alert = parse_notification([{"labels": labels}], NOW).alerts[0]
    assert len(alert.labels) == 1001
    assert alert.fingerprint == fingerprint(labels)


def test_ten_thousand_alerts_in_one_payload() -> None:
    alerts = [
        {"status": "firing", "labels": {"alertname": "Many", "i": str(i)}, "startsAt": "2024-05-01T11:00:00Z"}
        for i in range(10_000)
    ]
    notification = parse_notification({"version": "4", "status": "firing", "alerts": alerts}, NOW)
    assert len(notification.alerts) == 10_000
    assert len({a.fingerprint for a in notification.alerts}) == 10_000


def test_ten_thousand_alerts_with_one_bad_one_names_it() -> None:
    alerts = [{"labels": {"alertname": "Many", "i": str(i)}} for i in range(10_000)]
    alerts[7321]["labels"]["i"] = 7321  # type: ignore[assignment]
    with pytest.raises(AlertError, match=r"^\[7321\]\.labels\.i: 7321 is not a string"):
        parse_notification(alerts, NOW)


def test_labels_that_look_like_expressions_stay_text() -> None:
    tricky = {"alertname": "A", "query": "labels.x == 'y' || `true`", "tmpl": "${labels.alertname}"}
    alert = parse_notification([{"labels": tricky}], NOW).alerts[0]
    assert dict(alert.labels) == tricky


def test_alerts_are_immutable() -> None:
    alert = Alert.make({"alertname": "A"})
    with pytest.raises(TypeError):
        alert.labels["alertname"] = "B"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.status = "resolved"  # type: ignore[misc]
    assert hash(alert) == hash(Alert.make({"alertname": "A"}))


def test_to_json_is_a_fresh_copy() -> None:
    alert = Alert.make({"alertname": "A"}, starts_at=NOW - timedelta(minutes=5))
    out = alert.to_json()
    out["labels"]["alertname"] = "changed"
    assert alert.labels["alertname"] == "A"
    assert out["startsAt"] == "2024-05-01T11:55:00Z"


# --- the quick validity check never accepts what the schema rejects ------------------------------

label_sets = st.dictionaries(
    st.sampled_from(["", "alertname", "pod", "severity"]),
    st.one_of(st.sampled_from(["x", "", "${a}"]), st.integers(0, 2), st.none(), st.booleans()),
    max_size=3,
)
odd = st.one_of(
    st.none(), st.integers(-1, 2), st.floats(0, 2), st.booleans(), st.lists(st.none(), max_size=1)
)
alert_objects = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(st.sampled_from(["firing", "resolved", "pending"]), odd),
        "labels": st.one_of(label_sets, odd),
        "annotations": st.one_of(label_sets, odd),
        "startsAt": st.one_of(st.just("2024-05-01T12:00:00Z"), odd),
        "endsAt": st.one_of(st.just("0001-01-01T00:00:00Z"), odd),
        "generatorURL": st.one_of(st.just("http://p"), odd),
        "fingerprint": st.one_of(st.just("c0ffee00c0ffee00"), odd),
    },
)
webhooks = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.sampled_from(["4", "3"]), st.just(4)),
        "status": st.one_of(st.sampled_from(["firing", "resolved"]), odd),
        "groupKey": st.one_of(st.just("g"), odd),
        "receiver": st.one_of(st.just("r"), odd),
        "externalURL": st.one_of(st.just("http://am"), odd),
        "groupLabels": st.one_of(label_sets, odd),
        "commonLabels": st.one_of(label_sets, odd),
        "commonAnnotations": st.one_of(label_sets, odd),
        "truncatedAlerts": st.one_of(st.integers(-1, 3), odd),
        "alerts": st.one_of(st.lists(alert_objects, max_size=3), odd),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(webhooks, st.lists(alert_objects, max_size=3), alert_objects),
    definition=st.sampled_from(["alertmanagerWebhook", "prometheusAlerts", "webhookAlert", "postableAlert"]),
)
def test_quick_check_agrees_with_the_schema(payload: object, definition: str) -> None:
    if _certainly_valid(payload, definition):
        assert list(_validator(definition).iter_errors(payload)) == []


def test_yaml_style_non_string_label_names_are_refused() -> None:
    with pytest.raises(AlertError, match=r"^alert\.labels: names must be strings, not 1$"):
        parse_notification({"labels": {1: "x"}}, NOW)


any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["version", "status", "alerts", "labels", "startsAt", "endsAt", "x"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(any_json, webhooks, st.lists(alert_objects, max_size=3), alert_objects))
def test_any_input_gives_alerts_or_a_clear_error(payload: object) -> None:
    try:
        notification = parse_notification(payload, NOW)
    except AlertError as exc:
        message = str(exc)
        assert message.split(":", 1)[0], message  # it says where the problem is
        return
    for alert in notification.alerts:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert.labels.items())
        assert len(alert.fingerprint) > 0


# -- Alertmanager's normalisation and hostile input (issue 8, items 3 and 9) ------------------------


def test_empty_label_values_are_dropped_before_the_fingerprint_as_alertmanager_does() -> None:
    # Alertmanager's POST /api/v2/alerts runs removeEmptyLabels before it fingerprints an alert, so a
    # webhook it sends never has one: straight from Prometheus, the alert must get the same identity.
    sent = {"alertname": "A", "instance": "x:9100", "pod": ""}
    direct = parse_notification([{"labels": sent}], NOW).alerts[0]
    through_alertmanager = parse_notification(
        {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "A", "instance": "x:9100"},
                    "fingerprint": fingerprint({"alertname": "A", "instance": "x:9100"}),
                }
            ],
        },
        NOW,
    ).alerts[0]
    assert dict(direct.labels) == {"alertname": "A", "instance": "x:9100"}
    assert direct.fingerprint == through_alertmanager.fingerprint
    assert "pod" not in direct.document["labels"]  # `labels.pod` is null, as for any absent label


def test_empty_values_are_dropped_from_every_label_set_but_kept_in_annotations() -> None:
    notification = parse_notification(
        {
            "version": "4",
            "status": "firing",
            "groupLabels": {"alertname": "A", "team": ""},
            "commonLabels": {"alertname": "A", "team": ""},
            "commonAnnotations": {"summary": ""},
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A", "team": ""}, "annotations": {"x": ""}}
            ],
        },
        NOW,
    )
    (alert,) = notification.alerts
    assert notification.group is not None
    assert (
        dict(notification.group.group_labels) == dict(notification.group.common_labels) == {"alertname": "A"}
    )
    assert dict(notification.group.common_annotations) == {"summary": ""}
    assert dict(alert.labels) == {"alertname": "A"}
    assert dict(alert.annotations) == {"x": ""}
    assert Alert.make({"alertname": "A", "team": ""}).fingerprint == fingerprint({"alertname": "A"})


@pytest.mark.parametrize(
    "payload",
    [
        '[{"labels": {"alertname": "\\ud800"}}]',
        '[{"labels": {"\\udfff": "x"}, "annotations": {"s": "a\\ud800b"}, "generatorURL": "\\ud800"}]',
        '{"version": "4", "status": "firing", "receiver": "\\ud800", "groupLabels": {"a": "\\udc00"},'
        ' "alerts": [{"status": "firing", "labels": {"a": "\\udc00"}, "fingerprint": "\\ud800"}]}',
    ],
)
def test_lone_surrogates_become_the_replacement_character_as_in_go(payload: str) -> None:
    notification = parse_json(payload, NOW)
    for alert in notification.alerts:
        text = json.dumps(alert.to_json(), ensure_ascii=False)
        text.encode("utf-8")  # output can be written
        assert "\ufffd" in text
        assert alert.fingerprint.encode("utf-8")
    if notification.group is not None:
        json.dumps(notification.group.to_json(), ensure_ascii=False).encode("utf-8")
    first = notification.alerts[0]
    if "alertname" in first.labels:
        assert first.fingerprint == fingerprint({"alertname": "\ufffd"})


def test_fingerprint_of_a_surrogate_is_that_of_the_replacement_character() -> None:
    assert fingerprint({"a": "\ud800"}) == fingerprint({"a": "\ufffd"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9999-12-31T23:59:59-01:00", "is out of range"),  # the year 10000 in UTC
        ("0001-01-01T00:00:01+01:00", "is out of range"),  # before the year 1 in UTC
        ("2024-05-01T12:00:00Z\n", "invalid timestamp"),
        ("٢٠٢٤-05-01T12:00:00Z", "invalid timestamp"),  # Arabic-Indic digits are not RFC 3339
        ("2024-05-01T24:00:00Z", "invalid timestamp"),
        ("2024-02-30T00:00:00Z", "invalid timestamp"),
        ("2024-05-01T12:00:60Z", "invalid timestamp"),
        ("2024-05-01T12:00:00+24:00", "invalid timestamp"),
        ("2024-05-01T12:00:00.1234567890Z", "invalid timestamp"),
        ("1" * 10_000, "invalid timestamp"),
        ("\ud800", "invalid timestamp"),
    ],
)
def test_hostile_timestamps_are_alert_errors(text: str, message: str) -> None:
    with pytest.raises(AlertError, match=message) as caught:
        parse_notification([{"labels": {"a": "b"}, "startsAt": text}], NOW)
    assert len(str(caught.value)) < 300
    str(caught.value).encode("utf-8")


def test_the_last_representable_times_still_parse() -> None:
    assert parse_timestamp("9999-12-31T23:59:59.999999999Z") == datetime(
        9999, 12, 31, 23, 59, 59, 999999, UTC
    )
    assert parse_timestamp("9999-12-31T23:59:59+01:00") == datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)


def test_any_fraction_takes_what_rfc_3339_allows_and_nothing_more() -> None:
    long = "2024-05-01T12:00:00." + "9" * 40 + "Z"
    assert parse_rfc3339(long, "since", any_fraction=True) == datetime(2024, 5, 1, 12, 0, 0, 999999, UTC)
    with pytest.raises(AlertError, match="invalid timestamp"):
        parse_rfc3339(long, "startsAt")  # an alert's times are Go's: at most 9 digits
    for bad in ("2024-05-01T12:00:00.Z", "2024-05-01T12:00:00.5", "2024-05-01T12:00:00.5Z\n"):
        with pytest.raises(AlertError, match=r"^since: invalid timestamp"):
            parse_rfc3339(bad, "since", any_fraction=True)


def test_numbers_with_thousands_of_digits_are_alert_errors() -> None:
    huge = "1" + "0" * 5000
    with pytest.raises(AlertError, match="more than 4300 digits"):
        parse_json(f'[{{"labels": {{"a": {huge}}}}}]', NOW)
    # Python callers (a YAML file, the daemon's own code) can pass integers too long to print
    with pytest.raises(AlertError, match=r"^truncatedAlerts: a number of about 5001 digits is too large$"):
        parse_notification({"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": -(10**5000)})
    with pytest.raises(AlertError, match=r"^\[0\]\.labels\.a: a number of about 5001 digits is too large$"):
        parse_notification([{"labels": {"a": 10**5000}}], NOW)
    with pytest.raises(
        AlertError, match=r"^truncatedAlerts: a number of about 201 digits is less than the min"
    ):
        parse_notification({"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": -(10**200)})
    with pytest.raises(
        AlertError, match=r"^truncatedAlerts: a number of about 201 digits is more than the max"
    ):
        parse_notification({"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": 10**200})
    assert parse_json(
        '[{"labels": {"a": "b"}, "x": 1' + "0" * 4000 + "}]", NOW
    ).alerts  # unknown field: ignored


def test_deep_nesting_is_an_alert_error_not_a_recursion_error() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(AlertError, match=r"^\[0\]\.labels\.a(\[0\])+: nested deeper than 16 levels$"):
        parse_notification([{"labels": {"a": deep}}], NOW)
    with pytest.raises(AlertError, match=r"^\[0\]\.extra(\[0\])+: nested deeper than 16 levels$"):
        parse_notification([{"labels": {"a": 1}, "extra": deep}], NOW)  # checked when the schema looks
    assert parse_notification({"labels": {"a": "b"}, "extra": deep}, NOW).alerts  # unknown: never read
    with pytest.raises(AlertError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000, NOW)


def test_a_payload_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    from kurative.alerts import MAX_PAYLOAD_BYTES

    with pytest.raises(AlertError, match=r"^payload: 16\.0 MiB is more than the 16 MiB"):
        parse_json(b" " * (MAX_PAYLOAD_BYTES + 1), NOW)


def test_a_fingerprint_in_a_posted_alert_is_ignored_as_alertmanager_ignores_it() -> None:
    labels = {"alertname": "A"}
    (posted,) = parse_notification([{"labels": labels, "fingerprint": "0"}], NOW).alerts
    (single,) = parse_notification({"labels": labels, "fingerprint": "0"}, NOW).alerts
    assert posted.fingerprint == single.fingerprint == fingerprint(labels)
