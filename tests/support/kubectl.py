"""Debian's kubectl 1.20.2 (package ``kubernetes-client``), the same version as the real kube-apiserver.

A machine may already have another ``kubectl`` on PATH (here a newer one from another package that
owns ``/usr/bin/kubectl``, so ``apt-get install kubernetes-client`` would collide with it). The tests
therefore never install the package system-wide: its .deb is fetched with the private apt setup of
:mod:`tests.support.kube_build` and unpacked under the cache, beside the API server binaries::

    ~/.cache/kurative/kubectl-1.20.2/usr/bin/kubectl

A ``kubectl`` on PATH that is already 1.20 is used as it is. Without either, :func:`require_kubectl`
skips on a laptop and unpacks the package in CI (``CI`` set), failing when that does not work. By hand:
``.venv/bin/python -m tests.support.kubectl``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import kube_build

PACKAGE = "kubernetes-client"
VERSION = "1.20"
_checked: dict[str, bool] = {}


def cache_dir() -> Path:
    return kube_build.cache_root() / "kubectl-1.20.2"


def _is_1_20(path: str) -> bool:
    if path not in _checked:
        try:
            out = subprocess.run(
                [path, "version", "--client", "--short"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except OSError:
            out = ""
        _checked[path] = f"v{VERSION}." in out
    return _checked[path]


def find_kubectl() -> Path | None:
    """The cached Debian kubectl 1.20, or a kubectl 1.20 on PATH; None when there is neither."""
    cached = cache_dir() / "usr/bin/kubectl"
    if os.access(cached, os.X_OK) and _is_1_20(str(cached)):
        return cached
    on_path = shutil.which("kubectl")
    if on_path and _is_1_20(on_path):
        return Path(on_path)
    return None


def unpack() -> Path:
    """Fetch ``kubernetes-client`` from the machine's Debian mirror and unpack it under the cache."""
    root = cache_dir()
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "debs").mkdir(parents=True)
    log = work / "apt.log"
    apt = kube_build._PrivateApt(work / "apt", log)
    apt.run("update", step="apt-get update")
    apt.run("download", PACKAGE, step=f"apt-get download {PACKAGE}", cwd=work / "debs")
    debs = sorted((work / "debs").glob("kubernetes-client_*.deb"))
    if not debs:
        raise kube_build.KubeBuildError(f"apt-get download {PACKAGE} left no .deb in {work / 'debs'}")
    kube_build._run(["dpkg", "-x", str(debs[-1]), str(root)], step="dpkg -x", log_file=log)
    shutil.rmtree(work, ignore_errors=True)
    found = find_kubectl()
    if found is None:
        raise kube_build.KubeBuildError(f"{PACKAGE} was unpacked into {root} but holds no kubectl {VERSION}")
    return found


def require_kubectl() -> Path:
    """Debian's kubectl 1.20: skip without it on a laptop, unpack it in CI (and fail if that fails)."""
    found = find_kubectl()
    if found is not None:
        return found
    if not os.environ.get("CI"):
        pytest.skip(
            f"Debian's kubectl {VERSION} not found; unpack it with "
            "`.venv/bin/python -m tests.support.kubectl` (or set CI=1 to do it on use)"
        )
    try:
        return unpack()
    except kube_build.KubeBuildError as exc:
        pytest.fail(f"CI: could not unpack Debian's {PACKAGE}: {exc}", pytrace=False)


if __name__ == "__main__":
    try:
        print(find_kubectl() or unpack())
    except kube_build.KubeBuildError as exc:
        print(f"unpacking {PACKAGE} failed: {exc}", file=sys.stderr)
        sys.exit(1)
