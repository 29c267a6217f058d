"""A real HTTP sink on 127.0.0.1 and the HTTP adapter with the daemon's breaker policy."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kurative.adapters.http import HttpAdapter, HttpSettings  # noqa: E402
from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings  # noqa: E402
from kurative.execution.breakers import BreakerPolicy, BreakerSettings  # noqa: E402
from tests.integration.kube.helpers import Kube, kube_in_namespace  # noqa: E402
from tests.support.fakekube import FakeCluster, fake_cluster  # noqa: E402
from tests.support.http_sink import HttpSink, http_sink  # noqa: E402
from tests.support.prometheus import prometheus_server  # noqa: E402, F401


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with http_sink() as server:
        yield server


@pytest.fixture
def policy() -> BreakerPolicy:
    return BreakerPolicy(BreakerSettings(fail_max=3, reset_timeout=1.0))  # past any stall between two calls


@pytest.fixture
async def http(policy: BreakerPolicy) -> AsyncIterator[HttpAdapter]:
    adapter = HttpAdapter(HttpSettings(timeout=5.0), breakers=policy.for_target)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture
def kube(fake_kube: FakeCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """An admin client on the fake API server with a fresh namespace."""
    yield from kube_in_namespace(fake_kube, request.node.name)


@pytest.fixture
def kube_adapter(fake_kube: FakeCluster) -> Iterator[KubernetesAdapter]:
    adapter = KubernetesAdapter(KubeSettings(read_timeout=10.0))
    adapter.add_client(None, fake_kube.api_client())
    try:
        yield adapter
    finally:
        adapter.close()
