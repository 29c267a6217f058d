"""``kurative serve`` as a process, killed with SIGKILL at the worst moments and started again.

Every acknowledged alert is handled exactly once: a finished step never runs again, an interrupted
idempotent step runs again, an interrupted webhook is sent again with the same Idempotency-Key (the
receiver's way to recognise a repeat), and alerts committed but not matched before the kill are
matched after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kurative.alerts import parse_notification
from kurative.journal import ExecutionState, StepStatus, open_journal
from kurative.journal.inbox import inbox_record
from tests.integration.daemon.conftest import TOKEN, Setup, alert_payload

pytestmark = pytest.mark.timeout(180)

SLOW = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {name: slow, version: 1}
    spec:
      trigger: {alertname: [Slow]}
      approval: auto
      steps:
        - name: before
          action: http.request
          params: {url: "${vars.sink}/before", json: {pod: "${labels.pod}"}}
        - name: wait
          action: sleep
          params: {duration: 4s}
        - name: slow-hook
          action: http.request
          params: {url: "${vars.sink}/slow", json: {pod: "${labels.pod}"}, timeout: 30s}
        - name: after
          action: http.request
          params: {url: "${vars.sink}/after", json: {pod: "${labels.pod}"}}
      vars: {sink: "SINK"}
"""


class Serve:
    """One ``kurative serve`` process; stopped by its PID."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kurative.cli", "serve", "--config", str(self.config)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def serve(setup: Setup, tmp_path: Path) -> Iterator[tuple[Serve, str]]:
    setup.playbook("slow", SLOW.replace("SINK", setup.sink.url))
    config = setup.config()
    import json

    port = json.loads(config.read_text())["listen"]["port"]
    process = Serve(config, setup.env, tmp_path / "serve.log")
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()


async def ready(url: str, within: float = 60.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"kurative serve at {url} did not get ready")


async def post(url: str, *pods: str) -> None:
    alerts = [{"labels": {"alertname": "Slow", "pod": pod}} for pod in pods]
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answer = await client.post(f"{url}/api/v1/alerts", json=alert_payload(*alerts))
        assert answer.status_code == 200, answer.text


async def wait_for(probe, within: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_kill_during_a_slow_step_and_during_a_webhook_repeats_nothing_unsafe(
    setup: Setup, serve: tuple[Serve, str]
) -> None:
    process, url = serve
    setup.sink.answer(200, delay=3.0, path="/slow", times=2)  # both first slow hooks are cut by the kill
    process.start()
    await ready(url)
    await post(url, "p1", "p2")
    journal = await open_journal(setup.journal_url)
    try:

        async def sleeping() -> bool:
            page = await journal.list_executions(limit=10)
            details = [await journal.get_execution(e.id) for e in page.items]
            return len(details) == 2 and all(
                any(s.name == "wait" and s.status is StepStatus.STARTED for s in d.steps) for d in details
            )

        await wait_for(sleeping)
        process.kill()  # 1: in the middle of the sleep
        process.start()
        await ready(url)
        setup.sink.wait_for_requests(4, timeout=60)  # 2 x before, 2 x slow (hanging 3 s)
        process.kill()  # 2: while the slow webhook waits for its answer
        process.start()
        await ready(url)

        async def finished() -> list:  # type: ignore[type-arg]
            items = (await journal.list_executions(limit=10)).items
            return list(items) if len(items) == 2 and all(e.state.finished for e in items) else []

        executions = await wait_for(finished, within=90)
    finally:
        await journal.close()
    assert process.terminate() == 0
    assert {e.state for e in executions} == {ExecutionState.SUCCEEDED}
    by_path: dict[str, list[str | None]] = {}
    for request in setup.sink.requests:
        by_path.setdefault(request.path, []).append(request.idempotency_key)
    keys = {e.id for e in executions}
    # finished before the kills: sent once per execution
    assert sorted(by_path["/before"]) == sorted(f"{k}/before" for k in keys)
    assert sorted(by_path["/after"]) == sorted(f"{k}/after" for k in keys)
    # interrupted once: sent again, with the same key each time
    slow = by_path["/slow"]
    assert set(slow) == {f"{k}/slow-hook" for k in keys}
    assert len(slow) >= 3
    # three processes' logs, and the bearer token the ingress compared is in none of them
    log = process.log.read_text(errors="replace")
    assert log.count('"event": "ready"') == 3
    assert TOKEN not in log


async def test_alerts_committed_but_not_matched_before_a_kill_are_matched_after(
    setup: Setup, serve: tuple[Serve, str]
) -> None:
    process, url = serve
    # As the ingress leaves them when the process dies right after its 200: committed, unmatched.
    journal = await open_journal(setup.journal_url, migrate=True)
    try:
        notification = parse_notification(alert_payload({"labels": {"alertname": "Slow", "pod": "late"}}))
        await journal.commit_alerts(
            [inbox_record(a, "alertmanager", notification.group) for a in notification.alerts]
        )
        assert len(await journal.unmatched_alerts()) == 1
        process.start()
        await ready(url)

        async def matched() -> bool:
            return not await journal.unmatched_alerts() and bool((await journal.list_executions()).items)

        await wait_for(matched)
        # and a real post followed by an immediate kill: matched by the next start, never twice
        await post(url, "raced")
        process.kill()
        process.start()
        await ready(url)

        async def both() -> list:  # type: ignore[type-arg]
            items = (await journal.list_executions(limit=10)).items
            return list(items) if len(items) == 2 and not await journal.unmatched_alerts() else []

        executions = await wait_for(both, within=90)
        assert len({e.alert_fingerprint for e in executions}) == 2
    finally:
        await journal.close()
        process.terminate()
