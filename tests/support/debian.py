"""Tools the tests take from Debian's packages: skip on a laptop without them, install them in CI.

A test that needs a real tool (PostgreSQL, npm, later Prometheus and Alertmanager) asks for it here.
Without ``CI`` a missing tool skips the test with the package to install; with ``CI`` set the package is
installed with apt-get, and a failed install or a tool still missing afterwards fails the test, so a
green CI never hides a missing install step.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

_updated = False


def require_debian_tool(find: Callable[[], T | None], package: str, what: str) -> T:
    """``find()``'s result; when it finds nothing, skip, or in CI install ``package`` and look again."""
    global _updated
    found = find()
    if found is not None:
        return found
    if not os.environ.get("CI"):
        pytest.skip(f"{what} not found; apt-get install {package} (or set CI=1 to install it on use)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = [["apt-get", "install", "-y", "--no-install-recommends", package]]
    if not _updated:
        commands.insert(0, ["apt-get", "update"])
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"CI: `{' '.join(command)}` failed: {result.stderr[-2000:]}")
    _updated = True
    found = find()
    if found is None:
        pytest.fail(f"CI: {package} was installed but {what} is still missing")
    return found
