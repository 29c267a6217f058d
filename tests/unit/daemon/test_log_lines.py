"""Each log line reaches the stream in one write, newline included: a process killed with SIGKILL
between the text and its newline (as structlog's print-based logger writes them, on an unbuffered
stderr) left a line without its end, and the next process's first line was glued to it (seen in the
chaos run, where every replica's restarts append to one log file); a line written by the standard
library's handler from another thread could land between the two writes as well."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from kurative.logging import LoggingSettings, Redactor, configure_logging


class RecordingStream(io.StringIO):
    """A stream that remembers every write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[RecordingStream]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = RecordingStream()
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.parametrize("format", ["json", "console"])
def test_every_line_is_one_write_that_ends_with_its_newline(stream: RecordingStream, format: str) -> None:
    configure_logging(LoggingSettings(format=format, level="info"), Redactor(), stream)
    structlog.get_logger("kurative.test").info("step_recovered", verdict="run", attempt=1)
    logging.getLogger("tests.log_lines.library").warning("Started server process [1]")
    assert len(stream.writes) == 2, stream.writes
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes), stream.writes
    if format == "json":
        assert [json.loads(w)["event"] for w in stream.writes] == [
            "step_recovered",
            "Started server process [1]",
        ]
