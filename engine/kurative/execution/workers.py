"""Workers: claim runnable executions from the journal and run them, within the concurrency bounds.

One claim loop per replica leases executions while it has free slots (``runner.workers``), runs each
in its own task, and waits for a wake-up (a new execution was created here) or the poll interval (work
another replica left, a delay that ended). Kubernetes steps also take a slot of their cluster
(``runner.perCluster``), so one slow API server cannot hold every worker. Stopping stops claiming at
once and gives running executions until the deadline to finish their current step; what is still
running then is cancelled, and its lease expires for recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

import structlog

from kurative.errors import JournalError
from kurative.execution.runner import ExecutionRunner
from kurative.execution.settings import RunnerSettings
from kurative.journal import Claim, ExecutionState, Journal

log = structlog.get_logger("kurative.execution")


def worker_identity() -> str:
    """Who holds a lease: host, process and a random suffix (a restarted process is someone else)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class ClusterSlots:
    """At most ``per_cluster`` Kubernetes steps at once against one cluster (None: the default one)."""

    def __init__(self, per_cluster: int) -> None:
        self._per_cluster = per_cluster
        self._slots: dict[str | None, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, cluster: str | None) -> AsyncIterator[None]:
        semaphore = self._slots.setdefault(cluster, asyncio.Semaphore(self._per_cluster))
        async with semaphore:
            yield


class WorkerPool:
    def __init__(
        self, journal: Journal, runner: ExecutionRunner, settings: RunnerSettings, owner: str | None = None
    ) -> None:
        self._journal = journal
        self._runner = runner
        self._settings = settings
        self.owner = owner or worker_identity()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[object]] = set()
        self._claiming = True
        self._no_claim = asyncio.Event()
        """Set while no claim is in flight: a claim :meth:`stop` began during has been handed back."""
        self._no_claim.set()

    @property
    def busy(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        """New work may be there: claim now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run until :meth:`stop`."""
        while self._claiming:
            free = self._settings.workers - len(self._running)
            claims: tuple[Claim, ...] = ()
            if free > 0:
                self._no_claim.clear()
                try:
                    claims = await self._journal.claim_executions(
                        self.owner, limit=free, lease_seconds=self._settings.lease_seconds
                    )
                except JournalError as exc:
                    log.warning("claim_failed", error=str(exc))
                finally:
                    stopping = self._stopping()
                    if stopping:  # stop() began meanwhile: nothing claimed starts here
                        await self._hand_back(claims)
                    self._no_claim.set()
                if stopping:
                    return
            for claim in claims:
                if claim.recovered:
                    log.info(
                        "execution_recovered",
                        execution_id=claim.execution.id,
                        previous_owner=claim.previous_owner,
                    )
                task: asyncio.Task[object] = asyncio.create_task(
                    self._runner.run(claim), name=f"execution-{claim.execution.id}"
                )
                self._running.add(task)
                task.add_done_callback(self._done)
            if len(claims) == free and free > 0:
                continue  # there may be more waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_interval):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[object]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("execution_task_crashed", task=task.get_name(), error=repr(task.exception()))
        self._wake.set()

    def _stopping(self) -> bool:
        return not self._claiming

    async def _hand_back(self, claims: tuple[Claim, ...]) -> None:
        """Release executions claimed as the pool stopped, untouched, for any replica to run. One taken
        over from a dead replica is not: its lease expires, and whoever claims it next looks at the
        step that replica left open (a release could cancel it, leaving that step unlooked at)."""
        for claim in claims:
            if claim.recovered:
                continue
            try:
                left = await self._journal.release_execution(
                    claim.lease, ExecutionState.PENDING, error="not started: its replica was stopping"
                )
            except JournalError as exc:  # its lease expires, and recovery finds it as it was
                log.warning("claim_not_handed_back", execution_id=claim.execution.id, error=str(exc))
            else:
                self._runner.released(claim.execution.playbook_name, left.state)

    async def stop(self, deadline: float) -> None:
        """Stop claiming (what a claim in flight returns is handed back); wait up to ``deadline``
        seconds for running executions, then cancel them."""
        self._claiming = False
        self._wake.set()
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline  # one deadline for the claim in flight and the executions
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await self._no_claim.wait()
        if not self._running:
            return
        log.info("waiting_for_executions", running=len(self._running), deadline=deadline)
        _, pending = await asyncio.wait(set(self._running), timeout=max(0.0, ends - loop.time()))
        for task in pending:
            task.cancel()
        if pending:
            log.warning("executions_interrupted", count=len(pending))
            await asyncio.wait(pending, timeout=5)
