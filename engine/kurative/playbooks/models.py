"""The playbook model: what a validated playbook file becomes.

Models are frozen and slotted so that a ruleset snapshot can be shared by every task without locks.
``params`` and ``vars`` stay plain JSON values (dict, list, str, int, float, bool, None) because they
are templates rendered per alert; nothing in them is ever executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

TriggerStatus = Literal["firing", "resolved", "any"]
Approval = Literal["auto", "required"]
JSONPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """Where a playbook came from, with the position of every node for positioned errors."""

    path: str
    document: int = 0
    line: int = 1
    column: int = 1
    positions: Mapping[JSONPath, tuple[int, int]] = field(default_factory=dict, repr=False)
    # Block scalars (| and >): first content line, its indentation and the length of each content line.
    blocks: Mapping[JSONPath, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict, repr=False)

    def position(self, path: JSONPath) -> tuple[int, int]:
        """1-based (line, column) of the node at ``path``, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            found = self.positions.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.positions.get((), (self.line, self.column))

    def locate(self, path: JSONPath, text: str, offset: int) -> tuple[int, int]:
        """1-based position of character ``offset`` of the string ``text`` stored at ``path``."""
        block = self.blocks.get(tuple(path))
        if block is not None:
            line, indent, lengths = block
            for length in lengths:
                if offset <= length:
                    return line, indent + offset + 1
                offset -= length + 1  # the line break, kept (|) or folded into a space (>)
                line += 1
            return line, indent + 1
        line, column = self.position(path)
        before = text[:offset]
        if "\n" in before:
            return line + before.count("\n"), len(before) - before.rfind("\n")
        return line, column + offset


@dataclass(frozen=True, slots=True)
class Trigger:
    alertnames: tuple[str, ...] = ()
    status: TriggerStatus = "firing"
    when: str | None = None


@dataclass(frozen=True, slots=True)
class Dedupe:
    """``key`` is a JMESPath expression (None: the alert's firing episode); ``window`` is in seconds
    (None: a key runs once — with a custom key, a later episode with the same key is a duplicate)."""

    key: str | None = None
    window: float | None = None


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max`` executions per value of ``key`` within ``per`` seconds."""

    key: str
    max: int
    per: float


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 1
    backoff: float = 1.0


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)
    when: str | None = None
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    always: bool = False
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    version: int
    steps: tuple[Step, ...]
    trigger: Trigger = field(default_factory=Trigger)
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    stop: bool = False
    dedupe: Dedupe = field(default_factory=Dedupe)
    limits: tuple[Limit, ...] = ()
    approval: Approval | None = None
    dry_run: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    body: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    source: Source = field(default_factory=lambda: Source("<memory>"), compare=False)

    def step(self, name: str) -> Step | None:
        for step in self.steps:
            if step.name == name:
                return step
        return None
