"""The daemon's lifecycle: start every part in order, run them as named guarded tasks, stop in order.

``kurative serve`` builds :class:`Daemon` from the settings and runs it; tests run it in-process and
stop it with :meth:`Daemon.request_stop`. Start: secrets for the credentials, the journal (waiting for
it with backoff), the playbooks (recorded in the journal's ruleset history), the adapters, the ingress
socket; then one task group runs the ingress server, the matcher, the workers, the reloader (a watched
change or SIGHUP checks the playbook files again and swaps the ruleset: execution/reloading.py) and
the pruner. A task
that crashes is logged and stops the daemon (in-flight work is recovered on the next start). Stop:
``/readyz`` answers 503 at once, the ingress stops accepting and finishes what it has, the matcher
stops, running executions get ``runner.shutdownTimeout`` to finish their step, leases are released,
and the journal is closed last so that every commit is flushed.

The official Kubernetes client takes long to import, so the daemon builds the Kubernetes adapter on
the first step or secret that needs a cluster; a daemon without Kubernetes configuration says so once
at start, and its Kubernetes steps fail with that message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from kurative import __version__
from kurative.adapters.breaking import call_through
from kurative.adapters.http import HttpAdapter
from kurative.adapters.kube_settings import KubeSettings, missing_config
from kurative.adapters.prometheus import PrometheusAdapter
from kurative.adapters.secrets import SecretStore
from kurative.config import Settings
from kurative.diagnostics import Severity
from kurative.errors import ConfigError, JournalUnavailable, KurativeError
from kurative.execution.approvals import ApprovalTimer
from kurative.execution.breakers import BreakerPolicy
from kurative.execution.matcher import ActiveRuleset, Matcher
from kurative.execution.recent import RecentAlerts
from kurative.execution.reloading import LiveRules, Reloader
from kurative.execution.runner import ExecutionRunner, PlaybookCache
from kurative.execution.services import Services
from kurative.execution.workers import ClusterSlots, WorkerPool
from kurative.ingress.api import ApiHooks, PlaybooksView
from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.server import IngressServer, bind
from kurative.ingress.settings import Credentials
from kurative.journal import (
    ExecutionState,
    IncomingAlert,
    Journal,
    open_journal,
    prune_periodically,
    url_secrets,
)
from kurative.journal.metered import metered
from kurative.logging import Redactor
from kurative.metrics import Metrics, Sources

log = structlog.get_logger("kurative.daemon")

READY_PROBE_TIMEOUT = 2.0
APPROVAL_CHECK_SECONDS = 1.0
"""Overdue approval steps are looked for at most this often (and at the poll interval if longer)."""


class LazyKubernetes:
    """The Kubernetes adapter, imported and built on first use; ``client(cluster)`` as the adapter's."""

    def __init__(self, settings: KubeSettings, breakers: BreakerPolicy) -> None:
        self._settings = settings
        self._breakers = breakers
        self._adapter: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:  # the start-up check (a thread) and the first step may both get here
            if self._adapter is None:
                from kurative.adapters.kubernetes import KubernetesAdapter

                self._adapter = KubernetesAdapter(self._settings, breakers=self._breakers.for_target)
            return self._adapter

    def client(self, cluster: str | None) -> Any:
        return self._get().client(cluster)

    def configured(self) -> str | None:
        """None when the default cluster can be reached in principle, else why not. Without a
        configuration to load, that is said without importing the client."""
        missing = missing_config(self._settings, self._settings.default_context)
        if missing is not None:
            return missing
        from kurative.adapters.kubernetes import ClusterConfigError

        try:
            self.client(None)
        except ClusterConfigError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        with self._lock:
            if self._adapter is not None:
                self._adapter.close()


def playbooks_view(rules: LiveRules) -> PlaybooksView:
    """What ``GET /api/v1/playbooks`` shows: the playbooks in force, the refused versions, and every
    problem in the files as last checked."""
    last = rules.last
    return PlaybooksView(
        ruleset=rules.active.version if rules.active else "",
        loaded_at=last.at if last else datetime.now(UTC),
        playbooks=rules.playbooks(),
        problems=rules.problems(),
        reloaded=last is None or (last.errors == 0 and not last.refused),
    )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        redactor: Redactor | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._environ = os.environ if environ is None else environ
        self.redactor = redactor or Redactor()
        self.url: str | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._active: ActiveRuleset | None = None
        self._reloader: Reloader | None = None
        self._rules: LiveRules | None = None
        self._journal: Journal | None = None
        self.ready = asyncio.Event()
        self.metrics = Metrics()
        """What ``/metrics`` serves."""
        self.crashed: list[str] = []
        """The tasks that crashed (each stops the daemon): ``kurative serve`` then exits non-zero."""

    def request_reload(self, trigger: str = "sighup") -> None:
        """Check the playbook files again (SIGHUP); a no-op before the playbooks are first loaded."""
        if self._reloader is not None:
            self._reloader.request(trigger)

    @property
    def ruleset(self) -> ActiveRuleset | None:
        """The ruleset the matcher uses now."""
        return self._active

    def _swap_ruleset(self, active: ActiveRuleset) -> None:
        self._active = active

    async def _reload_now(self, rules: LiveRules) -> PlaybooksView:
        """``POST /api/v1/reload``: check the files now and answer with what is in force after."""
        assert self._reloader is not None
        await self._reloader.reload("api", retry=False)
        return playbooks_view(rules)

    def request_stop(self) -> None:
        """Begin the ordered shutdown (SIGTERM, SIGINT, a crashed task, a test)."""
        if not self._stopping:
            log.info("shutdown_requested")
        self._stopping = True
        self._stop.set()

    # -- start ----------------------------------------------------------------------------------------

    async def _credentials(self, secrets: SecretStore) -> Credentials:
        auth = self.settings.auth
        try:
            tokens = [(await secrets.resolve(name)).reveal() for name in auth.bearer_tokens]
            basic = [(user, (await secrets.resolve(ref)).reveal()) for user, ref in auth.basic]
        except KurativeError as exc:
            raise ConfigError(f"auth: {exc}") from None
        for value in (*tokens, *(password for _, password in basic)):
            self.redactor.add(value)
        return Credentials(tuple(tokens), tuple(basic), auth.bearer_names)

    def _commit(self, journal: Journal, breakers: BreakerPolicy) -> Callable[
        [Sequence[IncomingAlert]], Awaitable[tuple[str, ...]]
    ]:  # fmt: skip
        """Commits through the journal's breaker: only an unreachable database counts against it."""
        breaker = breakers.for_target("journal")

        async def commit(records: Sequence[IncomingAlert]) -> tuple[str, ...]:
            async def attempt() -> tuple[tuple[str, ...], KurativeError | None]:
                try:
                    return await journal.commit_alerts(records), None
                except JournalUnavailable:
                    raise
                except KurativeError as exc:
                    return (), exc

            ids, refused = await call_through(breaker, attempt, target="journal")
            if refused is not None:
                raise refused
            return ids

        return commit

    async def _count_backlog(self, journal: Journal) -> None:
        """Before a scrape: the journal's backlog gauges (the last values stay if it cannot say)."""
        try:
            async with asyncio.timeout(READY_PROBE_TIMEOUT):
                counts = await journal.count_unfinished()
        except (KurativeError, TimeoutError):
            return
        self.metrics.executions_awaiting_approval.set(counts[ExecutionState.AWAITING_APPROVAL])
        self.metrics.executions_pending.set(counts[ExecutionState.PENDING])

    async def _readiness(self) -> list[str]:
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        if self._active is None:
            reasons.append("no ruleset loaded")
        if self._rules is not None and self._rules.absent():  # the paths are in the E001 log lines
            reasons.append("no rules path exists: alerts wait unmatched")
        if self._journal is not None:
            try:
                async with asyncio.timeout(READY_PROBE_TIMEOUT):
                    await self._journal.now()
            except (KurativeError, TimeoutError) as exc:
                # /readyz needs no credentials: the reason, not the database's words
                reasons.append(f"journal unreachable ({type(exc).__name__})")
        return reasons

    async def _guard(self, name: str, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task_crashed", task=name)
            self.crashed.append(f"{name}: {type(exc).__name__}: {exc}")
            self.request_stop()

    # -- run ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start, serve until :meth:`request_stop`, stop in order."""
        settings = self.settings
        log.info("starting", version=__version__, config=settings.source, dry_run=settings.runner.dry_run)
        metrics = self.metrics
        breakers = BreakerPolicy(settings.breakers, changed=metrics.breaker_changed)
        kubernetes = LazyKubernetes(settings.kubernetes, breakers)
        secrets = SecretStore(
            settings.secrets,
            kubernetes=kubernetes,  # type: ignore[arg-type]
            environ=self._environ,
            resolved=self.redactor.add,  # whatever a step resolves never reaches a log line
        )
        for value in url_secrets(settings.journal.url):
            self.redactor.add(value)
        listen = replace(settings.listen, credentials=await self._credentials(secrets))
        listen.check()
        if not listen.credentials:
            log.warning("no_credentials", hint="anyone on this host can post alerts; configure auth")
        # An embedded SQLite journal belongs to this one process: bring its schema up to date itself.
        embedded = settings.journal.url.lower().startswith("sqlite:")
        opened = await open_journal(
            settings.journal.url,
            migrate=settings.journal.migrate or embedded,
            wait=settings.journal.wait_seconds,
            limits=settings.journal.limits,
            timeout=settings.journal.timeout_seconds,
        )
        journal = metered(opened, metrics)
        self._journal = journal
        http = HttpAdapter(breakers=breakers.for_target)
        prometheus = PrometheusAdapter(settings.prometheus, breakers=breakers.for_target)
        try:
            cache = PlaybookCache(journal)
            rules = LiveRules(settings.rules.paths, journal, cache, swapped=self._swap_ruleset)
            await rules.reload("start")
            self._rules = rules
            self._reloader = Reloader(rules, watch=settings.rules.watch, metrics=metrics)
            metrics.observe(
                Sources(
                    breakers=breakers.snapshot,
                    playbooks_loaded=lambda: len(self._active.ruleset) if self._active else 0,
                    playbook_errors=lambda: sum(d.severity is Severity.ERROR for d in rules.problems()),
                )
            )
            services = Services(
                kubernetes=kubernetes,
                guards=settings.guards,
                http=http,
                prometheus=prometheus,
                secrets=secrets,
            )
            slots = ClusterSlots(settings.runner.per_cluster)
            recent = RecentAlerts()
            runner = ExecutionRunner(journal, services, settings.runner, cache, slots.slot, recent, metrics)
            workers = WorkerPool(journal, runner, settings.runner)
            matcher = Matcher(
                journal,
                lambda: None if rules.absent() else self._active,
                dry_run=settings.runner.dry_run,
                poll_interval=settings.runner.poll_interval,
                created=workers.wake,
                recent=recent,
                metrics=metrics,
            )
            api = ApiHooks(
                journal=journal,
                playbooks=lambda: playbooks_view(rules),
                breakers=breakers.snapshot,
                reload=lambda: self._reload_now(rules),
                decided=workers.wake,
            )
            hooks = IngressHooks(
                commit=self._commit(journal, breakers),
                readiness=self._readiness,
                committed=matcher.wake,
                api=api,
                metrics=metrics,
                scraped=lambda: self._count_backlog(journal),
            )
            server = IngressServer(create_app(listen, hooks), listen, bind(listen))
            self.url = server.url
            await self._serve(journal, server, matcher, workers, kubernetes)
        finally:
            await http.aclose()
            await prometheus.aclose()
            kubernetes.close()
            await journal.close()
            self._journal = None
            log.info("stopped")

    async def _serve(
        self,
        journal: Journal,
        server: IngressServer,
        matcher: Matcher,
        workers: WorkerPool,
        kubernetes: LazyKubernetes,
    ) -> None:
        settings = self.settings
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._guard("ingress", server.serve()), name="ingress")
            tasks.create_task(self._guard("matcher", matcher.run()), name="matcher")
            tasks.create_task(self._guard("workers", workers.run()), name="workers")
            if self._reloader is not None:
                reloading = self._reloader.run(self._stop)
                tasks.create_task(self._guard("reloader", reloading), name="reloader")
            timer = ApprovalTimer(
                journal,
                every=max(APPROVAL_CHECK_SECONDS, settings.runner.poll_interval),
                expired=workers.wake,
            )
            tasks.create_task(self._guard("approvals", timer.run()), name="approvals")
            pruner = tasks.create_task(
                self._guard(
                    "pruner",
                    prune_periodically(
                        journal,
                        older_than=settings.journal.retention_seconds,
                        on_report=lambda report: log.info("journal_pruned", **dataclasses.asdict(report)),
                        on_error=lambda exc: log.warning("journal_prune_failed", error=str(exc)),
                    ),
                ),
                name="pruner",
            )
            if await server.wait_started(self._stop):
                log.info("ready", url=self.url, owner=workers.owner, pid=os.getpid())
                self.ready.set()
            checking = asyncio.create_task(asyncio.to_thread(self._check_kubernetes, kubernetes))
            await self._stop.wait()
            # Ordered shutdown: stop taking alerts, stop matching, let steps finish, release leases.
            server.stop()
            matcher.stop()
            timer.stop()
            await workers.stop(settings.runner.shutdown_timeout)
            pruner.cancel()
            await asyncio.wait([checking], timeout=5)  # a hanging credential plugin must not hold the stop

    def _check_kubernetes(self, kubernetes: LazyKubernetes) -> None:
        uses = any(
            step.action.startswith("kubernetes.")
            for compiled in (self._active.ruleset.playbooks if self._active else ())
            for step in compiled.playbook.steps
        )
        if not uses:
            return
        problem = kubernetes.configured()
        if problem is not None:
            log.warning("kubernetes_not_configured", reason=problem, effect="Kubernetes steps will fail")
