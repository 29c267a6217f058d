"""The kube build cache: keyed by version, guarded by a lock, never built twice (no server needed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support import kube_build


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KURATIVE_KUBE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_binaries() -> None:
    bdir = kube_build.bin_dir()
    bdir.mkdir(parents=True, exist_ok=True)
    for name in kube_build.BINARIES:
        (bdir / name).write_text("#!/bin/sh\n")
        (bdir / name).chmod(0o755)
    (kube_build.cache_dir() / kube_build.STAMP).write_text("fake\n")


def test_cache_is_keyed_by_version_outside_the_repo(empty_cache: Path) -> None:
    assert kube_build.bin_dir() == empty_cache / f"kube-{kube_build.KUBE_VERSION}" / "bin"
    assert not kube_build.binaries_ready()


def test_binaries_without_the_success_stamp_do_not_count(empty_cache: Path) -> None:
    fake_binaries()
    assert kube_build.binaries_ready()
    (kube_build.cache_dir() / kube_build.STAMP).unlink()
    assert not kube_build.binaries_ready()


def test_ready_cache_returns_at_once(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_binaries()
    monkeypatch.setattr(kube_build, "_PrivateApt", _must_not_build)
    assert kube_build.build() == kube_build.bin_dir()


def test_a_second_builder_waits_for_the_first_and_does_not_build_again(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_build, "_PrivateApt", _must_not_build)
    holding = threading.Event()

    def first_builder() -> None:
        with kube_build._build_lock(kube_build.KUBE_VERSION):
            holding.set()
            time.sleep(0.5)
            fake_binaries()

    thread = threading.Thread(target=first_builder)
    thread.start()
    assert holding.wait(5)
    started = time.monotonic()
    assert kube_build.build() == kube_build.bin_dir()
    assert time.monotonic() - started >= 0.3  # it waited for the lock
    thread.join(5)


def test_other_versions_are_refused_with_a_reason(empty_cache: Path) -> None:
    with pytest.raises(kube_build.KubeBuildError, match=r"only v1\.20\.2"):
        kube_build.build("v1.30.0")


def _must_not_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("build() started a build although the binaries were ready")
