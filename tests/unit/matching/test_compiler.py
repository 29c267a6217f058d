"""The closure compiler must answer exactly what the jmespath library answers.

Two proofs: the official JMESPath compliance suite (read from ../shared, never copied into the repo),
and a differential property test over generated expressions and documents shaped like alert contexts.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kurative.matching.compiler import (
    compile_closure,
    conjuncts,
    equality_constraint,
    is_true,
    root_fields,
)

COMPLIANCE = Path(__file__).resolve().parents[4] / "shared" / "data" / "jmespath-compliance"
if not COMPLIANCE.is_dir():
    COMPLIANCE = Path("/work/shared/data/jmespath-compliance")


def _canonical(value: Any) -> str:
    # json.dumps keeps true apart from 1 and 1.0 apart from 1, which == would not.
    return json.dumps(value, sort_keys=True, default=repr)


def _outcome(run: Any) -> tuple[str, str]:
    try:
        return "value", _canonical(run())
    except Exception as exc:
        return "error", type(exc).__name__


def _compliance_files() -> list[Path]:
    if not COMPLIANCE.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the JMESPath compliance suite is missing at {COMPLIANCE} (it must exist in CI)")
        return []
    return sorted(p for p in COMPLIANCE.glob("*.json") if p.name != "schema.json")


@pytest.mark.parametrize("path", _compliance_files() or [None], ids=lambda p: p.stem if p else "absent")
def test_compliance_suite(path: Path | None) -> None:
    if path is None:
        pytest.skip("the JMESPath compliance suite is not in ../shared (allowed only outside CI)")
    checked = 0
    for suite in json.loads(path.read_text(encoding="utf-8")):
        given_ = suite["given"]
        for case in suite["cases"]:
            try:
                with warnings.catch_warnings():
                    # A few cases use the deprecated `foo` literal form on purpose.
                    warnings.simplefilter("ignore", PendingDeprecationWarning)
                    parsed = jmespath.compile(case["expression"])
            except jmespath.exceptions.JMESPathError:
                assert "error" in case, case
                continue  # a syntax error never reaches the compiler
            library = _outcome(lambda p=parsed, g=given_: p.search(g))
            ours = _outcome(lambda p=parsed, g=given_: compile_closure(p.parsed)(g))
            assert ours == library, (path.name, case["expression"])
            if "result" in case:
                assert ours == ("value", _canonical(case["result"])), (path.name, case["expression"])
            checked += 1
    assert checked > 0


# --- differential property test ---------------------------------------------------------------

NAMES = ["labels", "alertname", "severity", "namespace", "a", "b", "pod", "items", "n"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([0.0, 1.0, 2.5]),
    st.sampled_from(["", "critical", "warning", "kube-system", "web-1", "a", "0"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6)


def _literal(value: Any) -> str:
    if isinstance(value, str) and "'" not in value and "\\" not in value:
        return f"'{value}'"
    return "`" + json.dumps(value) + "`"


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(".".join)
atoms = st.one_of(
    paths,
    scalars.map(_literal),
    st.just("@"),
    st.builds(lambda p, i: f"{p}[{i}]", paths, st.integers(-2, 2)),
    st.builds(lambda p: f"{p}[*]", paths),
    st.builds(lambda p, q: f"{p}[*].{q}", paths, paths),
    st.builds(lambda p: f"{p}[]", paths),
    st.builds(lambda p: f"{p}.*", paths),
    st.builds(lambda p, q: f"[{p}, {q}]", paths, paths),
    st.builds(lambda p, q: f"{{x: {p}, y: {q}}}", paths, paths),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            lambda a, op, b: f"{a} {op} {b}",
            inner,
            st.sampled_from(["==", "!=", "<", ">=", "&&", "||"]),
            inner,
        ),
        st.builds(lambda a: f"!{a}", inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a, b: f"{a} | {b}", inner, paths),
        st.builds(lambda p, c: f"{p}[?{c}]", paths, inner),
        st.builds(
            lambda f, a, b: f"{f}({a}, {b})",
            st.sampled_from(["contains", "starts_with", "ends_with", "not_null", "join"]),
            inner,
            inner,
        ),
        st.builds(
            lambda f, a: f"{f}({a})", st.sampled_from(["length", "not_null", "to_string", "type"]), inner
        ),
        st.builds(lambda p: f"sort_by({p}, &n)", paths),
    )


expressions = st.recursive(atoms, _extend, max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions, document=documents)
def test_compiled_closures_agree_with_jmespath(source: str, document: dict[str, Any]) -> None:
    try:
        parsed = jmespath.compile(source)
    except jmespath.exceptions.JMESPathError:
        return  # generated text that is not valid JMESPath is not the compiler's business
    library = _outcome(lambda: parsed.search(document))
    ours = _outcome(lambda: compile_closure(parsed.parsed)(document))
    assert ours == library, source


def test_truthiness_follows_jmespath() -> None:
    for falsy in ("", [], {}, None, False):
        assert not is_true(falsy)
    for truthy in (0, 0.0, "0", [0], {"a": None}, True):
        assert is_true(truthy)


def test_root_fields() -> None:
    def roots(source: str) -> set[str]:
        return set(root_fields(jmespath.compile(source).parsed))

    assert roots("labels.a == 'x' && vars.y") == {"labels", "vars"}
    assert roots("steps.owner.output.name") == {"steps"}
    assert roots("labels.execution") == {"labels"}
    assert roots("alert.labels[?x == execution]") == {"alert"}
    assert roots("join('/', [labels.a, playbook.name])") == {"labels", "playbook"}
    assert roots("@") == {"@"}
    assert roots("`1`") == set()


def test_equality_constraints_come_from_top_level_conjuncts() -> None:
    ast = jmespath.compile("labels.alertname == 'A' && 'critical' == alert.labels.severity && x || y").parsed
    # `&&` binds tighter than `||`: the whole thing is an or, so nothing is implied.
    assert [equality_constraint(node) for node in conjuncts(ast)] == [None]
    ast = jmespath.compile("labels.alertname == 'A' && 'critical' == alert.labels.severity && n > `1`").parsed
    assert [equality_constraint(node) for node in conjuncts(ast)] == [
        (("labels", "alertname"), "A"),
        (("alert", "labels", "severity"), "critical"),
        None,
    ]
    assert equality_constraint(jmespath.compile("labels.a == `1`").parsed) is None
    assert equality_constraint(jmespath.compile("labels.a != 'x'").parsed) is None
