"""From a match to a plan: the dedupe key, the limit keys and the rendered steps of one execution.

This is what ``kurative simulate`` prints and ``kurative test`` compares, and what the runner starts
from. Rendering follows the template rules of :mod:`kurative.matching.templates`; a param whose template
reads ``steps`` or ``execution`` cannot be known before the execution runs, so a plan keeps it as
written and lists it in :attr:`RenderedStep.deferred`. A render error names the playbook, the step and
the param, because that is what the author has to open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kurative.actions.base import Risk
from kurative.actions.registry import get_action
from kurative.alerts import Alert, AlertGroup, clean_text
from kurative.errors import ExpressionError, TemplateRenderError
from kurative.journal.encoding import DEFAULT_LIMITS
from kurative.matching.compiler import Closure, compile_closure, root_fields
from kurative.matching.context import alert_context, playbook_context
from kurative.matching.ruleset import EVALUATION_ERRORS, CompiledPlaybook, Ruleset
from kurative.matching.templates import Placeholder, parse_template, to_text
from kurative.playbooks.models import Playbook, Step

MAX_KEY_CHARS = DEFAULT_LIMITS.max_text_chars
"""The longest dedupe or limit key the journal takes."""

# Context keys that only exist once an execution runs.
RUNTIME_KEYS = frozenset({"steps", "execution", "@"})


@dataclass(frozen=True, slots=True)
class RenderedStep:
    """One step with its params rendered; ``deferred`` lists params kept as written (dotted paths)."""

    name: str
    action: str
    params: Mapping[str, Any]
    deferred: tuple[str, ...] = ()
    when: str | None = None
    cluster: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "action": self.action, "params": self.params}
        if self.deferred:
            out["deferred"] = list(self.deferred)
        if self.when is not None:
            out["when"] = self.when
        if self.cluster is not None:
            out["cluster"] = self.cluster
        return out


@dataclass(frozen=True, slots=True)
class LimitKey:
    """The value of one ``limits[i].key`` for this alert: executions are counted per (limit, value)."""

    limit: str
    value: str
    max: int
    per: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What one matched playbook would do for one alert."""

    playbook: Playbook
    alert: Alert
    dedupe_key: str
    dedupe_window: float | None
    limit_keys: tuple[LimitKey, ...]
    steps: tuple[RenderedStep, ...]
    reason: str = ""
    group: AlertGroup | None = field(default=None, compare=False)


def default_dedupe_key(alert: Alert) -> str:
    """One execution per firing episode: fingerprint and start; a resolved notification is its own."""
    starts = alert.document["startsAt"] or ""
    key = f"{alert.fingerprint}@{starts}"
    return key + "/resolved" if alert.status == "resolved" else key


def _stored_key(compiled: CompiledPlaybook, what: str, source: str, text: str, *, empty: bool) -> str:
    """A rendered key as the journal keeps it: NUL and lone surrogates (a JMESPath literal can make
    one) as U+FFFD, as the journal stores alert text; an empty dedupe key or one over the journal's
    length for keys is refused, so that ``simulate``, ``test`` and the daemon agree on every key."""
    key = clean_text(text).replace("\x00", "\ufffd")
    if not key and not empty:
        raise TemplateRenderError(f"playbook {compiled.name!r}: {what} `{source}` rendered an empty key")
    if len(key) > MAX_KEY_CHARS:
        raise TemplateRenderError(
            f"playbook {compiled.name!r}: {what} `{source}` rendered {len(key)} characters, over the "
            f"journal's limit of {MAX_KEY_CHARS} for a key"
        )
    return key


def compute_dedupe_key(compiled: CompiledPlaybook, alert: Alert, context: Mapping[str, Any]) -> str:
    """``dedupe.key`` rendered as text for this alert, or the default key."""
    if compiled.dedupe_closure is None or compiled.dedupe_key is None:
        return default_dedupe_key(alert)
    source = compiled.dedupe_key.source
    try:
        text = to_text(compiled.dedupe_closure(context))
    except EVALUATION_ERRORS as exc:
        failed = f"playbook {compiled.name!r}: dedupe.key `{source}` failed: {exc}"
        raise TemplateRenderError(failed) from None
    return _stored_key(compiled, "dedupe.key", source, text, empty=False)


def compute_limit_keys(compiled: CompiledPlaybook, context: Mapping[str, Any]) -> tuple[LimitKey, ...]:
    keys: list[LimitKey] = []
    for limit, (expression, closure) in zip(compiled.playbook.limits, compiled.limit_keys, strict=True):
        if len(expression.source) > MAX_KEY_CHARS or "\x00" in expression.source:  # lint: E104
            raise TemplateRenderError(
                f"playbook {compiled.name!r}: a limits key expression names the limit in the journal, "
                f"which takes at most {MAX_KEY_CHARS} characters without NUL"
            )
        try:
            value = to_text(closure(context))
        except EVALUATION_ERRORS as exc:
            raise TemplateRenderError(
                f"playbook {compiled.name!r}: limits key `{expression.source}` failed: {exc}"
            ) from None
        value = _stored_key(compiled, "limits key", expression.source, value, empty=True)
        keys.append(LimitKey(expression.source, value, limit.max, limit.per))
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class _CompiledTemplate:
    """A param template with closures for its placeholders; renders as Template.render does."""

    parts: tuple[str | Closure, ...]
    single: bool
    roots: frozenset[str]

    def render(self, context: Mapping[str, Any]) -> Any:
        if self.single:
            only = self.parts[0]
            assert not isinstance(only, str)
            return only(context)
        return "".join(part if isinstance(part, str) else to_text(part(context)) for part in self.parts)


@lru_cache(maxsize=4096)
def _template(text: str) -> _CompiledTemplate:
    """A param's template compiled once per distinct text, not once per alert."""
    template = parse_template(text)
    roots: frozenset[str] = frozenset()
    parts: list[str | Closure] = []
    for part in template.parts:
        if isinstance(part, Placeholder):
            roots |= root_fields(part.expression.ast)
            parts.append(compile_closure(part.expression.ast))
        else:
            parts.append(part)
    return _CompiledTemplate(tuple(parts), template.is_single, roots)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _render(
    value: Any,
    context: Mapping[str, Any],
    path: tuple[str | int, ...],
    where: str,
    defer: frozenset[str],
    deferred: list[str],
) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value
        try:
            template = _template(value)
        except ExpressionError as exc:
            raise TemplateRenderError(f"{where}, param {_dotted(path)!r}: {exc}") from None
        if template.roots & defer:
            deferred.append(_dotted(path))
            return value
        try:
            return template.render(context)
        except EVALUATION_ERRORS as exc:
            raise TemplateRenderError(
                f"{where}, param {_dotted(path)!r}: cannot render {value!r}: {exc}"
            ) from None
    if isinstance(value, Mapping):
        return {k: _render(v, context, (*path, k), where, defer, deferred) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, context, (*path, i), where, defer, deferred) for i, v in enumerate(value)]
    return value


def render_step(
    playbook: Playbook, step: Step, context: Mapping[str, Any], *, defer: frozenset[str] = frozenset()
) -> RenderedStep:
    """Render one step's params (and ``cluster``) against ``context``.

    With ``defer``, a param whose template reads one of those context keys stays as written.
    Raises :class:`TemplateRenderError` naming playbook, step and param.
    """
    where = f"playbook {playbook.name!r}, step {step.name!r}"
    deferred: list[str] = []
    params = _render(dict(step.params), context, (), where, defer, deferred)
    cluster = _render(step.cluster, context, ("cluster",), where, defer, deferred) if step.cluster else None
    return RenderedStep(step.name, step.action, params, tuple(deferred), step.when, cluster)


def plan_for(
    compiled: CompiledPlaybook, alert: Alert, group: AlertGroup | None = None, reason: str = ""
) -> Plan:
    """The plan of one matched playbook, as ``simulate`` shows it (runtime-only params deferred)."""
    context = playbook_context(alert_context(alert, group), compiled.playbook)
    playbook = compiled.playbook
    return Plan(
        playbook=playbook,
        alert=alert,
        dedupe_key=compute_dedupe_key(compiled, alert, context),
        dedupe_window=playbook.dedupe.window,
        limit_keys=compute_limit_keys(compiled, context),
        steps=tuple(render_step(playbook, step, context, defer=RUNTIME_KEYS) for step in playbook.steps),
        reason=reason,
        group=group,
    )


def plan(ruleset: Ruleset, alert: Alert, group: AlertGroup | None = None) -> tuple[Plan, ...]:
    """Plans for every playbook ``alert`` starts, in run order."""
    return tuple(plan_for(compiled, alert, group) for compiled in ruleset.match(alert, group))


def needs_approval(playbook: Playbook) -> bool:
    """``approval: required``, or by default any high-risk step; ``approval: auto`` never waits."""
    if playbook.approval is not None:
        return playbook.approval == "required"
    for step in playbook.steps:
        spec = get_action(step.action)
        if spec is not None and spec.risk is Risk.HIGH:
            return True
    return False
