"""What alerts would do, without doing it: the engine of ``kurative simulate``.

For each alert, the playbooks it starts in run order, why each matched, the dedupe key and every step
with its params rendered (params that read ``steps`` or ``execution`` stay as written, because they
only exist at run time), and with ``explain`` why every other playbook did not match. No store, no
network, no clock beyond the one that fills a missing ``startsAt``. An alert without ``startsAt``
joins the open firing episode of its fingerprint among the alerts simulated before it (pass one
:class:`~kurative.journal.episodes.EpisodeTracker` for all the inputs of a run), as the journal does,
so that its dedupe key is the one the daemon would use.

:func:`simulate` returns plain JSON values. Their shape is a stable interface that CI scripts parse
(``kurative simulate --format json``): a list with one object per input alert holding ``alert``
(``labels``, ``annotations``, ``status``, ``fingerprint``, ``startsAt``, ``endsAt``, ``generatorURL``)
and ``matches``, a list in run order of ``{playbook, version, priority, reason, dedupe_key,
dedupe_window, limits, steps: [{name, action, params, deferred?, when?, cluster?}], error?}``; plus
``source`` (file and index) and, with explain, ``explain``: ``[{playbook, outcome, reason}]``.
Fields may be added; none will be renamed or removed within v1.
"""

from __future__ import annotations

import json
from typing import Any

from kurative.alerts import Alert, AlertGroup, Notification
from kurative.durations import format_duration
from kurative.errors import TemplateRenderError
from kurative.journal.episodes import EpisodeTracker
from kurative.matching.planning import plan_for
from kurative.matching.ruleset import Ruleset


def simulate_alert(
    ruleset: Ruleset, alert: Alert, group: AlertGroup | None = None, *, explain: bool = False
) -> dict[str, Any]:
    """The JSON report for one alert."""
    verdicts = ruleset.explain(alert, group) if explain else ()
    reasons = {v.compiled.name: v.reason for v in verdicts}
    matches: list[dict[str, Any]] = []
    for compiled in ruleset.match(alert, group):
        playbook = compiled.playbook
        reason = reasons.get(playbook.name) or ruleset.judge(compiled, alert, group).reason
        entry: dict[str, Any] = {
            "playbook": playbook.name,
            "version": playbook.version,
            "priority": playbook.priority,
            "reason": reason,
        }
        try:
            plan = plan_for(compiled, alert, group)
        except TemplateRenderError as exc:
            entry.update(
                {"dedupe_key": None, "dedupe_window": None, "limits": [], "steps": [], "error": str(exc)}
            )
            matches.append(entry)
            continue
        entry["dedupe_key"] = plan.dedupe_key
        entry["dedupe_window"] = (
            format_duration(plan.dedupe_window) if plan.dedupe_window is not None else None
        )
        entry["limits"] = [
            {"key": k.limit, "value": k.value, "max": k.max, "per": format_duration(k.per)}
            for k in plan.limit_keys
        ]
        entry["steps"] = [step.to_json() for step in plan.steps]
        if playbook.dry_run:
            entry["dry_run"] = True
        matches.append(entry)
    report: dict[str, Any] = {"alert": alert.to_json(), "matches": matches}
    if group is not None:
        report["group"] = group.to_json()
    if explain:
        report["explain"] = [
            {"playbook": v.compiled.name, "outcome": v.outcome, "reason": v.reason} for v in verdicts
        ]
    return report


def simulate(
    ruleset: Ruleset,
    notification: Notification,
    *,
    explain: bool = False,
    source: str = "",
    episodes: EpisodeTracker | None = None,
) -> list[dict[str, Any]]:
    """Reports for every alert of one notification (one input file), in input order; ``episodes``
    carries the open firing episodes over from the inputs simulated before (default: none)."""
    episodes = EpisodeTracker() if episodes is None else episodes
    reports = []
    for index, sent in enumerate(notification.alerts):
        alert = episodes.join(sent)
        report = simulate_alert(ruleset, alert, notification.group, explain=explain)
        report["source"] = {"file": source, "index": index}
        reports.append(report)
    return reports


def _labels_text(labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _value_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def format_text(reports: list[dict[str, Any]]) -> str:
    """Reports as a human reads them in a terminal."""
    lines: list[str] = []
    for report in reports:
        alert = report["alert"]
        source = report.get("source") or {}
        name = alert["labels"].get("alertname", "(no alertname)")
        where = f"  [{source.get('file')} #{source.get('index', 0) + 1}]" if source.get("file") else ""
        lines.append(f"alert {name} {alert['status']} fingerprint {alert['fingerprint']}{where}")
        lines.append(f"  labels: {_labels_text(alert['labels'])}")
        if not report["matches"]:
            lines.append("  no playbook matches")
        for position, match in enumerate(report["matches"], start=1):
            dry = " (dry run)" if match.get("dry_run") else ""
            lines.append(
                f"  {position}. {match['playbook']} v{match['version']} priority {match['priority']}{dry}"
            )
            lines.append(f"     why: {match['reason']}")
            if match.get("error"):
                lines.append(f"     error: {match['error']}")
                continue
            window = f" (window {match['dedupe_window']})" if match["dedupe_window"] else ""
            lines.append(f"     dedupe key: {match['dedupe_key']}{window}")
            for limit in match["limits"]:
                cap = f"at most {limit['max']} per {limit['per']}"
                lines.append(f"     limit: {limit['key']} = {limit['value']!r}: {cap}")
            for step in match["steps"]:
                extra = f"  when {step['when']}" if step.get("when") else ""
                cluster = (
                    f"  cluster {_value_text(step['cluster'])}" if step.get("cluster") is not None else ""
                )
                lines.append(f"     - {step['name']}: {step['action']}{cluster}{extra}")
                deferred = list(step.get("deferred", ()))
                for key, value in step["params"].items():
                    inner = [d for d in deferred if d.startswith((f"{key}.", f"{key}["))]
                    later = ""
                    if key in deferred:
                        later = "   (rendered at run time)"
                    elif inner:
                        later = f"   ({', '.join(inner)} rendered at run time)"
                    lines.append(f"         {key}: {_value_text(value)}{later}")
        if "explain" in report:
            others = [e for e in report["explain"] if e["outcome"] != "matched"]
            if others:
                lines.append("  not started:")
                for entry in others:
                    lines.append(f"     - {entry['playbook']} ({entry['outcome']}): {entry['reason']}")
        lines.append("")
    return "\n".join(lines)
