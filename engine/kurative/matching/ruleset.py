"""The ruleset: an immutable, compiled snapshot of the playbooks, and the matcher over it.

Matching is the hot path (every notification of every alert goes through it), so the ruleset never
evaluates every condition for every alert. At compile time each playbook is filed in an index:

* by trigger status — a firing alert only sees ``firing``/``any`` playbooks, a resolved one only
  ``resolved``/``any`` ones;
* by one label equality it requires — ``trigger.alertname`` first, else a top-level conjunct
  ``labels.X == 'v'`` of its ``when`` (``alertname`` preferred). That conjunct is then known to hold and is
  dropped from the condition the playbook still has to check;
* playbooks with no such constraint go to a catch-all list.

An alert looks up its own label values in the index, and only those candidates evaluate what remains of
their ``when``, as closures compiled from the JMESPath AST (:mod:`kurative.matching.compiler`). Matches
come out in run order — higher ``priority`` first, then name — and a matching playbook with
``stop: true`` ends the list. A condition that fails to evaluate (``starts_with(null, 'x')``) does not
match; :meth:`Ruleset.explain` says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import jmespath.exceptions

from kurative.alerts import Alert, AlertGroup
from kurative.errors import ExpressionError, KurativeError, PlaybookError
from kurative.matching.compiler import (
    EMPTY_VALUES,
    Closure,
    compile_all,
    compile_closure,
    conjuncts,
    equality_constraint,
    field_path,
    is_true,
    root_fields,
)
from kurative.matching.context import alert_context, playbook_context
from kurative.matching.expressions import Expression, compile_expression
from kurative.playbooks.models import Playbook

# What evaluating a condition may raise: the library's own errors, and Python's when an ordering
# comparison meets a string and a number.
EVALUATION_ERRORS = (jmespath.exceptions.JMESPathError, TypeError, ValueError, KurativeError)

_PLAYBOOK_KEYS = frozenset({"playbook", "vars", "@"})


def _label_path(path: tuple[str, ...] | None) -> str | None:
    if path is None:
        return None
    if len(path) == 2 and path[0] == "labels":
        return path[1]
    if len(path) == 3 and path[:2] == ("alert", "labels"):
        return path[2]
    return None


@dataclass(frozen=True, slots=True)
class CompiledPlaybook:
    """A playbook with its expressions compiled, and its place in run order (``rank``, 0 runs first)."""

    playbook: Playbook
    rank: int
    when: Expression | None = None
    condition: Closure | None = field(default=None, repr=False, compare=False)
    dedupe_key: Expression | None = None
    dedupe_closure: Closure | None = field(default=None, repr=False, compare=False)
    limit_keys: tuple[tuple[Expression, Closure], ...] = field(default=(), repr=False, compare=False)
    reads_playbook: bool = False

    @property
    def name(self) -> str:
        return self.playbook.name

    def context(self, base: Mapping[str, Any]) -> dict[str, Any] | Mapping[str, Any]:
        """The context this playbook's condition needs: ``base`` alone unless it reads playbook/vars."""
        return playbook_context(base, self.playbook) if self.reads_playbook else base


@dataclass(frozen=True, slots=True)
class _Entry:
    """A playbook filed in one index slot, with the part of its condition the slot does not imply."""

    compiled: CompiledPlaybook
    residual: Closure | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The index for one alert status."""

    tables: tuple[tuple[str, Mapping[str, tuple[_Entry, ...]]], ...]
    catch_all: tuple[_Entry, ...]


Outcome = Literal["matched", "no-match", "error", "stopped"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why one playbook did or did not match one alert (for ``simulate --explain`` and ``test``)."""

    compiled: CompiledPlaybook
    outcome: Outcome
    reason: str

    @property
    def matched(self) -> bool:
        return self.outcome == "matched"


def _compile(source: str | None, where: str, playbook: Playbook) -> Expression | None:
    if source is None:
        return None
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        raise ExpressionError(f"playbook {playbook.name!r}: {where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """Where a playbook is filed: under ``label`` for each of ``values``, or in the catch-all list."""

    label: str | None
    values: tuple[str, ...]
    residual: Closure | None = field(repr=False)


# What compiling a playbook derives from one expression alone, once per expression text: playbooks
# repeat their conditions and keys, an Expression is immutable (equal by its text) and a closure keeps
# no state, so the playbooks that share an expression share its closures.


@lru_cache(maxsize=4096)
def _closure(expression: Expression) -> Closure:
    return compile_closure(expression.ast)


@lru_cache(maxsize=4096)
def _reads_playbook(when: Expression) -> bool:
    return bool(root_fields(when.ast) & _PLAYBOOK_KEYS)


@lru_cache(maxsize=4096)
def _constraints(when: Expression) -> tuple[tuple[int, str, str], ...]:
    """The top-level conjuncts ``labels.X == 'v'`` of a condition: (position, label, value)."""
    usable: list[tuple[int, str, str]] = []
    for position, node in enumerate(conjuncts(when.ast)):
        constraint = equality_constraint(node)
        label = _label_path(constraint[0]) if constraint is not None else None
        if constraint is not None and label is not None:
            usable.append((position, label, constraint[1]))
    return tuple(usable)


@lru_cache(maxsize=4096)
def _residual(when: Expression, implied: int | None) -> Closure | None:
    """The condition without its conjunct at ``implied`` (the one the index slot already holds)."""
    return compile_all([node for i, node in enumerate(conjuncts(when.ast)) if i != implied])


def compile_playbook(playbook: Playbook, rank: int) -> tuple[CompiledPlaybook, IndexPlan]:
    """Compile one playbook's expressions and decide how the index files it."""
    when = _compile(playbook.trigger.when, "trigger.when", playbook)
    dedupe = _compile(playbook.dedupe.key, "dedupe.key", playbook)
    limits = tuple(
        (expression, _closure(expression))
        for index, limit in enumerate(playbook.limits)
        if (expression := _compile(limit.key, f"limits[{index}].key", playbook)) is not None
    )
    compiled = CompiledPlaybook(
        playbook=playbook,
        rank=rank,
        when=when,
        condition=_closure(when) if when is not None else None,
        dedupe_key=dedupe,
        dedupe_closure=_closure(dedupe) if dedupe is not None else None,
        limit_keys=limits,
        reads_playbook=when is not None and _reads_playbook(when),
    )
    if playbook.trigger.alertnames:
        values = tuple(dict.fromkeys(playbook.trigger.alertnames))
        return compiled, IndexPlan("alertname", values, _residual(when, None) if when is not None else None)
    usable = _constraints(when) if when is not None else ()
    if when is None or not usable:
        return compiled, IndexPlan(None, (), _residual(when, None) if when is not None else None)
    position, label, value = next((u for u in usable if u[1] == "alertname"), usable[0])
    return compiled, IndexPlan(label, (value,), _residual(when, position))


@dataclass(frozen=True, slots=True)
class Ruleset:
    """An immutable snapshot of compiled playbooks; share it freely, swap it whole on reload.

    Build it with :meth:`Ruleset.compile`.
    """

    playbooks: tuple[CompiledPlaybook, ...] = ()
    _buckets: Mapping[str, _Bucket] = field(default_factory=dict, repr=False, compare=False)
    _by_name: Mapping[str, CompiledPlaybook] = field(default_factory=dict, repr=False, compare=False)
    _plans: Mapping[str, IndexPlan] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def compile(cls, playbooks: Iterable[Playbook], previous: Ruleset | None = None) -> Ruleset:
        """Compile every playbook and build the index; raises on a bad expression or duplicate name.

        A playbook that ``previous`` holds (the same object) keeps its compiled form: a reload that
        changes one playbook compiles only that one."""
        ordered = sorted(playbooks, key=lambda p: (-p.priority, p.name))
        duplicates = sorted(n for n, times in Counter(p.name for p in ordered).items() if times > 1)
        if duplicates:
            raise PlaybookError(f"duplicate playbook names in one ruleset: {', '.join(duplicates)}")
        compiled_all: list[CompiledPlaybook] = []
        tables: dict[str, dict[str, dict[str, list[_Entry]]]] = {"firing": {}, "resolved": {}}
        catch_all: dict[str, list[_Entry]] = {"firing": [], "resolved": []}
        plans: dict[str, IndexPlan] = {}
        for rank, playbook in enumerate(ordered):
            known = previous.get(playbook.name) if previous is not None else None
            if previous is not None and known is not None and known.playbook is playbook:
                plan = previous._plans[playbook.name]
                compiled = known if known.rank == rank else replace(known, rank=rank)
            else:
                compiled, plan = compile_playbook(playbook, rank)
            compiled_all.append(compiled)
            plans[playbook.name] = plan
            entry = _Entry(compiled, plan.residual)
            status = playbook.trigger.status
            for bucket in ("firing", "resolved") if status == "any" else (status,):
                if plan.label is None:
                    catch_all[bucket].append(entry)
                    continue
                table = tables[bucket].setdefault(plan.label, {})
                for value in plan.values:
                    table.setdefault(value, []).append(entry)
        # Labels with the most indexed values first: they discriminate best. Order within a slot is
        # already run order because playbooks were filed in rank order.
        buckets = {
            bucket: _Bucket(
                tables=tuple(
                    (label, {value: tuple(entries) for value, entries in table.items()})
                    for label, table in sorted(tables[bucket].items(), key=lambda kv: (-len(kv[1]), kv[0]))
                ),
                catch_all=tuple(catch_all[bucket]),
            )
            for bucket in ("firing", "resolved")
        }
        return cls(tuple(compiled_all), buckets, {c.name: c for c in compiled_all}, plans)

    def __len__(self) -> int:
        return len(self.playbooks)

    def get(self, name: str) -> CompiledPlaybook | None:
        return self._by_name.get(name)

    def candidates(self, alert: Alert) -> tuple[_Entry, ...]:
        """The index entries an alert can possibly match, in run order."""
        bucket = self._buckets[alert.status]
        labels: Mapping[str, str] = alert.document["labels"]
        found: tuple[_Entry, ...] | None = None
        merged = False
        for label, table in bucket.tables:
            value = labels.get(label)
            if value is None:
                continue
            hit = table.get(value)
            if hit:
                if found is None:
                    found = hit
                else:
                    found += hit
                    merged = True
        if bucket.catch_all:
            if found is None:
                found = bucket.catch_all
            else:
                found += bucket.catch_all
                merged = True
        if found is None:
            return ()
        if merged:
            found = tuple(sorted(found, key=_rank))
        return found

    def match(self, alert: Alert, group: AlertGroup | None = None) -> tuple[CompiledPlaybook, ...]:
        """The playbooks ``alert`` starts, in run order, ``stop`` applied."""
        entries = self.candidates(alert)
        if not entries:
            return ()
        base: dict[str, Any] | None = None
        matched: list[CompiledPlaybook] = []
        for entry in entries:
            compiled = entry.compiled
            residual = entry.residual
            if residual is not None:
                if base is None:
                    base = alert_context(alert, group)
                try:
                    result = residual(compiled.context(base) if compiled.reads_playbook else base)
                except EVALUATION_ERRORS:
                    continue
                if result is None or result is False or result in EMPTY_VALUES:
                    continue
            matched.append(compiled)
            if compiled.playbook.stop:
                break
        return tuple(matched)

    def judge(self, compiled: CompiledPlaybook, alert: Alert, group: AlertGroup | None = None) -> Verdict:
        """Why one playbook, taken alone, does or does not match (``stop`` of others not applied)."""
        outcome, reason = _judge(compiled, alert, alert_context(alert, group))
        return Verdict(compiled, outcome, reason)

    def explain(self, alert: Alert, group: AlertGroup | None = None) -> tuple[Verdict, ...]:
        """A verdict for every playbook, in run order: matched, and why; or why not."""
        base = alert_context(alert, group)
        verdicts: list[Verdict] = []
        stopped_by: CompiledPlaybook | None = None
        for compiled in self.playbooks:
            outcome, reason = _judge(compiled, alert, base)
            if outcome == "matched" and stopped_by is not None:
                outcome = "stopped"
                reason = (
                    f"would match ({reason}), but {stopped_by.name!r} (priority "
                    f"{stopped_by.playbook.priority}, stop: true) matched first"
                )
            elif outcome == "matched" and compiled.playbook.stop:
                stopped_by = compiled
            verdicts.append(Verdict(compiled, outcome, reason))
        return tuple(verdicts)


def _rank(entry: _Entry) -> int:
    return entry.compiled.rank


def _show(value: Any) -> str:
    if value is None:
        return "null (missing)"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=4096)
def _referenced_paths(expression: Expression) -> tuple[tuple[str, Closure], ...]:
    found: dict[str, Closure] = {}

    def visit(node: Mapping[str, Any]) -> None:
        path = field_path(node)
        if path is not None:
            found.setdefault(".".join(path), compile_closure(node))
            return
        if node["type"] in ("and_expression", "or_expression", "not_expression", "comparator"):
            for child in node["children"]:
                visit(child)
        elif node["type"] == "function_expression":
            for child in node["children"]:
                if isinstance(child, Mapping) and child["type"] != "expref":
                    visit(child)

    visit(expression.ast)
    return tuple(found.items())


def referenced_values(expression: Expression, context: Mapping[str, Any]) -> list[str]:
    """``labels.severity = 'warning'`` for each plain path a condition reads from the context root."""
    return [f"{text} = {_show(closure(context))}" for text, closure in _referenced_paths(expression)]


def _judge(compiled: CompiledPlaybook, alert: Alert, base: Mapping[str, Any]) -> tuple[Outcome, str]:
    trigger = compiled.playbook.trigger
    if trigger.status not in ("any", alert.status):
        return "no-match", f"alert is {alert.status}; trigger.status is {trigger.status}"
    reasons: list[str] = []
    if trigger.alertnames:
        name = alert.labels.get("alertname")
        if name not in trigger.alertnames:
            return "no-match", (
                f"alertname {_show(name)} is not in trigger.alertname [{', '.join(trigger.alertnames)}]"
            )
        reasons.append(f"alertname {name!r} is in trigger.alertname")
    else:
        reasons.append("any alertname")
    reasons.append(f"status {alert.status} fits trigger.status {trigger.status}")
    if compiled.when is None or compiled.condition is None:
        return "matched", "; ".join(reasons)
    try:
        context = playbook_context(base, compiled.playbook)
        result = compiled.condition(context)
    except EVALUATION_ERRORS as exc:
        return "error", f"when `{compiled.when.source}` failed: {exc}"
    values = referenced_values(compiled.when, context)
    detail = f" ({', '.join(values)})" if values else ""
    if is_true(result):
        reasons.append(f"when `{compiled.when.source}` is true{detail}")
        return "matched", "; ".join(reasons)
    return "no-match", f"when `{compiled.when.source}` is {_show_result(result)}{detail}"


def _show_result(result: Any) -> str:
    if result is False:
        return "false"
    if result is None:
        return "null"
    return f"{_show(result)} (falsy)"
