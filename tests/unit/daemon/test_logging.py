"""The daemon's log setup: library lines go through the same renderer, and never carry a webhook URL."""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kurative.logging import LoggingSettings, Redactor, configure_logging, written_forms


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    out = io.StringIO()
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)
        structlog.reset_defaults()


@pytest.mark.parametrize("level", ["debug", "info"])
def test_an_http_request_never_logs_its_url(stream: io.StringIO, level: str) -> None:
    # A webhook URL is often the secret itself (a Slack hook, a secretRef): httpx logs every request's
    # full URL at INFO, so that line must not be written.
    configure_logging(LoggingSettings(format="json", level=level), Redactor(), stream)
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        client.post("https://hooks.example/services/T000/B000/s3cr3t-hook-key", json={"text": "hi"})
    logging.getLogger("psycopg.pool").warning("Started server process [1]")  # any library logger
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "s3cr3t-hook-key" not in stream.getvalue()
    assert [line["event"] for line in lines] == ["Started server process [1]"]


async def test_a_secret_a_step_resolves_is_blanked_out_of_every_later_log_line(stream: io.StringIO) -> None:
    from kurative.adapters.secrets import EnvSecret, SecretSettings, SecretStore

    redactor = Redactor()
    configure_logging(LoggingSettings(format="json", level="info"), redactor, stream)
    store = SecretStore(
        SecretSettings({"hook": EnvSecret("HOOK_URL")}),
        environ={"HOOK_URL": "https://hooks.example/T0/B0/xoxb-secret-part"},
        resolved=redactor.add,
    )
    secret = await store.resolve("hook")
    structlog.get_logger("kurative.test").info("step_failed", error=f"POST {secret.reveal()}: HTTP 500")
    assert "xoxb-secret-part" not in stream.getvalue()
    assert json.loads(stream.getvalue().splitlines()[-1])["error"] == "POST ***: HTTP 500"


def test_a_known_secret_is_blanked_out_also_json_escaped_or_percent_encoded(stream: io.StringIO) -> None:
    redactor = Redactor()
    configure_logging(LoggingSettings(format="json", level="info"), redactor, stream)
    value = 'pa"ss/wörd&+1'
    redactor.add(value)
    quoted = [json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]
    structlog.get_logger("kurative.test").warning(
        "journal_error", error=f"answer {json.dumps({'password': value})} for ?p={quoted[1]}&q={quoted[2]}"
    )
    written = stream.getvalue()
    for form in [value, *quoted, json.dumps(json.dumps(value)[1:-1])[1:-1]]:
        assert form not in written
    assert json.loads(written.splitlines()[-1])["error"] == 'answer {"password": "***"} for ?p=***&q=***'


def test_the_redactor_orders_its_forms_once_not_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sorting every form on every string of every line cost 3-6x the lines per second."""
    redactor = Redactor()
    for number in range(50):
        redactor.add(f"s3cr3t-{number:02d}-Zq8xk2LmP0/+=")
    redactor.add("s3cr3t-00")  # a part of longer forms: replaced after them, never before
    sorts: list[object] = []
    real_sorted = sorted

    def counting_sorted(*args: object, **kwargs: object) -> object:
        sorts.append(args)
        return real_sorted(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.sorted", counting_sorted)
    event = {
        "event": "step_failed",
        "message": "HTTP 500: s3cr3t-07-Zq8xk2LmP0/+= and s3cr3t-00-Zq8xk2LmP0%2F%2B%3D",
    }
    for _ in range(100):
        shown = redactor(None, "info", dict(event))
    assert shown["message"] == "HTTP 500: *** and ***"
    assert redactor.redact("s3cr3t-00 alone") == "*** alone"
    assert sorts == []


SECRETS = ["s3cr3t-Zq8x/+=", 'pa"ss\\wörd', "tab\there-xyz"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(SECRETS), st.text(max_size=12)).map(
            lambda part: json.dumps(part)[1:-1] if part.startswith("pa") and len(part) % 2 else part
        ),
        max_size=6,
    ),
    nested=st.booleans(),
)
def test_a_json_line_shows_no_secret_wherever_its_values_hold_one(
    stream: io.StringIO, parts: list[str], nested: bool
) -> None:
    """The line is searched once for every secret as JSON writes it; one that shows a secret is written
    again from its values blanked out, so that a secret never reaches the line and the line stays JSON."""
    redactor = Redactor()
    configure_logging(LoggingSettings(format="json", level="info"), redactor, stream)
    for secret in SECRETS:
        redactor.add(secret)
    text = "".join(parts)
    value: object = {"inner": [text]} if nested else text
    structlog.get_logger("kurative.test").info("step_failed", error=value, count=3)
    line = stream.getvalue().splitlines()[-1]
    stream.truncate(0)
    stream.seek(0)
    written = json.loads(line)
    if not any(form in text for secret in SECRETS for form in written_forms(secret)):
        assert written["error"] == value
    for secret in SECRETS:
        for form in written_forms(secret):
            assert form not in line


def test_a_secret_in_a_key_or_an_objects_repr_is_blanked_out_of_the_line(stream: io.StringIO) -> None:
    redactor = Redactor()
    configure_logging(LoggingSettings(format="json", level="info"), redactor, stream)
    redactor.add("s3cr3t-Zq8x")

    class Shown:
        def __repr__(self) -> str:
            return "<token s3cr3t-Zq8x>"

    structlog.get_logger("kurative.test").info("odd", **{"s3cr3t-Zq8x": 1}, thing=Shown())
    line = stream.getvalue().splitlines()[-1]
    assert "s3cr3t-Zq8x" not in line
    assert json.loads(line)["***"] == 1


class _Token:
    def __init__(self, value: str) -> None:
        self.value = value

    def __str__(self) -> str:
        return "<token>"

    def __repr__(self) -> str:
        return f"Token({self.value!r})"


@pytest.mark.parametrize("format", ["console", "json"])
def test_a_secret_in_a_nested_key_or_in_what_a_line_shows_of_an_object_is_blanked_out(
    stream: io.StringIO, format: str
) -> None:
    redactor = Redactor()
    configure_logging(LoggingSettings(format=format, level="info"), redactor, stream)  # type: ignore[arg-type]
    redactor.add("S3cr3tT0ken")
    cyclic: list[object] = []
    cyclic.append(cyclic)
    log = structlog.get_logger("kurative.test")
    log.info("nested_key", headers={"x-S3cr3tT0ken": "v"})
    log.info("object_in_a_dict", d={"o": _Token("S3cr3tT0ken")}, items=[_Token("S3cr3tT0ken")])
    if format == "console":  # JSON has no form for a cycle at all
        log.info("cycle", value=cyclic, token="S3cr3tT0ken")
    written = stream.getvalue()
    assert "S3cr3tT0ken" not in written
    assert written.count("***") >= 3


def test_a_json_line_is_never_edited_inside_an_escape(stream: io.StringIO) -> None:
    """A secret that starts with a letter an escape ends in (``\\n`` + ``abc1234``) is searched for
    as JSON writes it; a value that only looks like it in the line is left as it is."""
    redactor = Redactor()
    configure_logging(LoggingSettings(format="json", level="info"), redactor, stream)
    redactor.add("nabc1234")
    dsn = "postgresql://kurative:pw-9f8e7d@db.internal/kurative"
    redactor.add("pw-9f8e7d")
    redactor.add(dsn)
    log = structlog.get_logger("kurative.test")
    log.info("output", output="first line\nabc1234 second")
    log.info("pools", pools={dsn: 3})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["output"] == "first line\nabc1234 second"
    assert second["pools"] == {"***": 3}


@pytest.mark.parametrize("format", ["console", "json"])
def test_numbers_overlapping_secrets_and_bytes_show_no_part_of_a_secret(
    stream: io.StringIO, format: str
) -> None:
    redactor = Redactor()
    configure_logging(LoggingSettings(format=format, level="info"), redactor, stream)  # type: ignore[arg-type]
    for secret in ("12345678", "aaaa1111", "1111bbbb", "pässwörd-42"):
        redactor.add(secret)

    class Unsayable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    log = structlog.get_logger("kurative.test")
    log.info("number", pin=12345678, d={12345678: "x"}, ratio=0.5)
    log.info("overlap", v="aaaa1111bbbb", w="xaaaa1111bbbbx")
    log.info("bytes", b="pässwörd-42".encode(), odd=Unsayable())
    written = stream.getvalue()
    for part in ("12345678", "aaaa", "bbbb", "1111", "\\xc3\\xa4ssw"):
        assert part not in written
    assert "0.5" in written
    if format == "json":
        assert all(json.loads(line) for line in written.splitlines())
