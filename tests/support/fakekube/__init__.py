"""A fake Kubernetes API server for fast tests, kept honest by running the same tests on a real one.

    with fake_cluster() as cluster:
        api = cluster.api_client()      # an official kubernetes.client.ApiClient

See :mod:`.store` for the state it keeps and :mod:`.server` for the HTTP side.
"""

from tests.support.fakekube.server import FakeCluster, Fault, Outage, fake_cluster, start_fake_cluster

__all__ = ["FakeCluster", "Fault", "Outage", "fake_cluster", "start_fake_cluster"]
