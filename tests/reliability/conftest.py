"""Reliability tests: kurative under faults (killed replicas, outages, network faults, hostile input),
each with real servers on 127.0.0.1 stopped by PID. Every test here carries the ``reliability`` marker;
modules add their own fixtures in their own files; the servers several of them share are here (a
module's own fixture of the same name takes precedence)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kube.helpers import Kube, kube_in_namespace
from tests.support.fakekube import FakeCluster, fake_cluster
from tests.support.http_sink import HttpSink, http_sink


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with http_sink() as server:
        yield server


@pytest.fixture(scope="module")
def fake_kube() -> Iterator[FakeCluster]:
    with fake_cluster() as cluster:
        yield cluster


@pytest.fixture
def kube(fake_kube: FakeCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    yield from kube_in_namespace(fake_kube, request.node.name)
