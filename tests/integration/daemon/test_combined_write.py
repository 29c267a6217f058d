"""A step's result is committed together with the next step's start (one ``record_steps`` call). When
that commit never happens after the action took effect (the process died, the journal was gone), the
journal shows exactly what a crash between the action and its own final record used to leave: the
step started and not finished. The next holder of the lease recovers it: an ``http.request`` is sent
again with the same Idempotency-Key, the step after it runs once, and the execution succeeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kurative.errors import JournalUnavailable
from kurative.journal import ExecutionState, Lease, StepFinish, StepStatus
from kurative.journal.backend import JournalBackend
from tests.integration.daemon.conftest import Setup, StartDaemon

pytestmark = pytest.mark.timeout(120)

TWO_STEPS = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: call-then-note, version: 1}
    spec:
      trigger: {alertname: [CallThenNote]}
      approval: auto
      steps:
        - name: call
          action: http.request
          params: {url: "SINK/first", json: {pod: "${labels.pod}"}}
        - name: note
          action: log
          params: {message: "called for ${labels.pod}"}
"""


async def test_a_result_whose_combined_commit_never_happened_is_recovered_like_a_crash(
    setup: Setup, start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.playbook("two", TWO_STEPS.replace("SINK", setup.sink.url))
    original = JournalBackend.record_steps
    refused: list[Any] = []

    async def lose_the_first_result(
        self: JournalBackend, lease: Lease, *, finished: Sequence[StepFinish] = (), **rest: Any
    ) -> Any:
        # the write that carries the call's first result (and the note's start) never commits
        if any(f.name == "call" and f.attempt == 1 for f in finished):
            refused.append((lease, rest.get("started")))
            raise JournalUnavailable("the journal went away (injected)")
        return await original(self, lease, finished=finished, **rest)

    monkeypatch.setattr(JournalBackend, "record_steps", lose_the_first_result)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "CallThenNote", "pod": "p1"}})
        (execution,) = await running.settle(1, within=60)
        detail = await running.journal.get_execution(execution.id)

    assert refused, "the combined write was never attempted"
    assert refused[0][1] is not None
    assert refused[0][1].name == "note"  # the next step's start rode along
    assert execution.state is ExecutionState.SUCCEEDED
    assert execution.attempt >= 2  # the lease expired and the execution was claimed again
    assert [(s.name, s.attempt, s.status) for s in detail.steps] == [
        ("call", 1, StepStatus.STARTED),  # the lost result: started, never finished
        ("call", 2, StepStatus.STARTED),  # recovery: an http.request is sent again
        ("call", 2, StepStatus.SUCCEEDED),
        ("note", 1, StepStatus.STARTED),  # the step after it ran once
        ("note", 1, StepStatus.SUCCEEDED),
    ]
    first = [r for r in setup.sink.requests if r.path == "/first"]
    assert [r.idempotency_key for r in first] == [f"{execution.id}/call"] * 2


async def test_a_combined_write_that_committed_although_its_caller_was_told_unavailable_goes_on(
    setup: Setup, start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``journal.timeout`` does when PostgreSQL's COMMIT answers late: the caller hears
    JournalUnavailable, the abandoned write commits anyway. The runner's retry finds its own records
    and the execution goes on (before: a conflict, and needs_review for a step that ran once)."""
    setup.playbook("two", TWO_STEPS.replace("SINK", setup.sink.url))
    original = JournalBackend.record_steps
    told: list[int] = []

    async def committed_then_unavailable(
        self: JournalBackend, lease: Lease, *, finished: Sequence[StepFinish] = (), **rest: Any
    ) -> Any:
        result = await original(self, lease, finished=finished, **rest)
        if any(f.name == "call" and f.attempt == 1 for f in finished) and not told:
            told.append(1)
            raise JournalUnavailable("no answer within 10s (journal.timeout)")
        return result

    monkeypatch.setattr(JournalBackend, "record_steps", committed_then_unavailable)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        await setup.post(client, {"labels": {"alertname": "CallThenNote", "pod": "p1"}})
        (execution,) = await running.settle(1, within=60)
        detail = await running.journal.get_execution(execution.id)
    assert told
    assert execution.state is ExecutionState.SUCCEEDED, execution.error
    assert len(setup.sink.requests) == 1
    assert sorted((s.name, s.status.value) for s in detail.steps) == sorted(
        [("call", "started"), ("call", "succeeded"), ("note", "started"), ("note", "succeeded")]
    )
