"""Playbook unit tests: alerts in, expected playbooks and rendered params out (``kurative test``).

The format (``schemas/playbook-test.v1.json``, documented in docs/testing-playbooks.md) is to a
playbook repository what ``promtool test rules`` files are to Prometheus rules. A case sends its
alerts one after another through the same path as the daemon — match, plan, admit — with an in-memory
dedupe/limits store that lives for the case, so repeated notifications and limits can be pinned too.
An alert without ``startsAt`` joins the open firing episode of its fingerprint in the case, as the
journal does, or opens one at its arrival (a fixed ``2000-01-01T00:00:00Z`` plus its ``at``), so that
expected dedupe keys never change.

Loading reports every problem of a test file as ``path:line:column: message``; running a case compares
only what the expectation states and explains a failure with a diff and the reason each missing
playbook did not start.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from kurative.alerts import Alert, AlertGroup, parse_notification
from kurative.durations import FORMAT_CHECKER, parse_duration
from kurative.errors import AlertError, TemplateRenderError
from kurative.journal.episodes import EpisodeTracker
from kurative.matching.admission import MemoryAdmissionStore, admit
from kurative.matching.planning import Plan, plan_for
from kurative.matching.ruleset import Ruleset
from kurative.playbooks.yamlload import Document, load_yaml_file

_FIXED_NOW = datetime(2000, 1, 1, tzinfo=UTC)
_MISSING = "(not rendered: no such param)"


@dataclass(frozen=True, slots=True)
class TestCase:
    """One case of a test file, ready to run."""

    __test__ = False  # not a pytest class

    name: str
    line: int
    alerts: tuple[Alert, ...]
    arrivals: tuple[float, ...]
    expect: tuple[Mapping[str, Any], ...]
    group: AlertGroup | None = None


@dataclass(frozen=True, slots=True)
class TestFile:
    __test__ = False

    path: str
    cases: tuple[TestCase, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """One alert of one case whose outcome differs from the expectation."""

    case: str
    line: int
    alert_index: int
    alert: Alert
    diff: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: TestCase
    failures: tuple[Failure, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures


@cache
def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("kurative").joinpath("schemas/playbook-test.v1.json").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text), format_checker=FORMAT_CHECKER)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _schema_problems(doc: Document) -> list[str]:
    problems = []
    for error in sorted(_validator().iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        chosen = error
        if error.validator == "oneOf" and error.context and isinstance(error.instance, Mapping):
            # An alert is either a full alert (branch 0) or a bare label map (branch 1): report the
            # problem of the branch the author meant.
            branch = 0 if "labels" in error.instance else 1
            inside = [e for e in error.context if e.schema_path and e.schema_path[0] == branch]
            if inside:
                chosen = inside[0]
        path = tuple(chosen.absolute_path)
        line, column = doc.position(path)
        message = str(chosen.cause) if chosen.validator == "format" and chosen.cause else chosen.message
        if chosen.validator == "type" and len(path) >= 2:
            message += " (label values are strings: quote numbers and booleans)"
        problems.append(f"{doc.path}:{line}:{column}: {_dotted(path)}: {message}")
    return problems


def _alert(raw: Mapping[str, Any], where: str) -> tuple[Alert, str | None]:
    full = "labels" in raw  # otherwise the mapping is the labels (the shortcut)
    item: dict[str, Any] = {k: v for k, v in raw.items() if k != "at"} if full else {"labels": dict(raw)}
    item.setdefault("status", "firing")
    try:
        (alert,) = parse_notification(item, _FIXED_NOW).alerts
    except AlertError as exc:
        raise AlertError(f"{where}: {exc}") from None
    at = raw.get("at") if full else None
    return alert, at


def _group(raw: Mapping[str, Any] | None) -> AlertGroup | None:
    if raw is None:
        return None
    return AlertGroup(
        receiver=raw.get("receiver", ""),
        group_key=raw.get("groupKey", ""),
        group_labels=MappingProxyType(dict(raw.get("groupLabels", {}))),
        common_labels=MappingProxyType(dict(raw.get("commonLabels", {}))),
        external_url=raw.get("externalURL", ""),
    )


def load_test_file(path: str | Path) -> TestFile:
    """Read and check one test file; problems are positioned, and a file with problems has no cases."""
    name = str(path)
    loaded = load_yaml_file(name)
    problems = [d.format() for d in loaded.diagnostics]
    if not loaded.documents and not problems:
        problems.append(f"{name}:1:1: empty test file (write tests: [...])")
    cases: list[TestCase] = []
    for doc in loaded.documents:
        found = _schema_problems(doc)
        if found:
            problems.extend(found)
            continue
        for index, case in enumerate(doc.data["tests"]):
            line, _column = doc.position(("tests", index))
            alerts: list[Alert] = []
            arrivals: list[float] = []
            previous = 0.0
            for number, raw_alert in enumerate(case["alerts"]):
                where = ("tests", index, "alerts", number)
                try:
                    alert, at = _alert(raw_alert, _dotted(where))
                except AlertError as exc:
                    at_line, at_column = doc.position(where)
                    problems.append(f"{name}:{at_line}:{at_column}: {exc}")
                    continue
                previous = parse_duration(at) if at is not None else previous
                alerts.append(alert)
                arrivals.append(previous)
            if len(case["expect"]) != len(case["alerts"]):
                exp_line, exp_column = doc.position(("tests", index, "expect"))
                problems.append(
                    f"{name}:{exp_line}:{exp_column}: tests[{index}].expect: {len(case['expect'])} "
                    f"expectations for {len(case['alerts'])} alerts (write one per alert, in order)"
                )
                continue
            cases.append(
                TestCase(
                    name=case["name"],
                    line=line,
                    alerts=tuple(alerts),
                    arrivals=tuple(arrivals),
                    expect=tuple(case["expect"]),
                    group=_group(case.get("group")),
                )
            )
    if problems:
        return TestFile(name, (), tuple(problems))
    return TestFile(name, tuple(cases), ())


def _json(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _actual_steps(expected: Mapping[str, Any], plans: Mapping[str, Plan]) -> dict[str, Any]:
    actual: dict[str, Any] = {}
    for playbook, steps in expected.items():
        plan = plans.get(playbook)
        if plan is None:
            actual[playbook] = "(playbook did not start)"
            continue
        rendered = {step.name: step for step in plan.steps}
        actual[playbook] = {}
        for step_name, params in steps.items():
            step = rendered.get(step_name)
            if step is None:
                actual[playbook][step_name] = "(no such step)"
                continue
            actual[playbook][step_name] = {key: step.params.get(key, _MISSING) for key in params}
    return actual


def run_case(ruleset: Ruleset, case: TestCase) -> CaseResult:
    """Send the case's alerts through match, plan and admit; compare with what the case expects."""
    store = MemoryAdmissionStore()
    episodes = EpisodeTracker()
    failures: list[Failure] = []
    for index, (sent, at, expect) in enumerate(zip(case.alerts, case.arrivals, case.expect, strict=True)):
        alert = episodes.join(sent, _FIXED_NOW + timedelta(seconds=at))
        runs: list[str] = []
        duplicates: list[str] = []
        limited: list[str] = []
        plans: dict[str, Plan] = {}
        notes: list[str] = []
        held: dict[str, str] = {}
        for compiled in ruleset.match(alert, case.group):
            try:
                plan = plan_for(compiled, alert, case.group)
            except TemplateRenderError as exc:
                notes.append(f"render error: {exc}")
                continue
            admission = admit(plan, store, at)
            plans[compiled.name] = plan
            if admission.decision == "run":
                runs.append(compiled.name)
            else:
                (duplicates if admission.decision == "duplicate" else limited).append(compiled.name)
                held[compiled.name] = f"{admission.decision}: {admission.reason}"
        expected: dict[str, Any] = {"playbooks": list(expect["playbooks"])}
        actual: dict[str, Any] = {"playbooks": runs}
        if "duplicates" in expect:
            expected["duplicates"], actual["duplicates"] = list(expect["duplicates"]), duplicates
        if "limited" in expect:
            expected["limited"], actual["limited"] = list(expect["limited"]), limited
        if "dedupe_keys" in expect:
            expected["dedupe_keys"] = dict(expect["dedupe_keys"])
            actual["dedupe_keys"] = {
                name: (plans[name].dedupe_key if name in plans else "(playbook did not match)")
                for name in expect["dedupe_keys"]
            }
        if "steps" in expect:
            expected["steps"] = expect["steps"]
            actual["steps"] = _actual_steps(expect["steps"], plans)
        if expected == actual and not notes:
            continue
        mentioned = (
            set(expect["playbooks"]) | set(expect.get("steps", {})) | set(expect.get("dedupe_keys", {}))
        )
        mentioned |= set(expect.get("duplicates", ())) | set(expect.get("limited", ()))
        verdicts = {v.compiled.name: v for v in ruleset.explain(alert, case.group)}
        for name in sorted(mentioned):
            if name not in verdicts:
                notes.append(f"unknown playbook {name!r}: it is not in the loaded rules")
            elif name in held:
                notes.append(f"{name}: {held[name]}")
            elif not verdicts[name].matched:
                notes.append(f"{name} did not match: {verdicts[name].reason}")
        for name in runs:
            if name not in mentioned:
                notes.append(f"{name} started: {verdicts[name].reason}")
        diff = "\n".join(
            difflib.unified_diff(_json(expected), _json(actual), "expected", "actual", lineterm="", n=3)
        )
        failures.append(Failure(case.name, case.line, index, alert, diff, tuple(notes)))
    return CaseResult(case, tuple(failures))
