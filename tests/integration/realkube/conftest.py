"""Fixtures for the tests that prove the real kube-apiserver harness itself."""

import sys
from pathlib import Path

# `tests.support` must import whether or not the rootdir is on sys.path (plain `pytest` does not put
# it there; `python -m pytest` does).
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.kube_fixtures import kube_namespace, real_kube, real_kube_client  # noqa: E402, F401
