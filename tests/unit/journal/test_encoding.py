"""Records made storable before any database sees them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kurative.errors import AlertError, RecordRejected
from kurative.journal import IncomingAlert, JournalLimits
from kurative.journal.encoding import decode_cursor, encode_cursor, encode_json, prepare_alerts, sanitize

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def strings(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [k, *strings(v)]]
    if isinstance(value, list):
        return [t for item in value for t in strings(item)]
    return []


@given(json_values)
def test_encoded_json_is_always_valid_utf8_without_nul(value: object) -> None:
    text, sanitized = encode_json(value, "value", 10_000_000)
    text.encode("utf-8")
    assert "\x00" not in text
    decoded = json.loads(text)
    assert not any("\x00" in s for s in strings(decoded))
    if not sanitized:
        assert decoded == value


@given(st.dictionaries(st.text(), st.text(), max_size=6))
def test_any_labels_are_stored_or_refused_never_crash(labels: dict[str, str]) -> None:
    try:
        (prepared,) = prepare_alerts(
            [IncomingAlert("fp", "firing", labels, {"labels": labels}, "t")], JournalLimits()
        )
    except AlertError:
        return
    stored = json.loads(prepared.labels_json)
    assert len(stored) <= len(labels)
    assert all("\x00" not in k + v for k, v in stored.items())


def test_an_escaped_looking_literal_is_not_mistaken_for_a_nul() -> None:
    assert encode_json({"\\u0000": "C:\\\\u0000"}, "x", 100) == ('{"\\\\u0000":"C:\\\\\\\\u0000"}', False)


def test_sanitize_replaces_only_what_cannot_be_stored() -> None:
    assert sanitize({"a": ["ok", "é"]}) == ({"a": ["ok", "é"]}, False)
    assert sanitize({"a\x00": "\udcff"}) == ({"a\ufffd": "\ufffd"}, True)


def test_size_limits_name_the_record() -> None:
    with pytest.raises(
        RecordRejected, match=r"step x output is 1\.0 MiB as JSON, over the journal's limit of 1 KiB"
    ):
        encode_json("y" * (1024 * 1024 - 2), "step x output", 1024)


@given(st.integers(min_value=0, max_value=2**62))
def test_cursor_round_trips(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize("bad", ["", "!!!", "ZZZZ", encode_cursor(5)[:-2] + "$$"])
def test_bad_cursor_is_a_clear_error(bad: str) -> None:
    with pytest.raises(RecordRejected, match="invalid cursor"):
        decode_cursor(bad)
