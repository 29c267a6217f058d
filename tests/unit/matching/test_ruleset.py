"""The indexed matcher: candidates, order, stop, status, and agreement with evaluating everything."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurative.alerts import Alert, AlertGroup
from kurative.errors import ExpressionError, PlaybookError
from kurative.matching.compiler import is_true
from kurative.matching.context import alert_context, build_context
from kurative.matching.ruleset import Ruleset
from kurative.playbooks.models import Playbook, Step, Trigger

STEP = (Step("log", "log", {"message": "hi"}),)


def pb(
    name: str,
    *,
    alertnames: tuple[str, ...] = (),
    status: str = "firing",
    when: str | None = None,
    priority: int = 0,
    stop: bool = False,
    vars_: dict[str, Any] | None = None,
) -> Playbook:
    return Playbook(
        name,
        1,
        STEP,
        Trigger(alertnames, status, when),  # type: ignore[arg-type]
        priority=priority,
        stop=stop,
        vars=vars_ or {},
    )


def names(ruleset: Ruleset, labels: dict[str, str], status: str = "firing") -> list[str]:
    return [c.name for c in ruleset.match(Alert.make(labels, status=status))]  # type: ignore[arg-type]


def test_alertname_index_and_when() -> None:
    ruleset = Ruleset.compile(
        [
            pb("crash", alertnames=("KubePodCrashLooping",), when="labels.severity == 'critical'"),
            pb("disk", when="labels.alertname == 'NodeDiskFull' && labels.severity == 'critical'"),
        ]
    )
    assert names(ruleset, {"alertname": "KubePodCrashLooping", "severity": "critical"}) == ["crash"]
    assert names(ruleset, {"alertname": "KubePodCrashLooping", "severity": "warning"}) == []
    assert names(ruleset, {"alertname": "NodeDiskFull", "severity": "critical"}) == ["disk"]
    assert names(ruleset, {"alertname": "Other", "severity": "critical"}) == []
    # The index, not luck: an alert with another alertname has no candidates at all.
    assert ruleset.candidates(Alert.make({"alertname": "Other"})) == ()


def test_equality_on_another_label_is_indexed_too() -> None:
    ruleset = Ruleset.compile([pb("shop", when="labels.namespace == 'shop' && labels.severity != 'info'")])
    assert ruleset.candidates(Alert.make({"alertname": "X", "namespace": "other"})) == ()
    assert names(ruleset, {"alertname": "X", "namespace": "shop"}) == ["shop"]
    assert names(ruleset, {"alertname": "X", "namespace": "shop", "severity": "info"}) == []


def test_resolved_alerts_match_only_resolved_or_any() -> None:
    ruleset = Ruleset.compile(
        [
            pb("on-fire", alertnames=("A",)),
            pb("on-resolve", alertnames=("A",), status="resolved"),
            pb("always", alertnames=("A",), status="any"),
        ]
    )
    assert names(ruleset, {"alertname": "A"}) == ["always", "on-fire"]
    assert names(ruleset, {"alertname": "A"}, "resolved") == ["always", "on-resolve"]


def test_priority_then_name_and_stop() -> None:
    ruleset = Ruleset.compile(
        [
            pb("b-low", alertnames=("A",)),
            pb("a-low", when="labels.severity == 'critical'"),
            pb("high", alertnames=("A",), priority=10, when="labels.team == 'sre'", stop=True),
            pb("mid", priority=5),
        ]
    )
    assert names(ruleset, {"alertname": "A", "severity": "critical"}) == ["mid", "a-low", "b-low"]
    # `high` matches and stops everything below it.
    assert names(ruleset, {"alertname": "A", "severity": "critical", "team": "sre"}) == ["high"]


def test_a_non_matching_stop_playbook_stops_nothing() -> None:
    ruleset = Ruleset.compile([pb("stopper", priority=9, stop=True, when="labels.x == 'y'"), pb("next")])
    assert names(ruleset, {"alertname": "A"}) == ["next"]


def test_missing_labels_are_null() -> None:
    ruleset = Ruleset.compile([pb("not-x", when="labels.team != 'x'"), pb("is-x", when="labels.team == 'x'")])
    assert names(ruleset, {"alertname": "A"}) == ["not-x"]


def test_evaluation_errors_do_not_match_and_explain_says_why() -> None:
    ruleset = Ruleset.compile([pb("prefix", when="starts_with(labels.pod, 'web-')")])
    assert names(ruleset, {"alertname": "A", "pod": "web-1"}) == ["prefix"]
    assert names(ruleset, {"alertname": "A"}) == []
    (verdict,) = ruleset.explain(Alert.make({"alertname": "A"}))
    assert verdict.outcome == "error"
    assert "starts_with" in verdict.reason
    assert "invalid type" in verdict.reason


def test_explain_gives_a_reason_for_every_playbook() -> None:
    ruleset = Ruleset.compile(
        [
            pb("wrong-name", alertnames=("B",)),
            pb("wrong-status", status="resolved"),
            pb("false-when", when="labels.severity == 'critical'"),
            pb("winner", priority=3, stop=True),
            pb("stopped", priority=1),
        ]
    )
    verdicts = {
        v.compiled.name: v for v in ruleset.explain(Alert.make({"alertname": "A", "severity": "info"}))
    }
    assert verdicts["winner"].outcome == "matched"
    assert verdicts["stopped"].outcome == "stopped"
    assert "'winner' (priority 3, stop: true) matched first" in verdicts["stopped"].reason
    assert verdicts["wrong-name"].reason == "alertname 'A' is not in trigger.alertname [B]"
    assert verdicts["wrong-status"].reason == "alert is firing; trigger.status is resolved"
    assert verdicts["false-when"].reason == (
        "when `labels.severity == 'critical'` is false (labels.severity = 'info')"
    )


def test_conditions_can_read_playbook_and_vars() -> None:
    ruleset = Ruleset.compile(
        [
            pb("self", when="playbook.name == 'self' && labels.ns == vars.ns", vars_={"ns": "shop"}),
            pb("templated", when="vars.target == 'shop-web'", vars_={"target": "${labels.ns}-web"}),
        ]
    )
    assert names(ruleset, {"alertname": "A", "ns": "shop"}) == ["self", "templated"]
    assert names(ruleset, {"alertname": "A", "ns": "other"}) == []


def test_group_is_in_the_context() -> None:
    ruleset = Ruleset.compile([pb("by-receiver", when="group.receiver == 'kurative'")])
    alert = Alert.make({"alertname": "A"})
    assert [c.name for c in ruleset.match(alert, AlertGroup(receiver="kurative"))] == ["by-receiver"]
    assert ruleset.match(alert, None) == ()


def test_label_values_are_data_never_evaluated() -> None:
    ruleset = Ruleset.compile([pb("eq", when="labels.a == 'labels.b'")])
    assert names(ruleset, {"alertname": "A", "a": "labels.b", "b": "zzz"}) == ["eq"]
    assert names(ruleset, {"alertname": "A", "a": "${labels.b}", "b": "labels.b"}) == []


def test_duplicate_names_and_bad_expressions_are_errors() -> None:
    with pytest.raises(PlaybookError, match="duplicate playbook names"):
        Ruleset.compile([pb("x"), pb("x")])
    with pytest.raises(ExpressionError, match=r"playbook 'bad': trigger\.when"):
        Ruleset.compile([pb("bad", when="labels.a ==")])


def test_a_thousand_labels_match() -> None:
    labels = {f"l{i}": str(i) for i in range(1000)} | {"alertname": "Big"}
    ruleset = Ruleset.compile([pb("big", alertnames=("Big",), when="labels.l999 == '999'")])
    assert names(ruleset, labels) == ["big"]


# --- the index and the closures never change the answer ------------------------------------------

CONDITIONS = [
    None,
    "labels.severity == 'critical'",
    "labels.alertname == 'A' && labels.severity == 'critical'",
    "labels.alertname == 'B'",
    "'shop' == labels.namespace && labels.pod != 'web-1'",
    "labels.namespace == 'shop' || labels.namespace == 'payments'",
    "alert.labels.alertname == 'A' && not_null(labels.pod)",
    "contains(['critical', 'warning'], labels.severity) && !starts_with(labels.pod, 'db')",
    "labels.alertname == 'C' && labels.alertname == 'A'",
    "alert.status == 'resolved'",
]

playbooks_strategy = st.lists(
    st.tuples(
        st.sampled_from([(), ("A",), ("B",), ("A", "C")]),
        st.sampled_from(["firing", "resolved", "any"]),
        st.sampled_from(CONDITIONS),
        st.integers(0, 3),
        st.booleans(),
    ),
    max_size=8,
)
alert_strategy = st.tuples(
    st.fixed_dictionaries(
        {"alertname": st.sampled_from(["A", "B", "C", "D"])},
        optional={
            "severity": st.sampled_from(["critical", "warning"]),
            "namespace": st.sampled_from(["shop", "payments", "kube-system"]),
            "pod": st.sampled_from(["web-1", "web-2", "db-0"]),
        },
    ),
    st.sampled_from(["firing", "resolved"]),
)


def naive_match(playbooks: list[Playbook], alert: Alert) -> list[str]:
    out = []
    for playbook in sorted(playbooks, key=lambda p: (-p.priority, p.name)):
        trigger = playbook.trigger
        if trigger.status not in ("any", alert.status):
            continue
        if trigger.alertnames and alert.labels.get("alertname") not in trigger.alertnames:
            continue
        if trigger.when is not None:
            try:
                if not is_true(jmespath.search(trigger.when, build_context(alert, playbook))):
                    continue
            except jmespath.exceptions.JMESPathError:
                continue
        out.append(playbook.name)
        if playbook.stop:
            break
    return out


@settings(max_examples=150, deadline=None)
@given(specs=playbooks_strategy, alerts=st.lists(alert_strategy, min_size=1, max_size=5))
def test_index_and_closures_agree_with_evaluating_everything(
    specs: list[tuple[tuple[str, ...], str, str | None, int, bool]], alerts: list[tuple[dict[str, str], str]]
) -> None:
    playbooks = [
        pb(f"p{i}", alertnames=names_, status=status, when=when, priority=priority, stop=stop)
        for i, (names_, status, when, priority, stop) in enumerate(specs)
    ]
    ruleset = Ruleset.compile(playbooks)
    for labels, status in alerts:
        alert = Alert.make(labels, status=status)  # type: ignore[arg-type]
        assert [c.name for c in ruleset.match(alert)] == naive_match(playbooks, alert)
        explained = [v.compiled.name for v in ruleset.explain(alert) if v.matched]
        assert explained == naive_match(playbooks, alert)


def test_context_has_exactly_the_documented_keys() -> None:
    alert = Alert.make({"alertname": "A"}, annotations={"summary": "s"})
    context = build_context(alert, pb("p", vars_={"x": "${labels.alertname}"}))
    assert set(context) == {
        "alert",
        "labels",
        "annotations",
        "group",
        "steps",
        "execution",
        "playbook",
        "vars",
    }
    assert set(context["alert"]) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert context["labels"] == {"alertname": "A"}
    assert context["annotations"] == {"summary": "s"}
    assert context["group"] is None
    assert context["steps"] == {}
    assert context["execution"] is None
    assert context["playbook"] == {"name": "p", "version": 1}
    assert context["vars"] == {"x": "A"}
    assert set(alert_context(alert)) == {"alert", "labels", "annotations", "group", "steps", "execution"}


def test_recompiling_reuses_unchanged_playbooks_and_matches_the_same() -> None:
    crash = pb("crash", alertnames=("KubePodCrashLooping",), when="labels.severity == 'critical'")
    disk = pb("disk", when="labels.alertname == 'NodeDiskFull'")
    first = Ruleset.compile([crash, disk])
    early = pb("early", alertnames=("KubePodCrashLooping",), priority=5)
    changed = pb("disk", when="labels.alertname == 'NodeDiskFull' && labels.severity == 'page'")
    second = Ruleset.compile([crash, changed, early], first)
    fresh = Ruleset.compile([crash, changed, early])
    reused = second.get("crash")
    assert reused is not None
    assert reused.condition is first.get("crash").condition  # type: ignore[union-attr]
    assert second.get("disk").playbook is changed  # type: ignore[union-attr]
    assert [(c.name, c.rank) for c in second.playbooks] == [(c.name, c.rank) for c in fresh.playbooks]
    for labels in (
        {"alertname": "KubePodCrashLooping", "severity": "critical"},
        {"alertname": "KubePodCrashLooping", "severity": "warning"},
        {"alertname": "NodeDiskFull", "severity": "page"},
        {"alertname": "NodeDiskFull"},
    ):
        assert names(second, labels) == names(fresh, labels)


def test_playbooks_sharing_a_condition_are_each_indexed_by_their_own_trigger() -> None:
    # The compiled form of a condition is shared by the playbooks that write the same text; what the
    # index does with it (which conjunct it implies) still depends on each playbook's trigger.
    when = "labels.namespace == 'shop' && labels.severity != 'info'"
    ruleset = Ruleset.compile(
        [
            pb("by-name", alertnames=("Down",), when=when),
            pb("by-label", when=when),
            pb("resolved", status="resolved", when=when),
        ]
    )
    assert names(ruleset, {"alertname": "Down", "namespace": "shop"}) == ["by-label", "by-name"]
    assert names(ruleset, {"alertname": "Other", "namespace": "shop"}) == ["by-label"]
    assert names(ruleset, {"alertname": "Down", "namespace": "web"}) == []
    assert names(ruleset, {"alertname": "Down", "namespace": "shop", "severity": "info"}) == []
    assert names(ruleset, {"alertname": "Down", "namespace": "shop"}, status="resolved") == ["resolved"]
    conditions = {ruleset._by_name[n].condition for n in ("by-name", "by-label", "resolved")}
    assert len(conditions) == 1
    # the alertname slot implies nothing of the condition; the label slot implies its first conjunct
    assert ruleset._plans["by-name"].residual is not ruleset._plans["by-label"].residual
    assert ruleset._plans["by-label"].residual is ruleset._plans["resolved"].residual
