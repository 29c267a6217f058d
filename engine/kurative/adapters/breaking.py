"""Running async adapter calls through a pybreaker circuit breaker.

pybreaker 1.x keeps the breaker's state machine (closed, open, half-open, counters, listeners) but
its own async support is Tornado's (``call_async`` wraps a ``tornado.gen`` coroutine); handing an
asyncio coroutine function to ``CircuitBreaker.call`` returns the coroutine unawaited and counts a
success before anything ran. :func:`call_through` therefore keeps pybreaker's state machine and drives
it in three steps: admit the call (fail fast while open, move to half-open once the reset timeout has
passed, one trial call at a time while half-open), await the call outside the breaker's lock, then
report the outcome to the state the breaker is in now (through ``CircuitBreaker.call``, so counters,
listeners and transitions stay pybreaker's).

The guarded function raises for what is a failure of the target (refused connection, timeout, 5xx);
anything the target answered properly (a 4xx included) is a return value, so it counts as a success.
A cancelled call counts as neither. Breakers are injected by whoever owns the policy (the daemon's
:mod:`kurative.execution.breakers`); adapters never build their own policy.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

import pybreaker

from kurative.errors import BreakerOpen

T = TypeVar("T")

STATE_OPEN = "open"
STATE_HALF_OPEN = "half-open"
STATE_CLOSED = "closed"

_admitting = threading.Lock()
"""Admission is a check and a transition: calls from several threads must not both move a breaker."""
_probing: set[pybreaker.CircuitBreaker] = set()
"""Half-open breakers whose one trial call is in flight (guarded by ``_admitting``)."""


def seconds_to_half_open(breaker: pybreaker.CircuitBreaker) -> float:
    """Seconds left until an open ``breaker`` lets a trial call through (0 when not open)."""
    if breaker.current_state != STATE_OPEN:
        return 0.0
    reset = float(breaker.reset_timeout)
    opened: datetime.datetime | None = getattr(getattr(breaker, "_state_storage", None), "opened_at", None)
    if opened is None:
        return reset
    if opened.tzinfo is None:
        opened = opened.replace(tzinfo=datetime.UTC)
    elapsed = (datetime.datetime.now(datetime.UTC) - opened).total_seconds()
    return max(0.0, reset - elapsed)


def breaker_open(breaker: pybreaker.CircuitBreaker, target: str | None = None) -> BreakerOpen:
    """The fail-fast error for ``breaker``, naming its target and the time left until the probe."""
    # Never 0: a caller sleeping retry_after must not spin while the probe is being decided.
    return BreakerOpen(target or str(breaker.name), max(0.1, seconds_to_half_open(breaker)))


def _admit(breaker: pybreaker.CircuitBreaker, target: str | None) -> bool:
    """Fail fast while open; once the reset timeout passed, move to half-open (one pybreaker step)
    and let this call be the probe. While a probe is in flight every other call fails fast too, as
    pybreaker's own lock would make it wait: a hanging target gets one trial call, not one per
    waiting caller (each of whose failures would count against its step). True: this is the probe.
    """
    if breaker.current_state == STATE_CLOSED:
        return False
    with _admitting:
        state = breaker.current_state
        if state == STATE_OPEN:
            if seconds_to_half_open(breaker) > 0:
                raise breaker_open(breaker, target)
            breaker.half_open()
        elif state != STATE_HALF_OPEN:
            return False
        if breaker in _probing:
            # the probe decides soon (or its call's timeout does): ask again shortly, not after resetTimeout
            raise BreakerOpen(target or str(breaker.name), min(1.0, float(breaker.reset_timeout)))
        _probing.add(breaker)
        return True


def _probed(breaker: pybreaker.CircuitBreaker) -> None:
    with _admitting:
        _probing.discard(breaker)


def _success() -> None:
    return None


_QUIET = (pybreaker.CircuitBreakerListener.before_call, pybreaker.CircuitBreakerListener.success)


def _success_unheard(breaker: pybreaker.CircuitBreaker) -> bool:
    """No listener of ``breaker`` overrides what pybreaker calls on a success (``before_call``,
    ``success``): recording one changes nothing a closed breaker without failures shows."""
    for listener in breaker.listeners:
        kind = type(listener)
        if (kind.before_call, kind.success) != _QUIET:
            return False
    return True


def _record(breaker: pybreaker.CircuitBreaker, error: BaseException | None) -> None:
    """Report the outcome of a finished call to the breaker's current state.

    A result that arrives after another call opened the breaker is dropped: the breaker already
    decided, and the next call after the reset timeout is the probe.
    """
    state = breaker.current_state
    if state == STATE_OPEN:
        return
    if error is None and state == STATE_CLOSED and breaker.fail_counter == 0 and _success_unheard(breaker):
        # pybreaker would reset a failure count that is 0 already and tell listeners that ignore it:
        # nothing to record (the usual call, one per ingress request on the journal's breaker)
        return

    def failure() -> NoReturn:
        assert error is not None
        raise error

    try:
        breaker.call(_success if error is None else failure)
    except pybreaker.CircuitBreakerError:
        pass  # the failure tripped a breaker built with throw_new_error_on_trip: the caller re-raises
    except BaseException as raised:
        if raised is not error:
            raise


@contextlib.contextmanager
def _guarded(breaker: pybreaker.CircuitBreaker, target: str | None) -> Iterator[None]:
    """Admit one call (or raise BreakerOpen), then record its outcome: an exception is a failure, a
    cancellation is neither; a probe's slot is given back after its verdict is recorded, so the next
    call sees that verdict, or probes itself."""
    probe = _admit(breaker, target)
    try:
        try:
            yield
        except Exception as exc:
            _record(breaker, exc)
            raise
        _record(breaker, None)
    finally:
        if probe:
            _probed(breaker)


async def call_through(
    breaker: pybreaker.CircuitBreaker | None,
    func: Callable[[], Awaitable[T]],
    *,
    target: str | None = None,
) -> T:
    """Await ``func()`` under ``breaker``; :class:`~kurative.errors.BreakerOpen` while it is open.

    ``target`` names the breaker in the error (default: the breaker's ``name``). Without a breaker
    the call simply runs.
    """
    if breaker is None:
        return await func()
    # _guarded, written out: a generator context manager costs more than the rest of a journal commit's
    # bookkeeping
    probe = _admit(breaker, target)
    try:
        try:
            result = await func()
        except Exception as exc:
            _record(breaker, exc)
            raise
        _record(breaker, None)
        return result
    finally:
        if probe:
            _probed(breaker)


def call_through_sync(
    breaker: pybreaker.CircuitBreaker | None,
    func: Callable[[], T],
    *,
    target: str | None = None,
) -> T:
    """:func:`call_through` for a blocking ``func`` (run in a worker thread by the caller).

    pybreaker's own ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call, so
    calls to one target would run one at a time and, while one hangs, even an open breaker could not
    fail fast. Here, as in :func:`call_through`, only admission and the outcome take the lock.
    """
    if breaker is None:
        return func()
    with _guarded(breaker, target):
        return func()
