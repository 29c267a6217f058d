"""The registry of declared actions, filled by the family modules of this package at import."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterator

from kurative.actions.base import ActionFunc, ActionSpec
from kurative.errors import KurativeError

# Family modules, imported once on first use so that declarations and implementations live together.
_FAMILIES = ("kurative.actions.generic", "kurative.actions.kubernetes")

_SPECS: dict[str, ActionSpec] = {}
_loaded = False


def declare(spec: ActionSpec) -> ActionSpec:
    """Add a declaration; a name may be declared once."""
    if spec.name in _SPECS:
        raise KurativeError(f"action {spec.name} is declared twice")
    _SPECS[spec.name] = spec
    return spec


def implement(name: str) -> Callable[[ActionFunc], ActionFunc]:
    """Decorator attaching the implementation to an already declared action."""

    def attach(func: ActionFunc) -> ActionFunc:
        _SPECS[name] = dataclasses.replace(_SPECS[name], implementation=func)
        return func

    return attach


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _FAMILIES:
            importlib.import_module(module)


def get_action(name: str) -> ActionSpec | None:
    _load()
    return _SPECS.get(name)


def all_actions() -> Iterator[ActionSpec]:
    _load()
    yield from sorted(_SPECS.values(), key=lambda spec: spec.name)


def suggest_action(name: str) -> str | None:
    """The closest declared name, for a "did you mean" hint."""
    _load()
    candidates = list(_SPECS)
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not match and "." not in name:
        match = difflib.get_close_matches(f"kubernetes.{name}", candidates, n=1, cutoff=0.6)
    return match[0] if match else None
