"""The long fuzz run: the properties of tests/unit/fuzz, plus the alert parser, for a time budget.

``KURATIVE_FUZZ_SECONDS`` (default 30) is the budget of the whole run, shared evenly by the targets;
each target runs batches of fresh hypothesis examples (a new random seed each batch) until its share is
spent. ``make test`` runs it with the default, so CI fuzzes for about half a minute; run it longer on
demand, e.g. ``KURATIVE_FUZZ_SECONDS=1800 .venv/bin/pytest tests/fuzz``. The budget only decides when
to stop: nothing here asserts on time. A failure prints the falsifying example; turn it into an
``@example`` in tests/unit/fuzz/test_fuzz_playbooks.py when fixing it.

The alert parser is fuzzed with text without lone surrogates: label values with them still break
fingerprinting in :mod:`kurative.alerts` (tracked separately; its own unit fuzz tests cover the rest).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kurative.alerts import parse_notification
from kurative.durations import MAX_DURATION_SECONDS, DurationError, format_duration, parse_duration
from kurative.errors import KurativeError
from kurative.matching.compiler import compile_closure
from kurative.matching.expressions import compile_expression
from kurative.matching.ruleset import Ruleset
from kurative.matching.simulation import simulate
from kurative.matching.templates import render_value
from kurative.playbooks.loading import load_bytes
from tests.support.fuzz_playbooks import (
    DEADLINE_MS,
    check_lint,
    check_playbook_test,
    contexts,
    durations,
    evaluation_outcome,
    expressions,
    json_writable,
    label_values,
    playbook_files,
    playbook_test_files,
    result_or_kurative_error,
    templates,
    to_yaml,
    valid_playbook,
)

BUDGET = float(os.environ.get("KURATIVE_FUZZ_SECONDS", "30"))
SHARE = BUDGET / 5  # five shares: two for the whole-CLI target, one for each other
BATCH = settings(
    max_examples=20,
    deadline=DEADLINE_MS,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# The budget, plus room for the batch under way when it runs out and for a slow machine.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(int(SHARE) + 240)]


def fuzz_for(seconds: float, run_batch: Callable[[], None]) -> int:
    """Run batches until ``seconds`` have passed (at least one); the number of batches."""
    stop = time.monotonic() + seconds
    batches = 0
    while batches == 0 or time.monotonic() < stop:
        run_batch()
        batches += 1
    return batches


def test_lint_simulate_and_test() -> None:
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)

        @settings(BATCH, max_examples=5)  # whole CLI commands: small batches, to end near the budget
        @given(playbook=playbook_files, playbook_test=playbook_test_files)
        def batch(playbook: bytes, playbook_test: bytes) -> None:
            check_lint(workdir, playbook)
            check_playbook_test(workdir, playbook_test)

        fuzz_for(SHARE * 2, batch)  # the slowest target: whole CLI commands


def test_playbook_loader_and_durations() -> None:
    @BATCH
    @given(raw=playbook_files, text=durations, seconds=st.floats())
    def batch(raw: bytes, text: str, seconds: float) -> None:
        loaded = result_or_kurative_error(lambda: load_bytes("fuzzed.yaml", raw))
        assert not isinstance(loaded, KurativeError)
        parsed = result_or_kurative_error(lambda: parse_duration(text))
        if not isinstance(parsed, KurativeError):
            assert 0 <= parsed <= MAX_DURATION_SECONDS
            assert parse_duration(format_duration(parsed)) <= parsed + 1
        else:
            assert isinstance(parsed, DurationError)
        result_or_kurative_error(lambda: format_duration(seconds))

    fuzz_for(SHARE, batch)


def test_expressions_and_templates() -> None:
    @BATCH
    @given(source=expressions, text=templates, context=contexts)
    def batch(source: str, text: str, context: dict[str, Any]) -> None:
        expression = result_or_kurative_error(lambda: compile_expression(source))
        if not isinstance(expression, KurativeError):
            closure = compile_closure(expression.ast)
            ours = evaluation_outcome(lambda: closure(context))
            assert ours == evaluation_outcome(lambda: expression.search(context))
        rendered = result_or_kurative_error(lambda: render_value({"p": text}, context, "step"))
        if not isinstance(rendered, KurativeError):
            assert json_writable(rendered)

    fuzz_for(SHARE, batch)


# Alert payloads: valid shapes with hostile values, and arbitrary JSON. No lone surrogates (see above).
plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
safe_label_values = label_values.filter(lambda v: not any("\ud800" <= c <= "\udfff" for c in v))
timestamps = st.one_of(
    st.sampled_from(["2024-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", ""]),
    plain_text,
)
labels = st.dictionaries(
    st.sampled_from(["alertname", "a", "v", "w", "severity"]) | plain_text, safe_label_values, max_size=5
).map(lambda found: {"alertname": "Anything", **found})
alerts = st.fixed_dictionaries(
    {"labels": labels},
    optional={
        "annotations": st.dictionaries(plain_text, plain_text, max_size=2),
        "status": st.sampled_from(["firing", "resolved", "unknown"]),
        "startsAt": timestamps,
        "endsAt": timestamps,
        "fingerprint": plain_text,
        "generatorURL": plain_text,
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | plain_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=10,
)
payloads = st.one_of(
    alerts,
    st.lists(alerts, max_size=3),
    st.fixed_dictionaries(
        {
            "version": st.just("4"),
            "status": st.sampled_from(["firing", "resolved"]),
            "alerts": st.lists(alerts, max_size=3),
        },
        optional={"groupKey": plain_text, "receiver": plain_text, "truncatedAlerts": st.integers()},
    ),
    json_values,
)


def test_alert_parser() -> None:
    document = valid_playbook()
    document["spec"]["trigger"]["when"] = (
        "ceil(to_number(labels.v)) > `1` || sum([to_number(labels.w)]) > `1`"
    )
    document["spec"]["steps"][0]["params"]["message"] = "${labels.v} ${to_number(labels.w)} ${labels}"
    loaded = load_bytes("fuzzed.yaml", to_yaml(document).encode())
    assert not loaded.diagnostics, loaded.diagnostics
    ruleset = Ruleset.compile(loaded.playbooks)

    @BATCH
    @given(payload=payloads)
    def batch(payload: Any) -> None:
        notification = result_or_kurative_error(lambda: parse_notification(payload))
        if isinstance(notification, KurativeError):
            return
        reports = result_or_kurative_error(lambda: simulate(ruleset, notification, explain=True))
        assert not isinstance(reports, KurativeError)
        assert json_writable(reports)

    fuzz_for(SHARE, batch)
