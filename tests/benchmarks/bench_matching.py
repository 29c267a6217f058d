"""Matching throughput: the indexed, compiled ruleset against naive jmespath, in the same process.

Not a test: run it with ``.venv/bin/python tests/benchmarks/bench_matching.py [--playbooks N ...]``.
It builds N playbooks shaped like ``labels.alertname == 'AlertNN' && labels.severity == 'critical'``
plus a realistic mix (trigger.alertname lists, namespaces, ``not_null``, ``contains``,
``starts_with``, ``||``, a couple of catch-alls), and 100,000 alerts. It times
:meth:`Ruleset.match` over every alert, then the naive baseline — every playbook's whole condition as
one compiled jmespath expression, searched against every alert's context — over a sample (the baseline
is slow enough that the full set would take minutes), and checks on that sample that both agree. For
reference it also times match plus plan (dedupe key, limit keys, rendered steps) over every alert.
Prints alerts/s of both and the ratio; the last line is one JSON object (with ``runs`` when several
sizes ran; its top-level figures are those of the first size).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jmespath

from kurative.alerts import Alert
from kurative.matching.compiler import is_true
from kurative.matching.context import alert_context
from kurative.matching.planning import plan_for
from kurative.matching.ruleset import Ruleset
from kurative.playbooks.models import Playbook, Step, Trigger

NAMESPACES = ["shop", "payments", "kube-system", "team-a", "team-b", "monitoring", "default", "search"]
SEVERITIES = ["critical", "warning", "info"]
ENVS = ["prod", "staging", "dev"]


def make_playbooks(count: int, rng: random.Random) -> list[Playbook]:
    step = (Step("log", "log", {"message": "${labels.alertname} in ${labels.namespace}"}),)
    playbooks: list[Playbook] = []
    for i in range(count):
        name = f"Alert{i}"
        shape = i % 10
        priority = rng.randint(0, 5)
        if shape < 6:
            trigger = Trigger((), "firing", f"labels.alertname == '{name}' && labels.severity == 'critical'")
        elif shape < 8:
            trigger = Trigger(
                (name,),
                "firing",
                "labels.namespace != 'kube-system' && not_null(labels.pod, labels.instance)",
            )
        elif shape == 8:
            trigger = Trigger(
                (name, f"{name}Extra"),
                "any",
                "contains(['prod', 'staging'], labels.env) && labels.severity == 'critical'",
            )
        else:
            trigger = Trigger(
                (name,), "firing", "starts_with(labels.namespace, 'team-') || labels.team == 'sre'"
            )
        playbooks.append(Playbook(f"pb-{i:04d}", 1, step, trigger, priority=priority, stop=(i % 17 == 0)))
    # Two catch-alls, as real rule repositories have: every alert evaluates them.
    playbooks.append(
        Playbook(
            "zz-catch-critical-payments",
            1,
            step,
            Trigger((), "firing", "labels.severity == 'critical' && labels.namespace == 'payments'"),
        )
    )
    playbooks.append(
        Playbook(
            "zz-catch-disk",
            1,
            step,
            Trigger((), "firing", "contains(labels.alertname, 'Disk') && not_null(labels.instance)"),
        )
    )
    return playbooks


def make_alerts(count: int, playbooks: int, rng: random.Random) -> list[Alert]:
    alerts = []
    names = max(1, int(playbooks * 1.25))
    for _ in range(count):
        labels = {
            "alertname": rng.choice([f"Alert{rng.randrange(names)}", "NodeDiskFull"])
            if rng.random() < 0.05
            else f"Alert{rng.randrange(names)}",
            "severity": rng.choice(SEVERITIES),
            "namespace": rng.choice(NAMESPACES),
            "env": rng.choice(ENVS),
        }
        if rng.random() < 0.7:
            labels["pod"] = f"web-{rng.randrange(1000)}"
        if rng.random() < 0.3:
            labels["instance"] = f"10.0.0.{rng.randrange(255)}:9100"
        if rng.random() < 0.1:
            labels["team"] = "sre"
        alerts.append(Alert.make(labels, status="resolved" if rng.random() < 0.1 else "firing"))
    return alerts


def baseline_expressions(playbooks: list[Playbook]) -> list[tuple[Playbook, Any]]:
    """Each playbook's whole condition (alertname list included) as one jmespath expression."""
    compiled = []
    for playbook in playbooks:
        parts = []
        if playbook.trigger.alertnames:
            names = ", ".join(f"'{n}'" for n in playbook.trigger.alertnames)
            parts.append(f"contains([{names}], labels.alertname)")
        if playbook.trigger.when:
            parts.append(f"({playbook.trigger.when})")
        compiled.append((playbook, jmespath.compile(" && ".join(parts) or "`true`")))
    return compiled


def baseline_match(ordered: list[tuple[Playbook, Any]], alert: Alert, truthy: Any) -> tuple[str, ...]:
    base = alert_context(alert)
    matched = []
    for playbook, expression in ordered:
        status = playbook.trigger.status
        result = expression.search(base)  # every expression for every alert, as a naive engine does
        if status not in ("any", alert.status):
            continue
        if truthy(result):
            matched.append(playbook.name)
            if playbook.stop:
                break
    return tuple(matched)


def run(count: int, alerts_count: int, sample: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    playbooks = make_playbooks(count, rng)
    alerts = make_alerts(alerts_count, count, rng)
    ruleset = Ruleset.compile(playbooks)

    match = ruleset.match
    started = time.perf_counter()
    matched_total = 0
    for alert in alerts:
        matched_total += len(match(alert))
    elapsed = time.perf_counter() - started
    rate = len(alerts) / elapsed

    # The same alerts through match and plan (dedupe key, limit keys, rendered steps) for comparison.
    started = time.perf_counter()
    for alert in alerts:
        for compiled in match(alert):
            plan_for(compiled, alert)
    planned_rate = len(alerts) / (time.perf_counter() - started)

    ordered = sorted(baseline_expressions(playbooks), key=lambda pe: (-pe[0].priority, pe[0].name))
    subset = alerts[:sample]
    started = time.perf_counter()
    baseline_results = [baseline_match(ordered, alert, is_true) for alert in subset]
    baseline_elapsed = time.perf_counter() - started
    baseline_rate = len(subset) / baseline_elapsed

    ours = [tuple(c.name for c in match(alert)) for alert in subset]
    disagreements = sum(1 for a, b in zip(ours, baseline_results, strict=True) if a != b)
    print(
        f"{count} playbooks ({len(playbooks)} with catch-alls), {len(alerts)} alerts: "
        f"{rate:,.0f} alerts/s ({matched_total} matches); naive jmespath {baseline_rate:,.0f} alerts/s "
        f"over {len(subset)} alerts; ratio {rate / baseline_rate:,.1f}; disagreements {disagreements}; "
        f"match and plan {planned_rate:,.0f} alerts/s"
    )
    if disagreements:
        raise SystemExit(f"the matcher and the naive baseline disagree on {disagreements} alerts")
    return {
        "playbooks": count,
        "alerts": len(alerts),
        "alerts_per_s": round(rate),
        "baseline_alerts_per_s": round(baseline_rate, 1),
        "ratio": round(rate / baseline_rate, 1),
        "baseline_sample": len(subset),
        "match_and_plan_alerts_per_s": round(planned_rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--playbooks", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=0, help="baseline sample (default: by size)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    runs = []
    for count in args.playbooks:
        sample = args.sample or max(100, min(args.alerts, 100_000 // max(count, 1)))
        runs.append(run(count, args.alerts, sample, args.seed))
    summary = dict(runs[0])
    if len(runs) > 1:
        summary["runs"] = runs
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
