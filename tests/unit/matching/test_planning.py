"""Plans: rendered step params, deferred runtime params, dedupe keys, limits and admission."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kurative.alerts import Alert
from kurative.errors import TemplateRenderError
from kurative.matching.admission import MemoryAdmissionStore, admit, decide
from kurative.matching.context import build_context
from kurative.matching.planning import default_dedupe_key, plan, render_step
from kurative.matching.ruleset import Ruleset
from kurative.playbooks.models import Dedupe, Limit, Playbook, Step, Trigger

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def alert(labels: dict[str, str], *, status: str = "firing", starts: datetime = START) -> Alert:
    return Alert.make({"alertname": "KubePodCrashLooping", **labels}, status=status, starts_at=starts)  # type: ignore[arg-type]


RESTART = Playbook(
    "restart",
    3,
    (
        Step(
            "owner", "kubernetes.resolve_owner", {"namespace": "${labels.namespace}", "pod": "${labels.pod}"}
        ),
        Step(
            "restart",
            "kubernetes.rollout_restart",
            {
                "namespace": "${labels.namespace}",
                "name": "${steps.owner.output.name}",
                "note": "run ${execution.id} for ${labels.pod}",
                "replicas": "${to_number(labels.replicas)}",
                "literal": "costs $${HOME} and ${`[1, 2]`}",
                "nested": {"list": ["${labels.pod}", 3, True, None]},
            },
            cluster="${labels.cluster}",
        ),
    ),
    Trigger(("KubePodCrashLooping",)),
)


def test_steps_render_typed_values_text_and_defer_runtime_params() -> None:
    (only,) = plan(Ruleset.compile([RESTART]), alert({"namespace": "shop", "pod": "web-1", "replicas": "3"}))
    owner, restart = only.steps
    assert owner.params == {"namespace": "shop", "pod": "web-1"}
    assert owner.deferred == ()
    assert restart.params == {
        "namespace": "shop",
        "name": "${steps.owner.output.name}",
        "note": "run ${execution.id} for ${labels.pod}",
        "replicas": 3,
        "literal": "costs ${HOME} and [1,2]",
        "nested": {"list": ["web-1", 3, True, None]},
    }
    assert restart.deferred == ("name", "note")
    assert restart.cluster is None  # the label is missing: null
    assert only.dedupe_key == default_dedupe_key(only.alert)


def test_render_with_step_outputs_at_run_time() -> None:
    a = alert({"namespace": "shop", "pod": "web-1"})
    steps = {"owner": {"status": "succeeded", "output": {"name": "web"}, "error": None}}
    context = build_context(a, RESTART, steps=steps, execution={"id": "e-1", "attempt": 1})
    rendered = render_step(RESTART, RESTART.steps[1], context)
    assert rendered.params["name"] == "web"
    assert rendered.params["note"] == "run e-1 for web-1"


def test_render_errors_name_playbook_step_and_param() -> None:
    step = Step("check", "log", {"message": {"text": "web? ${starts_with(labels.pod, 'web')}"}})
    playbook = Playbook("checker", 1, (step,), Trigger(("KubePodCrashLooping",)))
    assert render_step(playbook, step, build_context(alert({"pod": "web-1"}), playbook)).params == {
        "message": {"text": "web? true"}
    }
    with pytest.raises(TemplateRenderError) as caught:
        render_step(playbook, step, build_context(alert({}), playbook))
    message = str(caught.value)
    assert message.startswith("playbook 'checker', step 'check', param 'message.text': cannot render")
    assert "starts_with" in message


def test_label_values_with_template_syntax_render_as_text() -> None:
    context = build_context(
        alert({"namespace": "${labels.secret}", "pod": "`x` || y", "secret": "s"}), RESTART
    )
    rendered = render_step(RESTART, RESTART.steps[0], context)
    assert rendered.params == {"namespace": "${labels.secret}", "pod": "`x` || y"}


def test_default_dedupe_key_is_one_per_firing_episode() -> None:
    first = alert({"pod": "a"})
    repeat = alert({"pod": "a"})
    next_episode = alert({"pod": "a"}, starts=datetime(2024, 5, 1, 13, 0, tzinfo=UTC))
    resolved = alert({"pod": "a"}, status="resolved")
    assert default_dedupe_key(first) == default_dedupe_key(repeat)
    assert default_dedupe_key(first) == f"{first.fingerprint}@2024-05-01T12:00:00Z"
    assert default_dedupe_key(next_episode) != default_dedupe_key(first)
    assert default_dedupe_key(resolved) == default_dedupe_key(first) + "/resolved"


def test_repeated_notifications_do_not_rerun() -> None:
    ruleset = Ruleset.compile([RESTART])
    store = MemoryAdmissionStore()
    labels = {"namespace": "shop", "pod": "web-1"}
    (first,) = plan(ruleset, alert(labels))
    assert admit(first, store, now=0).decision == "run"
    (repeat,) = plan(ruleset, alert(labels))  # Alertmanager's repeat_interval re-send
    outcome = admit(repeat, store, now=4 * 3600)
    assert outcome.decision == "duplicate"
    assert "already ran for dedupe key" in outcome.reason
    (new_episode,) = plan(ruleset, alert(labels, starts=datetime(2024, 5, 2, tzinfo=UTC)))
    assert admit(new_episode, store, now=5 * 3600).decision == "run"


def test_dedupe_key_and_window() -> None:
    playbook = Playbook(
        "windowed",
        1,
        (Step("log", "log", {"message": "x"}),),
        Trigger(("KubePodCrashLooping",)),
        dedupe=Dedupe("join('/', [labels.namespace, labels.pod])", 1800.0),
    )
    ruleset = Ruleset.compile([playbook])
    store = MemoryAdmissionStore()
    (p1,) = plan(ruleset, alert({"namespace": "shop", "pod": "web-1"}))
    assert p1.dedupe_key == "shop/web-1"
    assert admit(p1, store, now=1000).admitted
    # A new firing episode of the same pod inside the window is still a duplicate: the key says so.
    (p2,) = plan(
        ruleset, alert({"namespace": "shop", "pod": "web-1"}, starts=datetime(2024, 5, 2, tzinfo=UTC))
    )
    duplicate = decide(p2, store, now=1000 + 600)
    assert duplicate.decision == "duplicate"
    assert duplicate.reason == "already ran for dedupe key 'shop/web-1' 10m ago (window 30m)"
    assert admit(p2, store, now=1000 + 1800).admitted


def test_limits_cap_executions_per_key_and_period() -> None:
    playbook = Playbook(
        "limited",
        1,
        (Step("log", "log", {"message": "x"}),),
        Trigger(("KubePodCrashLooping",)),
        limits=(Limit("labels.namespace", 2, 3600.0),),
    )
    ruleset = Ruleset.compile([playbook])
    store = MemoryAdmissionStore()
    decisions = []
    for i, (namespace, now) in enumerate(
        [("shop", 0), ("shop", 10), ("shop", 20), ("other", 30), ("shop", 3601)]
    ):
        (p,) = plan(ruleset, alert({"namespace": namespace, "pod": f"p{i}"}))
        decisions.append(admit(p, store, now=now).decision)
    assert decisions == ["run", "run", "limited", "run", "run"]
    (p,) = plan(ruleset, alert({"namespace": "shop", "pod": "p9"}))
    assert decide(p, store, now=3605).reason == (
        "limit reached: 2 of 2 executions per 1h for labels.namespace = 'shop'"
    )


def test_limit_and_dedupe_windows_are_half_open() -> None:
    playbook = Playbook(
        "hourly",
        1,
        (Step("log", "log", {"message": "x"}),),
        Trigger(("KubePodCrashLooping",)),
        dedupe=Dedupe("labels.pod", 600.0),
        limits=(Limit("labels.namespace", 1, 3600.0),),
    )
    ruleset = Ruleset.compile([playbook])
    store = MemoryAdmissionStore()
    (a,) = plan(ruleset, alert({"namespace": "shop", "pod": "a"}))
    (b,) = plan(ruleset, alert({"namespace": "shop", "pod": "b"}))
    assert admit(a, store, now=0).decision == "run"
    assert decide(a, store, now=599.5).decision == "duplicate"
    assert decide(a, store, now=600).decision == "limited"  # the key is free: a window is half-open
    assert admit(b, store, now=3599.5).decision == "limited"
    assert admit(b, store, now=3600).decision == "run"  # the run exactly `per` ago no longer counts


def test_a_duplicate_does_not_count_against_limits() -> None:
    playbook = Playbook(
        "limited",
        1,
        (Step("log", "log", {"message": "x"}),),
        Trigger(("KubePodCrashLooping",)),
        limits=(Limit("labels.namespace", 1, 3600.0),),
    )
    ruleset = Ruleset.compile([playbook])
    store = MemoryAdmissionStore()
    (p,) = plan(ruleset, alert({"namespace": "shop", "pod": "a"}))
    assert admit(p, store, now=0).decision == "run"
    assert admit(p, store, now=1).decision == "duplicate"
    assert store.count_started("limited", "labels.namespace", "shop", since=-1) == 1


def test_step_conditions_hold_raise_and_use_the_run_context() -> None:
    from kurative.errors import ExpressionError
    from kurative.matching.conditions import compile_condition

    condition = compile_condition("steps.owner.output.kind == 'Deployment' && labels.pod != null")
    base = build_context(alert({"pod": "web-1"}), RESTART)
    assert not condition.holds(base)  # nothing ran yet: steps is empty
    ran = build_context(
        alert({"pod": "web-1"}),
        RESTART,
        steps={"owner": {"status": "succeeded", "output": {"kind": "Deployment"}, "error": None}},
    )
    assert condition.holds(ran)
    with pytest.raises(ExpressionError, match=r"condition `starts_with\(labels.pod, 'w'\)` failed"):
        compile_condition("starts_with(labels.pod, 'w')").holds(build_context(alert({}), RESTART))


TEMPLATES = [
    "${labels.pod}",
    "${to_number(labels.replicas)}",
    "pod ${labels.pod} in ${labels.namespace}!",
    "${labels}",
    "n=${length(labels)} ${labels.missing}|",
    "${join(',', ['}', labels.pod])}",
    '$${literal} ${`{"a": [1, 2.5, true, null]}`}',
    "${starts_with(labels.pod, 'web')}",
]


@pytest.mark.parametrize("text", TEMPLATES)
@pytest.mark.parametrize("labels", [{"pod": "web-1", "namespace": "shop", "replicas": "3"}, {}])
def test_compiled_templates_render_as_templates_do(text: str, labels: dict[str, str]) -> None:
    from kurative.matching.planning import _template
    from kurative.matching.templates import parse_template

    context = build_context(alert(labels), RESTART)

    def outcome(render: object) -> tuple[str, object]:
        try:
            return "value", render(context)  # type: ignore[operator]
        except Exception as exc:
            return "error", type(exc).__name__

    assert outcome(_template(text).render) == outcome(parse_template(text).render)
