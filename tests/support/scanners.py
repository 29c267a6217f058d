"""The security scanners CI runs (checkov, bandit, pip-audit), each in its own virtual environment under
``~/.cache/kurative/tools/<name>-<version>/``: checkov pins many libraries, and none of them belongs in
the project's test extras. A scanner is installed from PyPI on first use (about 1 to 4 minutes for
checkov on 2 busy cores, 1 to 2 for the others) and reused after that.

Without ``CI`` a scanner that cannot be installed skips its test with the reason; with ``CI`` set the
test fails instead, so a green CI never hides a scan that did not run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TOOLS = Path(os.environ.get("KURATIVE_CACHE", Path.home() / ".cache" / "kurative")) / "tools"
VERSIONS = {"checkov": "3.3.30", "bandit": "1.9.4", "pip-audit": "2.10.1"}
"""The scanners and the versions CI pins (a new version is a reviewed change, not a surprise)."""


class InstallFailed(Exception):
    pass


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(name: str) -> Path:
    """The console script of scanner ``name`` at its pinned version, installed first if need be."""
    version = VERSIONS[name]
    home = TOOLS / f"{name}-{version}"
    executable = home / "bin" / name
    marker = home / ".installed"
    with _locked(name):
        if marker.exists() and executable.exists():
            return executable
        # the interpreter the tests run on (3.11), not the project's venv: a venv of its base Python
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", "--clear", str(home)],
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{name}=={version}"],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode != 0:
                raise InstallFailed(f"`{' '.join(step)}` failed: {result.stderr[-2000:]}")
        if not executable.exists():
            raise InstallFailed(f"{name}=={version} installed no {executable}")
        marker.write_text(f"{name}=={version}\n")
    return executable


def require_scanner(name: str) -> Path:
    """:func:`install`, or skip (a laptop without PyPI) / fail (CI) with the reason."""
    try:
        return install(name)
    except (InstallFailed, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {name} {VERSIONS[name]} could not be installed: {exc}")
        pytest.skip(f"{name} {VERSIONS[name]} could not be installed from PyPI: {exc}")
