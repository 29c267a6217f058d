"""Reliability tests: kurative under faults (killed replicas, outages, network faults, hostile input),
each with real servers on 127.0.0.1 stopped by PID. Every test here carries the ``reliability`` marker;
modules add their own fixtures in their own files."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.reliability)
