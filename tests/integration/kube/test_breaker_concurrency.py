"""Calls to one cluster through its breaker run side by side: a slow or hanging call never holds up
the others (pybreaker's ``call`` holds the breaker's lock for the whole guarded call)."""

from __future__ import annotations

import asyncio

import pytest

from kurative.adapters.kubernetes import KubernetesAdapter, KubeSettings
from kurative.errors import BreakerOpen
from kurative.execution.breakers import BreakerPolicy, BreakerSettings
from tests.support.fakekube import FakeCluster

pytestmark = [pytest.mark.kube, pytest.mark.timeout(60)]


async def _until(check: object, within: float = 10.0) -> bool:
    async with asyncio.timeout(within):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)
    return True


async def test_a_hanging_call_does_not_hold_up_the_other_calls_to_the_cluster(fake_kube: FakeCluster) -> None:
    policy = BreakerPolicy(BreakerSettings(fail_max=1, reset_timeout=30))
    adapter = KubernetesAdapter(KubeSettings(read_timeout=30, max_workers=4), breakers=policy.for_target)
    client = adapter.add_client(None, fake_kube.api_client())
    outage = fake_kube.outage(hang=True)
    try:
        calls = [asyncio.create_task(client.request("GET", "/version")) for _ in range(3)]
        # all three reach the server while the first still hangs
        assert await _until(lambda: outage.seen == 3)
        fake_kube.recover()
        answers = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert all(a["gitVersion"].startswith("v1.30") for a in answers)
        assert client.breaker is not None
        assert client.breaker.current_state == "closed"
        # an open breaker fails fast, even while a call that went in before it opened still hangs
        hang = fake_kube.outage(hang=True)
        slow = asyncio.create_task(client.request("GET", "/version"))
        assert await _until(lambda: hang.seen == 1)
        client.breaker.open()
        with pytest.raises(BreakerOpen):
            await asyncio.wait_for(client.request("GET", "/version"), 5)
        fake_kube.recover()
        await asyncio.wait_for(slow, 30)
    finally:
        fake_kube.recover()
        adapter.close()
