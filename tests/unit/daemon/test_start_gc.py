"""``kurative serve`` collects cyclic garbage less often until the daemon is ready, then as usual."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from kurative.commands.serve import START_GC_THRESHOLD, collecting_less_until_ready


@pytest.fixture(autouse=True)
def _usual_gc() -> Iterator[None]:
    usual = gc.get_threshold()
    yield
    gc.unfreeze()  # what the policy moved out of the collector's sight is collected again
    gc.set_threshold(*usual)


def test_the_usual_threshold_is_back_once_ready() -> None:
    usual = gc.get_threshold()

    async def start() -> list[tuple[int, ...]]:
        ready = asyncio.Event()
        seen = []
        async with collecting_less_until_ready(ready):
            seen.append(gc.get_threshold())
            assert gc.get_freeze_count() > 0  # what was imported before the start
            ready.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            seen.append(gc.get_threshold())  # serving: the usual policy
        seen.append(gc.get_threshold())
        return seen

    starting, serving, stopped = asyncio.run(start())
    assert starting == (max(usual[0], START_GC_THRESHOLD), *usual[1:])
    assert serving == stopped == usual


def test_a_start_that_fails_before_ready_restores_it_too() -> None:
    usual = gc.get_threshold()

    async def start() -> None:
        async with collecting_less_until_ready(asyncio.Event()):
            raise RuntimeError("the journal cannot be reached")

    with pytest.raises(RuntimeError):
        asyncio.run(start())
    assert gc.get_threshold() == usual
