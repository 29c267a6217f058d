"""The document every playbook expression reads, built the same way for matching, simulate and runs.

Top-level keys, exactly as PRODUCT.md lists them:

``alert``
    ``{status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint}``; ``endsAt`` is null
    while the alert has no end.
``labels``, ``annotations``
    shortcuts for ``alert.labels`` and ``alert.annotations``.
``group``
    ``{receiver, groupKey, groupLabels, commonLabels, externalURL}`` of the Alertmanager notification,
    null when the alert came from a Prometheus alert list or a single alert.
``steps``
    ``{<step name>: {status, output, error}}`` of the steps that already ran; empty while matching.
``execution``
    ``{id, attempt}`` of the running execution; null while matching and in ``simulate``.
``playbook``
    ``{name, version}`` of the playbook being evaluated.
``vars``
    the playbook's ``vars``, their own templates rendered against the keys above.

A key that is missing is null (JMESPath semantics), so ``labels.team != 'x'`` is true for an alert
without a ``team`` label, and ``labels.team == 'x'`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kurative.alerts import Alert, AlertGroup
from kurative.matching.templates import render_value
from kurative.playbooks.models import Playbook

CONTEXT_KEYS = ("alert", "labels", "annotations", "group", "steps", "execution", "playbook", "vars")


def alert_context(alert: Alert, group: AlertGroup | None = None) -> dict[str, Any]:
    """The per-alert part of the context (no playbook yet, no steps, no execution)."""
    document = alert.document
    return {
        "alert": document,
        "labels": document["labels"],
        "annotations": document["annotations"],
        "group": group.document if group is not None else None,
        "steps": {},
        "execution": None,
    }


def playbook_context(
    base: Mapping[str, Any],
    playbook: Playbook,
    *,
    steps: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``base`` (from :func:`alert_context`) completed with ``playbook``, rendered ``vars`` and run state.

    Raises :class:`~kurative.errors.TemplateRenderError` naming the playbook when a var cannot render.
    """
    context = dict(base)
    context["playbook"] = {"name": playbook.name, "version": playbook.version}
    if steps is not None:
        context["steps"] = dict(steps)
    if execution is not None:
        context["execution"] = dict(execution)
    context["vars"] = {}
    if playbook.vars:
        context["vars"] = render_value(dict(playbook.vars), context, f"playbook {playbook.name!r} vars")
    return context


def build_context(
    alert: Alert,
    playbook: Playbook,
    group: AlertGroup | None = None,
    *,
    steps: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete context for one playbook and one alert."""
    return playbook_context(alert_context(alert, group), playbook, steps=steps, execution=execution)
