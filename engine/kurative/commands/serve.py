"""``kurative serve``: run the daemon (ingress, matcher, workers) until SIGTERM or SIGINT.

Settings come from flags, then ``KURATIVE_*`` environment variables, then ``--config``, then defaults
(see :mod:`kurative.config`). An invalid config prints every positioned problem and exits 2 without
starting. The first SIGTERM or SIGINT stops in order (readiness off, ingress closed, steps finish
within ``runner.shutdownTimeout``, leases released); a second one exits at once, and recovery on the
next start picks up what was left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from typing import Any

from kurative.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

EXIT_SIGNALLED_TWICE = 130
START_GC_THRESHOLD = 20_000
"""Until the daemon is ready, the cyclic garbage collector looks at the youngest objects once per this
many allocations instead of Python's 700. Start-up allocates a great deal that stays (the imported
modules, every playbook and its compiled ruleset) and makes little cyclic garbage, so the passes it
would make meanwhile, each over more of what stays, find next to nothing. The usual threshold is
back once the daemon is ready, or has stopped trying."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the daemon: receive alerts, match them, run the playbooks"
    )
    parser.add_argument("--config", metavar="FILE", help="daemon config (kind: Config); $KURATIVE_CONFIG")
    parser.add_argument(
        "--rules", action="append", default=[], metavar="PATH", help="playbook folder or file (repeatable)"
    )
    parser.add_argument("--journal", metavar="URL", help="journal URL (default: sqlite:///./kurative.db)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="ingress address (default: 127.0.0.1:9095)")
    parser.add_argument(
        "--dry-run", action="store_true", default=None, help="run every step as a dry run (nothing changes)"
    )
    parser.add_argument("--migrate", action="store_true", default=None, help="apply journal migrations first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kurative.config import Overrides, load_settings
    from kurative.errors import ConfigError
    from kurative.logging import Redactor, configure_logging

    overrides = Overrides(
        config=args.config,
        rules=tuple(args.rules),
        journal=args.journal,
        listen=args.listen,
        dry_run=args.dry_run,
        migrate=args.migrate,
    )
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        print(f"kurative serve: {exc}; not starting", file=sys.stderr)
        return EXIT_USAGE
    if not settings.rules.paths:
        print("kurative serve: no playbooks: pass --rules PATH or set playbooks.paths", file=sys.stderr)
        return EXIT_USAGE
    redactor = Redactor()
    configure_logging(settings.logging, redactor)
    from kurative.ingress.server import run_event_loop

    return run_event_loop(_serve(settings, redactor))


@contextlib.asynccontextmanager
async def collecting_less_until_ready(ready: asyncio.Event) -> Any:
    """The start-up garbage collection policy (:data:`START_GC_THRESHOLD`) until ``ready`` is set.

    What is imported before the daemon starts lives as long as the process, so it is also moved out
    of the collector's sight (``gc.freeze``): no later full pass walks every module, class and
    function again. Objects made after that are collected as always."""
    gc.freeze()
    usual = gc.get_threshold()
    gc.set_threshold(max(usual[0], START_GC_THRESHOLD), *usual[1:])

    async def restore() -> None:
        await ready.wait()
        gc.set_threshold(*usual)

    restoring = asyncio.create_task(restore())
    try:
        yield
    finally:
        restoring.cancel()
        gc.set_threshold(*usual)


async def _serve(settings: Any, redactor: Any) -> int:
    from kurative.daemon import Daemon

    daemon = Daemon(settings, redactor=redactor)
    loop = asyncio.get_running_loop()
    signalled = 0

    def on_signal(signum: int) -> None:
        nonlocal signalled
        signalled += 1
        if signalled > 1:
            print("kurative serve: second signal, exiting now", file=sys.stderr)
            os._exit(EXIT_SIGNALLED_TWICE)
        daemon.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload, "sighup")
    async with collecting_less_until_ready(daemon.ready):
        await daemon.run()
    if daemon.crashed:
        print(f"kurative serve: stopped because a task crashed: {'; '.join(daemon.crashed)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
