"""Semantic checks beyond the schema: expressions, templates, actions, params and step references.

These are the checks that make a playbook that passed JSON Schema safe to load: every JMESPath
expression and ``${…}`` template compiles, every action exists and gets params its schema accepts,
every ``steps.<name>`` reference names an earlier step, and names are unique. The daemon runs the same
checks on reload, so a playbook that lint accepts is one the daemon accepts.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kurative.actions.registry import get_action, suggest_action
from kurative.diagnostics import Diagnostic
from kurative.durations import FORMATS, format_checker
from kurative.matching.expressions import (
    Expression,
    ExpressionSyntaxError,
    ExpressionTooDeep,
    compile_expression,
    field_chain,
    step_references,
    walk,
)
from kurative.matching.planning import MAX_KEY_CHARS
from kurative.matching.templates import (
    TemplateSyntaxError,
    TemplateTooDeep,
    iter_strings,
    parse_template,
)
from kurative.playbooks.models import JSONPath, Playbook, Step
from kurative.playbooks.quickcheck import Check, compile_check
from kurative.playbooks.validation import TYPE_NAMES, describe, dotted, duration_seconds

if TYPE_CHECKING:
    import jsonschema

_ORDERING = {"lt", "gt", "lte", "gte"}
_LABEL_ROOTS = {("labels",), ("annotations",), ("alert", "labels"), ("alert", "annotations")}


class _Checker:
    def __init__(self, playbook: Playbook) -> None:
        self.source = playbook.source
        self.found: list[Diagnostic] = []

    def report(
        self,
        path: JSONPath,
        code: str,
        message: str,
        hint: str = "",
        text: str | None = None,
        offset: int = 0,
    ) -> None:
        if text is not None:
            line, column = self.source.locate(path, text, offset)
        else:
            line, column = self.source.position(path)
        self.found.append(Diagnostic.make(self.source.path, line, column, code, message, hint))

    def expression(self, path: JSONPath, text: str, code: str, what: str) -> Expression | None:
        try:
            return compile_expression(text)
        except ExpressionSyntaxError as exc:
            code = "E204" if isinstance(exc, ExpressionTooDeep) else code
            self.report(path, code, f"{what}: {exc}", exc.hint, text, exc.offset)
            return None

    def templates(self, path: JSONPath, value: Any) -> list[tuple[JSONPath, Expression]]:
        """Every expression of every template inside ``value``, with the path of its string."""
        compiled: list[tuple[JSONPath, Expression]] = []
        for sub, text in iter_strings(value, path):
            if "${" not in text:
                continue
            try:
                template = parse_template(text)
            except TemplateSyntaxError as exc:
                code = "E204" if isinstance(exc, TemplateTooDeep) else "E203"
                self.report(sub, code, f"template {dotted(sub)}: {exc}", exc.hint, text, exc.offset)
                continue
            compiled.extend((sub, p.expression) for p in template.placeholders)
        return compiled


def check_playbook(playbook: Playbook) -> list[Diagnostic]:
    """Every semantic problem of one playbook (the schema already holds)."""
    checker = _Checker(playbook)
    spec: JSONPath = ("spec",)
    trigger = playbook.trigger
    if trigger.when is not None:
        when = checker.expression((*spec, "trigger", "when"), trigger.when, "E201", "trigger condition")
        if when is not None:
            _no_steps_before_run(checker, (*spec, "trigger", "when"), when, "the trigger")
            _impossible_comparisons(checker, (*spec, "trigger", "when"), when, playbook)
    spec_body = playbook.body.get("spec") if isinstance(playbook.body, dict) else None
    dedupe_body = spec_body.get("dedupe") if isinstance(spec_body, dict) else None
    if isinstance(dedupe_body, dict) and _zero_duration(dedupe_body.get("window")):
        checker.report(
            (*spec, "dedupe", "window"),
            "E104",
            "dedupe window must be longer than 0s",
            "give the time the key stays taken (30m), or leave the window out: the key then runs once",
        )
    limits_body = spec_body.get("limits") if isinstance(spec_body, dict) else None
    for index, limit_body in enumerate(limits_body if isinstance(limits_body, list) else []):
        if isinstance(limit_body, dict) and _zero_duration(limit_body.get("per")):
            checker.report(
                (*spec, "limits", index, "per"),
                "E104",
                "a limit's period must be longer than 0s",
                "give the period the limit counts over, e.g. per: 1h",
            )
        key_text = limit_body.get("key") if isinstance(limit_body, dict) else None
        if isinstance(key_text, str) and len(key_text) > MAX_KEY_CHARS:
            checker.report(
                (*spec, "limits", index, "key"),
                "E104",
                f"a limit's key expression is {len(key_text)} characters, over the journal's "
                f"{MAX_KEY_CHARS} (the expression names the limit in the journal)",
                "shorten the expression: move long literals to vars",
            )
        elif isinstance(key_text, str) and "\x00" in key_text:
            checker.report(
                (*spec, "limits", index, "key"),
                "E104",
                "a limit's key expression holds a NUL character, which the journal cannot keep "
                "(the expression names the limit in the journal)",
                "remove the \\0 from the expression",
            )
    if playbook.dedupe.key is not None:
        key = checker.expression((*spec, "dedupe", "key"), playbook.dedupe.key, "E202", "dedupe key")
        if key is not None:
            _no_steps_before_run(checker, (*spec, "dedupe", "key"), key, "the dedupe key")
    for index, limit in enumerate(playbook.limits):
        path = (*spec, "limits", index, "key")
        key = checker.expression(path, limit.key, "E202", "limit key")
        if key is not None:
            _no_steps_before_run(checker, path, key, "a limit key")
    for where, expression in checker.templates((*spec, "vars"), dict(playbook.vars)):
        _no_steps_before_run(checker, where, expression, "vars")

    seen: dict[str, int] = {}
    for index, step in enumerate(playbook.steps):
        path = (*spec, "steps", index)
        if step.name in seen:
            checker.report(
                (*path, "name"),
                "E305",
                f"duplicate step name {step.name!r} (also step {seen[step.name] + 1})",
                "step names must be unique within a playbook: outputs are read as steps.<name>",
            )
        else:
            seen[step.name] = index
        _check_step(checker, path, index, step, playbook)
    return checker.found


def _zero_duration(value: Any) -> bool:
    """A duration that parses, to 0s (``0s``, ``0ms``, ``0h0m``)."""
    return isinstance(value, str) and duration_seconds(value) == 0


@functools.lru_cache(maxsize=4096)
def _step_references(expression: Expression) -> tuple[str, ...]:
    """:func:`step_references`, once per expression text: playbooks repeat their conditions, keys and
    placeholders (``labels.namespace``), and an Expression is immutable (equal by its text)."""
    return tuple(step_references(expression))


def _no_steps_before_run(checker: _Checker, path: JSONPath, expression: Expression, what: str) -> None:
    for name in _step_references(expression):
        checker.report(
            path,
            "E304",
            f"{what} reads steps.{name}, but it is evaluated before any step runs",
            "use alert fields (labels, annotations) here; step outputs exist only in later steps",
        )


def _check_step(checker: _Checker, path: JSONPath, index: int, step: Step, playbook: Playbook) -> None:
    earlier = [s.name for s in playbook.steps[:index]]
    expressions: list[tuple[JSONPath, Expression]] = []
    if step.when is not None:
        when = checker.expression((*path, "when"), step.when, "E201", f"step {step.name!r} condition")
        if when is not None:
            expressions.append(((*path, "when"), when))
            _impossible_comparisons(checker, (*path, "when"), when, playbook)
    expressions.extend(checker.templates((*path, "params"), dict(step.params)))
    if step.cluster is not None:
        expressions.extend(checker.templates((*path, "cluster"), step.cluster))

    for where, expression in expressions:
        for name in _step_references(expression):
            if name in earlier:
                continue
            later = [s.name for s in playbook.steps[index:]]
            if name in later:
                checker.report(
                    where,
                    "E304",
                    f"step {step.name!r} reads steps.{name}, which "
                    + ("is this step itself" if name == step.name else "runs later"),
                    "a step can read only the steps before it; reorder the steps",
                )
            else:
                known = ", ".join(dict.fromkeys(earlier)) or "none"
                checker.report(
                    where,
                    "E303",
                    f"step {step.name!r} reads steps.{name}, but there is no such step",
                    f"earlier steps: {known}; names with '-' are written steps.\"my-step\"",
                )

    spec = get_action(step.action)
    if spec is None:
        suggestion = suggest_action(step.action)
        hint = f"did you mean {suggestion!r}?" if suggestion else "kurative actions lists the catalogue"
        checker.report((*path, "action"), "E301", f"unknown action {step.action!r}", hint)
        return
    params = dict(step.params)
    quick = _quick_check(step.action)
    if quick is not None and quick(params):
        return  # valid params: no error for jsonschema to find
    errors = [e for e in _validator(step.action).iter_errors(params) if not _is_template(e.instance)]
    misspelt = {
        close
        for e in errors
        if e.validator == "additionalProperties"
        for key in e.instance
        for close in difflib.get_close_matches(key, list(spec.params.get("properties", {})), n=1, cutoff=0.6)
    }
    for error in errors:
        if error.validator == "required" and _missing(error) in misspelt:
            continue  # the unknown-param error already says "did you mean"
        where = (*path, "params", *error.absolute_path)
        message, hint = _param_problem(step.action, error)
        checker.report(where, "E302", f"{step.action} params{_suffix(error.absolute_path)}: {message}", hint)


def _suffix(path: Iterable[str | int]) -> str:
    parts = list(path)
    return "." + dotted(parts) if parts else ""


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


@functools.cache
def _validator(action: str) -> jsonschema.Draft202012Validator:
    spec = get_action(action)
    assert spec is not None
    import jsonschema  # only for params that fail the quick check

    return jsonschema.Draft202012Validator(dict(spec.params), format_checker=format_checker())


@functools.cache
def _quick_check(action: str) -> Check | None:
    spec = get_action(action)
    assert spec is not None
    return compile_check(dict(spec.params), FORMATS, templates=True)  # _is_template, as below


def _param_problem(action: str, error: jsonschema.ValidationError) -> tuple[str, str]:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        instance: Any = error.instance
        extras = [k for k in instance if k not in schema.get("properties", {})]
        close = difflib.get_close_matches(extras[0], known, n=1, cutoff=0.6) if extras else []
        hint = f"did you mean {close[0]!r}?" if close else f"{action} takes: {', '.join(known)}"
        return f"unknown param {', '.join(repr(e) for e in extras)}", hint
    more = f"kurative actions shows every param of {action}"
    if error.validator == "required":
        return f"missing param {_missing(error)!r}", more
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in schema.get("enum", []))
        return f"invalid value {error.instance!r}", f"expected one of: {allowed}"
    if error.validator == "format" and error.cause is not None:
        return str(error.cause), more
    if error.validator == "type":
        declared = schema.get("type")
        names = [declared] if isinstance(declared, str) else list(declared or [])
        wanted = " or ".join(TYPE_NAMES.get(t, t) for t in names)
        return f"must be {wanted}, not {describe(error.instance)}", more
    return error.message, more


def _missing(error: jsonschema.ValidationError) -> str:
    return error.message.split("'")[1] if "'" in error.message else error.message


_BARE_WORDS = frozenset({"null", "true", "false"})
_Comparison = tuple[str, tuple[str, ...], Any]
"""(operator, field path, literal)"""


@functools.lru_cache(maxsize=4096)
def _comparisons(expression: Expression) -> tuple[tuple[str, ...], tuple[_Comparison, ...]]:
    """What the checks below look at in an expression, found once per expression text: the bare
    ``null``/``true``/``false`` fields, and each comparison of a field path with a literal as
    (operator, field path, literal), both in the order of the syntax tree."""
    bare: list[str] = []
    compared: list[_Comparison] = []
    for node in walk(expression.ast):
        kind = node.get("type")
        if kind == "field" and node.get("value") in _BARE_WORDS:
            bare.append(node["value"])
        if kind != "comparator":
            continue
        left, right = node["children"]
        for field_node, other in ((left, right), (right, left)):
            chain = field_chain(field_node)
            if chain is None or len(chain) < 2 or other.get("type") != "literal":
                continue
            compared.append((node["value"], chain, other.get("value")))
    return tuple(bare), tuple(compared)


def _bare_literals(checker: _Checker, path: JSONPath, words: Iterable[str]) -> None:
    """``null``, ``true`` and ``false`` without backticks are field names in JMESPath, not literals."""
    for word in words:
        checker.report(
            path,
            "W503",
            f"{word} here is a field named {word!r}, not the literal (it reads as null)",
            f"write the literal in backticks: `{word}`",
        )


def _impossible_comparisons(
    checker: _Checker, path: JSONPath, expression: Expression, playbook: Playbook
) -> None:
    bare, compared = _comparisons(expression)
    _bare_literals(checker, path, bare)
    for op, chain, literal in compared:
        root, name = chain[:-1], chain[-1]
        if root not in _LABEL_ROOTS:
            if chain in {("alert", "status"), ("status",)} and isinstance(literal, str):
                _status_conflict(checker, path, playbook, op, literal)
            continue
        if op in _ORDERING:
            checker.report(
                path,
                "W501",
                f"{'.'.join(chain)} is compared with {_op(op)}, but label values are strings "
                "and JMESPath orders only numbers: this is never true",
                f"convert first: to_number({'.'.join(chain)}) {_op(op)} `{literal}`",
            )
        elif op == "eq" and literal is not None and not isinstance(literal, str):
            checker.report(
                path,
                "W501",
                f"{'.'.join(chain)} == {literal!r} is never true: label values are strings",
                f"compare with a string: {'.'.join(chain)} == '{literal}'",
            )
        elif (
            op == "eq"
            and name == "alertname"
            and "labels" in root
            and playbook.trigger.alertnames
            and literal not in playbook.trigger.alertnames
        ):
            checker.report(
                path,
                "W501",
                f"{'.'.join(chain)} == {literal!r} is never true: the trigger admits only "
                f"{', '.join(playbook.trigger.alertnames)}",
                "add the alert name to trigger.alertname or drop the comparison",
            )


def _status_conflict(checker: _Checker, path: JSONPath, playbook: Playbook, op: str, literal: str) -> None:
    status = playbook.trigger.status
    if status != "any" and op == "eq" and literal != status:
        checker.report(
            path,
            "W501",
            f"alert.status == {literal!r} is never true: the trigger admits only {status} alerts",
            "set trigger.status to any or resolved",
        )


def _op(op: str) -> str:
    return {"lt": "<", "gt": ">", "lte": "<=", "gte": ">=", "eq": "==", "ne": "!="}[op]


def check_ruleset(playbooks: Sequence[Playbook]) -> list[Diagnostic]:
    """Problems between playbooks: the same name in two places."""
    found: list[Diagnostic] = []
    first: dict[str, Playbook] = {}
    for playbook in playbooks:
        other = first.get(playbook.name)
        if other is None:
            first[playbook.name] = playbook
            continue
        line, column = playbook.source.position(("metadata", "name"))
        where = "{}:{}:{}".format(other.source.path, *other.source.position(("metadata", "name")))
        found.append(
            Diagnostic.make(
                playbook.source.path,
                line,
                column,
                "E306",
                f"playbook name {playbook.name!r} is already used at {where}",
                "playbook names must be unique across the ruleset; rename one",
            )
        )
    return found
