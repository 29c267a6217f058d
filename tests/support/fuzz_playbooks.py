"""Strategies and checks shared by the playbook fuzz tests (tests/unit/fuzz) and the long run (tests/fuzz).

Every entry point a playbook author or an alert reaches — the playbook loader and lint, the
playbook-test loader, the duration parser, the expression compiler and evaluator, the template renderer
— must give a result or a :class:`KurativeError`, nothing else, within a bounded time (the hypothesis
deadline) and memory (a tracemalloc peak). The strategies mix valid documents with the hostile values
fuzzing found: wrong types, lone surrogates, numbers with thousands of digits, numbers JSON cannot hold,
expressions nested hundreds deep.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from kurative.cli import main
from kurative.errors import KurativeError
from kurative.matching.ruleset import EVALUATION_ERRORS

T = TypeVar("T")

# Far above what any input here needs (a 1 MiB file parses in a few MiB), far below a runaway.
MEMORY_BOUND = 64 * 1024 * 1024
# Per example (a whole-CLI example takes under a second); generous, because hypothesis fails a test
# whose example is slow once and fast on replay, and CI shares 2 cores. A hang or a blow-up exceeds it.
DEADLINE_MS = 10_000


@contextlib.contextmanager
def memory_bound(limit: int = MEMORY_BOUND) -> Iterator[None]:
    """Fail when the block's peak of traced allocations exceeds ``limit`` bytes."""
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if not already:
            tracemalloc.stop()
    assert peak - start <= limit, f"peak memory {peak - start:,} bytes exceeds {limit:,}"


def result_or_kurative_error(call: Callable[[], T]) -> T | KurativeError:
    """``call()``, or the KurativeError it raised; any other exception fails the test."""
    try:
        with memory_bound():
            return call()
    except KurativeError as exc:
        return exc


def json_writable(value: Any) -> bool:
    """What the journal and ``--format json`` can write: finite numbers, text keys, bounded depth."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def run_cli(*args: str) -> tuple[int, str]:
    """``kurative ARGS`` with a strict UTF-8 stdout (as a terminal with PYTHONIOENCODING=utf-8)."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="", write_through=True)
    err = io.StringIO()
    with memory_bound(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    out.flush()
    assert code in (0, 1, 2), code
    return code, raw.getvalue().decode("utf-8")


# --- hostile values ----------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udc80", "\ud83d"])
# Text that may hold lone surrogates; JSON (and so YAML) escapes them as \udXXX.
hostile_text = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), SURROGATES, st.text(max_size=5)),
    st.sampled_from(["", "${", "$${x}", "}", "${labels.a}", "\x00", "\u2028", "1.0e400", "nan", "-Infinity"]),
)
huge_digits = st.integers(min_value=300, max_value=6000).map(lambda n: "9" * n)
hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324]),
)
durations = st.one_of(
    st.from_regex(r"\A([0-9]{1,4}(ms|s|m|h|d)){1,3}\Z"),
    st.builds(lambda d, u: d + u, huge_digits, st.sampled_from(["ms", "s", "m", "h", "d"])),
    st.sampled_from(["36500d", "36501d", "0s", "100d" * 400, "1h30", "5 m", "-1s"]),
    hostile_text,
)


def nested(depth: int, opening: str, atom: str, closing: str) -> str:
    return opening * depth + atom + closing * depth


NESTINGS = (
    ("(", ")"),
    ("!", ""),
    ("abs(", ")"),
    ("not_null(", ")"),
    ("[", "]"),
    ("a[?", "]"),
    ("sort_by(a, &", ")"),
)
depths = st.integers(min_value=1, max_value=400)
deep_expressions = st.one_of(
    st.builds(lambda d, pair: nested(d, pair[0], "labels.a", pair[1]), depths, st.sampled_from(NESTINGS)),
    depths.map(lambda d: "`" + nested(d, "[", "1", "]") + "`"),
    st.builds(
        lambda n, op: f" {op} ".join(["labels.a"] * n),
        st.integers(1, 600),
        st.sampled_from(["&&", "||", "|"]),
    ),
)
FUNCTIONS = [
    "ceil",
    "floor",
    "abs",
    "sum",
    "avg",
    "max",
    "min",
    "to_number",
    "to_string",
    "length",
    "sort",
    "not_null",
    "type",
    "reverse",
    "keys",
    "values",
    "join",
]
paths = st.lists(
    st.sampled_from(["labels", "annotations", "a", "v", "w", "vars", "n", "alert"]), min_size=1, max_size=3
).map(".".join)
literals = st.one_of(
    st.sampled_from(
        ["`1`", "`1e308`", "`1e400`", "`-1e999`", "`[1e308, 1e308]`", "`null`", "'x'", '`"\\ud800"`']
    ),
    huge_digits.map(lambda d: f"`{d}`"),
)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(FUNCTIONS), inner),
        st.builds(lambda f, a: f"{f}([{a}, {a}])", st.sampled_from(["sum", "avg", "max", "min"]), inner),
        st.builds(
            lambda a, op, b: f"{a} {op} {b}",
            inner,
            st.sampled_from(["==", "!=", "<", ">=", "&&", "||"]),
            inner,
        ),
        st.builds(lambda a: f"!{a}", inner),
        st.builds(lambda a, b: f"[{a}, {b}]", inner, inner),
        st.builds(lambda a: f"to_number({a})", inner),
    )


expressions = st.one_of(
    st.recursive(st.one_of(paths, literals), _combine, max_leaves=8),
    deep_expressions,
    st.text(max_size=30),
)
templates = st.one_of(
    expressions.map(lambda e: "${" + e + "}"),
    st.builds(lambda a, e: a + "${" + e + "}", hostile_text, expressions),
    hostile_text,
)


def _deep_value(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)),
    max_leaves=10,
) | st.integers(1, 200).map(_deep_value)  # deeper values break hypothesis's own repr
label_values = st.one_of(
    hostile_text, huge_digits, st.sampled_from(["1.0e400", "-1e400", "1e308", "inf", "nan", "0", "1"])
)
contexts = st.fixed_dictionaries(
    {
        "labels": st.dictionaries(st.sampled_from(["a", "v", "w", "alertname"]), label_values, max_size=4),
        "vars": st.dictionaries(st.sampled_from(["a", "n", "big"]), json_values, max_size=3),
    }
)

# --- documents -----------------------------------------------------------------------------------


def valid_playbook() -> dict[str, Any]:
    return {
        "apiVersion": "kurative/v1",
        "kind": "Playbook",
        "metadata": {"name": "fuzzed", "version": 1},
        "spec": {
            "trigger": {"alertname": ["Anything"], "when": "labels.a != 'x'"},
            "dedupe": {"key": "labels.a", "window": "5m"},
            "limits": [{"key": "labels.a", "max": 2, "per": "1h"}],
            "vars": {"x": "${labels.a}"},
            "steps": [
                {"name": "say", "action": "log", "params": {"message": "hi ${labels.a}"}, "timeout": "5s"},
                {"name": "wait", "action": "sleep", "params": {"duration": "1s"}, "when": "labels.a == 'b'"},
            ],
        },
    }


# Where a mutation lands, and what it puts there.
PLAYBOOK_SLOTS: tuple[tuple[tuple[str | int, ...], st.SearchStrategy[Any]], ...] = (
    (("spec", "trigger", "alertname"), json_values),
    (("spec", "trigger", "when"), expressions),
    (("spec", "dedupe", "key"), expressions),
    (("spec", "dedupe", "window"), durations),
    (("spec", "limits", 0, "per"), durations),
    (("spec", "limits", 0, "key"), expressions),
    (("spec", "vars", "x"), templates),
    (("spec", "vars", "n"), json_values),
    (("spec", "steps", 0, "name"), hostile_text),
    (("spec", "steps", 0, "params", "message"), templates),
    (("spec", "steps", 0, "timeout"), durations),
    (("spec", "steps", 1, "when"), expressions),
    (("spec", "steps", 1, "params", "duration"), durations),
    (("spec", "steps"), json_values),
    (("metadata", "name"), hostile_text),
    (("metadata", "version"), hostile_numbers),
    (("spec",), json_values),
)


def put(document: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Set ``document[path]``; nothing when an earlier change removed the way there."""
    target = document
    for part in path[:-1]:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(target, dict) or (
        isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target)
    ):
        target[path[-1]] = value


def _mutated(base: Callable[[], dict[str, Any]], slots: Any) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        document = base()
        for _ in range(draw(st.integers(0, 3))):
            path, values = draw(st.sampled_from(slots))
            put(document, path, draw(values))
        return document

    return build()


def to_yaml(document: Any) -> str:
    """JSON is YAML; numbers JSON cannot write go out as YAML's own (.inf, .nan, 1e400 stays 1e400)."""

    def encode(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return _Raw(".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf"))
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    try:
        text = json.dumps(encode(document), default=lambda raw: f"@@{raw.text}@@")
    except (ValueError, RecursionError):  # more digits than Python writes, or nested past its limit
        return "{}"
    return text.replace('"@@', "").replace('@@"', "")


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text


playbook_documents = _mutated(valid_playbook, PLAYBOOK_SLOTS)


SPLICES = st.binary(max_size=8) | st.sampled_from(
    [b"\xff", b"\t", b"&a ", b"*a", b"!!python/object ", b"\n---\n", b": ", b"\xed\xa0\x80"]
)


def _file_bytes(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A mutated document as YAML text, sometimes with raw bytes spliced in."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        raw = bytearray(to_yaml(draw(documents)).encode("utf-8"))
        for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
            at = draw(st.integers(0, len(raw)))
            raw[at:at] = draw(SPLICES)
        return bytes(raw)

    return build()


playbook_files = _file_bytes(playbook_documents)


def valid_playbook_test() -> dict[str, Any]:
    return {
        "tests": [
            {
                "name": "case",
                "alerts": [
                    {"alertname": "Anything", "a": "b"},
                    {"labels": {"alertname": "Anything", "a": "c"}, "at": "10m", "status": "firing"},
                ],
                "expect": [
                    {"playbooks": ["fuzzed"]},
                    {
                        "playbooks": ["fuzzed"],
                        "dedupe_keys": {"fuzzed": "c"},
                        "steps": {"fuzzed": {"say": {"message": "hi c"}}},
                    },
                ],
            }
        ]
    }


PLAYBOOK_TEST_SLOTS: tuple[tuple[tuple[str | int, ...], st.SearchStrategy[Any]], ...] = (
    (("tests", 0, "name"), hostile_text),
    (("tests", 0, "alerts", 0, "a"), hostile_text),
    (("tests", 0, "alerts", 1, "at"), durations),
    (("tests", 0, "alerts", 1, "labels", "a"), label_values),
    (("tests", 0, "alerts", 1, "startsAt"), hostile_text),
    (("tests", 0, "expect", 0, "playbooks"), json_values),
    (("tests", 0, "expect", 1, "steps"), json_values),
    (("tests", 0, "expect", 1, "dedupe_keys"), json_values),
    (("tests", 0, "alerts"), json_values),
    (("tests",), json_values),
)
playbook_test_files = _file_bytes(_mutated(valid_playbook_test, PLAYBOOK_TEST_SLOTS))


# --- the properties, shared by the quick and the long runs ---------------------------------------------


def check_lint(directory: Path, raw: bytes) -> None:
    """Lint, test and simulate over one playbook file: an exit code, output that encodes, no traceback."""
    path = directory / "rules" / "fuzzed.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    for output in ("text", "json", "sarif"):
        code, out = run_cli("lint", "--format", output, str(path.parent))
        if output == "json":
            json.loads(out)
    alert = directory / "alert.json"
    alert.write_text('{"labels": {"alertname": "Anything", "a": "b", "v": "1.0e400", "w": "1e308"}}')
    if code == 0:
        for output in ("text", "json"):
            _, out = run_cli(
                "simulate", "--explain", "--format", output, "--rules", str(path.parent), str(alert)
            )
            if output == "json":
                json.loads(out)


def check_playbook_test(directory: Path, raw: bytes) -> None:
    rules = directory / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "fuzzed.yaml").write_text(json.dumps(valid_playbook()))
    test_file = directory / "fuzzed.test.yaml"
    test_file.write_bytes(raw)
    run_cli("test", "--rules", str(rules), str(test_file))


def evaluation_outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A value JSON can write, or the kind of error; RecursionError, OverflowError and the like fail.

    The errors allowed are the ones the engine turns into a failed condition or a render error
    (:data:`EVALUATION_ERRORS`): ours, and the library's type errors (``abs('x')``, ``1 < 'x'``).
    """
    try:
        with memory_bound():
            value = call()
    except EVALUATION_ERRORS as exc:
        return "error", type(exc).__name__
    assert json_writable(value), repr(value)[:200]
    return "value", json.dumps(value, sort_keys=True)
