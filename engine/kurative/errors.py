"""The one error tree of kurative.

Every error the engine raises on purpose derives from :class:`KurativeError`, so that the CLI and the
daemon can tell our own, explained failures (printed as one clear line) from bugs (logged with a
traceback). Subtrees group errors by who can act on them: the playbook author, the operator of the
journal, or the runner deciding whether to retry an action.
"""

from __future__ import annotations

from typing import Any


class KurativeError(Exception):
    """Root of every error kurative raises deliberately."""


class UsageError(KurativeError):
    """The command line or a config value is wrong; the CLI exits with status 2."""


class ConfigError(KurativeError):
    """The daemon configuration is invalid; ``diagnostics`` holds the positioned problems of the file."""

    def __init__(self, message: str, diagnostics: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class PlaybookError(KurativeError):
    """A playbook cannot be loaded or compiled; carries positioned diagnostics."""

    def __init__(self, message: str, diagnostics: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class AlertError(KurativeError):
    """An incoming alert payload is malformed."""


class ExpressionError(KurativeError):
    """A JMESPath expression or a template does not compile or cannot be evaluated."""


class TemplateRenderError(ExpressionError):
    """A template failed while rendering a step's params at run time."""


class JournalError(KurativeError):
    """The journal refused or failed an operation."""


class JournalUnavailable(JournalError):
    """The journal database cannot be reached; ingress answers 503 so that senders retry."""


class SchemaVersionError(JournalError):
    """The journal's schema is newer than this build knows, or not migrated yet."""


class JournalConflict(JournalError):
    """The operation does not fit the record's current state (not awaiting approval, finished twice)."""


class LeaseLost(JournalConflict):
    """This worker no longer holds the execution's lease: another replica took it over; stop working."""


class ExecutionNotFound(JournalError):
    """No execution (or alert) with that id is in the journal."""


class RecordRejected(JournalError):
    """A record was refused before reaching the database (too large, not JSON); nothing was written."""


class ActionError(KurativeError):
    """An action failed. Subclasses say whether retrying can help."""

    temporary: bool = False


class PermanentActionError(ActionError):
    """Retrying will not help: the object is invalid, forbidden, or the request makes no sense."""


class TemporaryActionError(ActionError):
    """Retrying after a delay may help (conflict, throttling, server error, timeout)."""

    temporary = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExpectationFailed(TemporaryActionError):
    """A check step's condition (``prometheus.query``'s ``expect``) did not hold.

    The step fails, so ``always`` steps and the execution's outcome show it. It is temporary because
    the condition may hold later (metrics lag the remediation by a scrape interval or more): a
    step's ``retry`` turns the check into polling; without one the step fails on the first miss.
    ``output`` is what the step saw (the result and ``ok: false``) for the journal.
    """

    def __init__(self, message: str, output: dict[str, Any]) -> None:
        super().__init__(message)
        self.output = output


class ObjectNotFound(PermanentActionError):
    """The object an action targets does not exist (HTTP 404 from the Kubernetes API)."""


class ObjectConflict(TemporaryActionError):
    """A write lost a race (HTTP 409: stale resourceVersion, uid precondition or already exists)."""


class ActionNotImplemented(PermanentActionError):
    """The action is declared in the catalogue but this build has no implementation for it."""


class GuardRefused(PermanentActionError):
    """A safety guard (protected namespace, scale bounds, caps) refused the action."""


class BreakerOpen(KurativeError):
    """A circuit breaker is open: fail fast, wait for its reset timeout, not a failed remediation."""

    def __init__(self, target: str, retry_after: float) -> None:
        super().__init__(f"circuit breaker for {target} is open; retrying in {retry_after:.1f}s")
        self.target = target
        self.retry_after = retry_after
