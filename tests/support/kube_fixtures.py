"""pytest fixtures for the real kube-apiserver (see tests/support/realkube.py).

Import them into a conftest.py (``pytest_plugins`` is only allowed in the rootdir conftest)::

    from tests.support.kube_fixtures import kube_namespace, real_kube, real_kube_client  # noqa: F401

- ``real_kube`` (session): a running RealCluster. When the cached binaries are missing it builds them
  if ``CI`` or ``KURATIVE_BUILD_KUBE`` is set (a failed build fails the test), and otherwise skips
  with the command that builds them. A cluster that does not start fails, never skips.
- ``real_kube_client``: a `kubernetes.client.ApiClient` as admin, closed after the test.
- ``kube_namespace``: a fresh namespace for one test, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support import kube_build
from tests.support.realkube import RealCluster, RealKubeError, start_real_cluster

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

BUILD_HINT = (
    "the real kube-apiserver is not built; build it once (5 to 12 minutes, cached in "
    f"{kube_build.bin_dir()}) with `.venv/bin/python -m tests.support.kube_build`, "
    "or set KURATIVE_BUILD_KUBE=1 to build on first use"
)


def must_not_skip() -> bool:
    """In CI a missing real component is a failure, never a skip."""
    return bool(os.environ.get("CI"))


@contextlib.contextmanager
def _per_test_timeout_paused() -> Iterator[None]:
    """Keep the one-off build out of pytest-timeout's per-test budget (its SIGALRM timer).

    The build takes minutes and happens inside whichever test first asks for the cluster; the time
    left on that test's timer is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if delay > 0:
            signal.setitimer(signal.ITIMER_REAL, delay, interval)


def ensure_kube_binaries(pytest_config: pytest.Config | None = None) -> None:
    """Make sure the binaries are cached: build, skip or fail as the environment says.

    With `pytest_config`, the build's progress lines reach the terminal (a CI log) instead of being
    captured for minutes.
    """
    if kube_build.binaries_ready():
        return
    if not (must_not_skip() or os.environ.get("KURATIVE_BUILD_KUBE")):
        pytest.skip(BUILD_HINT)
    if _failed_builds:  # a failed build is not tried again by every test that wants the cluster
        pytest.fail(_failed_builds[0], pytrace=False)
    capture = pytest_config.pluginmanager.getplugin("capturemanager") if pytest_config else None
    uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    try:
        with _per_test_timeout_paused(), uncaptured:
            print(f"\nbuilding the real kube-apiserver into {kube_build.cache_dir()}", file=sys.stderr)
            kube_build.build()
    except kube_build.KubeBuildError as exc:
        _failed_builds.append(f"could not build the real kube-apiserver: {exc}")
        pytest.fail(_failed_builds[0], pytrace=False)


_failed_builds: list[str] = []


class _SharedCluster:
    """One cluster per test process, however many conftests import `real_kube`.

    Each conftest that imports the fixture gets its own session-scoped copy of it, and each copy would
    start its own cluster; the copies share this one instead, and the last to finish stops it.
    """

    cluster: RealCluster | None = None
    error: str | None = None
    users = 0


@pytest.fixture(scope="session")
def real_kube(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[RealCluster]:
    """A real etcd + kube-apiserver + kube-controller-manager for the whole test session."""
    ensure_kube_binaries(pytestconfig)
    shared = _SharedCluster
    if shared.error is not None:
        pytest.fail(shared.error, pytrace=False)
    if shared.cluster is None:
        try:
            shared.cluster = start_real_cluster(tmp_path_factory.mktemp("realkube"))
        except RealKubeError as exc:
            shared.error = f"the real kube-apiserver did not start: {exc}"
            pytest.fail(shared.error, pytrace=False)
    shared.users += 1
    try:
        yield shared.cluster
    finally:
        shared.users -= 1
        if shared.users == 0:
            shared.cluster.stop()
            shared.cluster = None


@pytest.fixture
def real_kube_client(real_kube: RealCluster) -> Iterator[ApiClient]:
    """An admin ApiClient for one test."""
    api = real_kube.api_client()
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def unique_namespace_name(hint: str) -> str:
    """A DNS-1123 label built from `hint` plus a random suffix, at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:50].strip("-") or "test"
    return f"{base}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def temporary_namespace(api: ApiClient, hint: str = "test") -> Iterator[str]:
    """Create a namespace, yield its name, delete it (without waiting for finalization)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    name = unique_namespace_name(hint)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def kube_namespace(real_kube: RealCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own for one test on the real cluster, deleted afterwards."""
    api = real_kube.api_client()
    try:
        with temporary_namespace(api, hint=request.node.name) as name:
            yield name
    finally:
        api.close()  # type: ignore[no-untyped-call]
