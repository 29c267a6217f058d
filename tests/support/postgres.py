"""A throwaway PostgreSQL server for tests and benchmarks: initdb, pg_ctl, a free port, stopped by PID.

The journal's contract suite runs on real PostgreSQL, never on a mock. The server runs as the
``postgres`` user when we are root (initdb refuses root), binds 127.0.0.1 on a free port, keeps its
socket and data in one temporary directory, and is stopped at the end, also from an atexit hook.

    with start_postgres() as server:
        url = server.create_database("journal_test")

On a machine without PostgreSQL binaries, :func:`require_binaries` skips the test, except when ``CI``
is set: then it installs ``postgresql`` with apt-get, and fails if that does not work.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from tests.support.debian import require_debian_tool

START_TIMEOUT = 30


class PostgresError(RuntimeError):
    """The throwaway server could not be set up; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def require_binaries() -> Path:
    """PostgreSQL's bin directory; skip without it, but install (or fail) when ``CI`` is set."""
    return require_debian_tool(find_binaries, "postgresql", "PostgreSQL binaries (initdb, pg_ctl)")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster under ``workdir``; call :meth:`start` / :meth:`stop`."""

    bindir: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    fsync: bool = False
    user: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    def _run(self, *command: str, timeout: float = START_TIMEOUT) -> None:
        result = subprocess.run(
            self._as_postgres(*command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise PostgresError(
                f"{' '.join(command[:2])} failed ({result.returncode}): {result.stderr[-1500:]}\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.workdir} -c max_connections=200"
        if not self.fsync:
            # a commit still reaches the OS before it is acknowledged (synchronous_commit stays on),
            # so killing the server loses nothing acknowledged; only a machine crash would
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
            "-o",
            options,
        )

    def pid(self) -> int | None:
        """The postmaster's PID from its pid file, or None when it is not running."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` kills it as a crash would (no checkpoint)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")
        except (PostgresError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def create_role(self, role: str, password: str, database: str) -> str:
        """A login role that must give ``password`` (scram-sha-256 from 127.0.0.1, while every other
        role stays trusted), owning a new ``database``; its URL, password included."""
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
                )
            )
            conn.execute(f'CREATE DATABASE "{database}" OWNER "{role}"'.encode())
            conn.execute("SELECT pg_reload_conf()")
        quoted = urllib.parse.quote(password, safe="")
        return f"postgresql://{role}:{quoted}@127.0.0.1:{self.port}/{database}"

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def start_postgres(*, fsync: bool = False, bindir: Path | None = None) -> Iterator[PostgresServer]:
    """A started server in a fresh temporary directory; stopped and removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="kurative-pg-"))
    server = PostgresServer(bindir or require_binaries(), workdir, fsync=fsync)

    def cleanup() -> None:
        server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(cleanup)
    try:
        server.init()
        server.start()
        yield server
    finally:
        cleanup()
        atexit.unregister(cleanup)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway server for the whole session (tests create a database each)."""
    with start_postgres() as server:
        yield server
