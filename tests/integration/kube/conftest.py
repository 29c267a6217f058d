"""The same Kubernetes action tests over the fake and the real API server.

``kube`` is parametrised: "fake" is the project's fake API server (tests/support/fakekube), "real" a
kube-apiserver v1.20.2 with etcd and kube-controller-manager (tests/support/realkube.py). Both are
session-scoped and have the same shape (``host``, ``admin_token``, ``user_token``, ``kubeconfig``,
``api_client``). Without the real binaries the "real" param skips, but fails when ``CI`` is set.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings  # noqa: E402
from tests.integration.kube.helpers import Kube, Runner, kube_in_namespace  # noqa: E402
from tests.support.fakekube import FakeCluster, fake_cluster  # noqa: E402
from tests.support.kube_fixtures import real_kube  # noqa: E402, F401


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session", params=["fake", pytest.param("real", marks=pytest.mark.realkube)])
def kube_cluster(request: pytest.FixtureRequest) -> Any:
    """The API server under test: the fake one or the real one."""
    return request.getfixturevalue(f"{request.param}_kube")


@pytest.fixture
def server(kube_cluster: Any) -> str:
    return "fake" if isinstance(kube_cluster, FakeCluster) else "real"


@pytest.fixture
def kube(kube_cluster: Any, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A synchronous admin client for arranging and inspecting state, with a fresh namespace."""
    yield from kube_in_namespace(kube_cluster, request.node.name)


@pytest.fixture
def fake(fake_kube: FakeCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """The same helper on the fake server only, for faults a real server cannot be asked to show."""
    yield from kube_in_namespace(fake_kube, request.node.name)


def _runner(cluster: Any) -> Iterator[Runner]:
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, cluster.api_client())
    try:
        yield Runner(adapter)
    finally:
        adapter.close()


@pytest.fixture
def run(kube_cluster: Any) -> Iterator[Runner]:
    """Runs actions through the adapter (official client, thread pool) as the daemon does."""
    yield from _runner(kube_cluster)


@pytest.fixture
def fake_run(fake_kube: FakeCluster) -> Iterator[Runner]:
    yield from _runner(fake_kube)
