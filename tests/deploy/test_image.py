"""The container image: the repository's Dockerfile built with Debian's buildah on a base made by
debootstrap (no registry, no Docker engine), then run: ``kurative --version``, the image's settings, no
build tools, and ``kurative serve`` as uid 10001 on a read-only root that ingests an alert.

Needs root (chroot isolation, vfs storage, mount namespaces) and Debian's buildah and debootstrap:
without them the image tests skip, with ``CI`` set the tools are apt-installed and the tests fail rather
than skip. The base is cached under ``~/.cache/kurative/image/`` (tests/support/image.py); the image is
built anew on each run. The static checks of the Dockerfile run everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kurative
from tests.support.debian import require_debian_tool
from tests.support.image import Buildah, base_image, build_image, locked
from tests.support.postgres import free_port
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UID = 10001
JOURNAL_DIR = "/var/lib/kurative"


@dataclass(frozen=True)
class Built:
    buildah: Buildah
    image: str
    config: dict[str, Any]
    container: str
    """One working container for every test: each one is a full copy of the image on vfs storage."""


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI: the image build needs root (chroot isolation, vfs storage, mount namespaces)")
        pytest.skip("building the image with buildah here needs root (chroot isolation and vfs storage)")
    executable = require_debian_tool(lambda: shutil.which("buildah"), "buildah", "buildah")
    debootstrap = require_debian_tool(lambda: shutil.which("debootstrap"), "debootstrap", "debootstrap")
    buildah = Buildah(executable)
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    with locked():  # for the whole module: another run would remove this one's image and container
        started = time.monotonic()
        base, made = base_image(buildah, debootstrap)
        based = time.monotonic()
        image = build_image(buildah, ROOT, base, revision or "unknown")
        finished = time.monotonic()
        print(  # the figures docs/image.md quotes; never asserted
            f"image: base {'made' if made else 'cached'} in {based - started:.1f}s, "
            f"image built in {finished - based:.1f}s"
        )
        config = buildah.inspect(image)["Docker"]["config"]
        with buildah.container(image) as container:
            yield Built(buildah, image, config, container)


def in_image(built: Built, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        built.buildah.command("run", "--isolation", "chroot", built.container, "--", *command),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(1800)
def test_kurative_version_runs_in_the_image(built: Built) -> None:
    result = in_image(built, "kurative", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kurative {kurative.__version__}"


@pytest.mark.timeout(1800)
def test_the_image_runs_kurative_serve_as_uid_10001(built: Built) -> None:
    config = built.config
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["kurative"]
    assert config["Cmd"] == ["serve"]
    assert "9095/tcp" in config["ExposedPorts"]
    assert config["WorkingDir"] == JOURNAL_DIR
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "kurative"
    assert labels["org.opencontainers.image.version"] == kurative.__version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    result = in_image(built, "id", "-u")
    assert result.stdout.strip() == str(UID)


NO_TOOLS = """\
import importlib.util, os, shutil, subprocess, sys
tools = ("gcc", "cc", "c++", "make", "ld", "as", "pip", "pip3", "git", "apt-get")
found = [t for t in tools if shutil.which(t)]
found += [m for m in ("pip", "setuptools", "wheel") if importlib.util.find_spec(m)]
system = os.path.realpath(sys.executable)  # the base's interpreter, outside the environment
if subprocess.run([system, "-c", "import pip"], capture_output=True).returncode == 0:
    found.append(system + ":pip")
print(" ".join(found))
"""


@pytest.mark.timeout(1800)
def test_the_final_stage_has_no_build_tools_sources_or_wheels(built: Built) -> None:
    result = in_image(built, "python3", "-c", NO_TOOLS)
    assert result.returncode == 0, result.stderr
    # apt-get is Debian's own (the base's package manager, in python:3.11-slim too), not a build tool
    assert result.stdout.split() in ([], ["apt-get"]), result.stdout
    listing = in_image(built, "sh", "-c", "ls -d /src /wheels /root/.cache 2>/dev/null; true")
    assert listing.stdout.strip() == ""


ALERT = ROOT / "examples" / "alerts" / "crashlooping.json"
PLAYBOOKS = ROOT / "examples" / "playbooks"

# The image's root read-only, /tmp a tmpfs, the journal's folder a host directory owned by the uid,
# the playbooks bound read-only: what the Deployment mounts. The mount namespace dies with the daemon.
READ_ONLY = """\
set -e
R="$1"; JOURNAL="$2"; RULES="$3"; shift 3
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$R/tmp"
mount --bind "$JOURNAL" "$R/var/lib/kurative"
mkdir "$R/tmp/rules"
mount --bind -o ro "$RULES" "$R/tmp/rules"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
exec chroot --userspec=10001:10001 "$R" "$@"
"""
UNSHARE = ("unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY, "sh")


@pytest.mark.timeout(1800)
def test_serve_on_a_read_only_root_commits_an_alert(built: Built) -> None:
    config = built.config
    env = dict(item.split("=", 1) for item in config["Env"])
    port = free_port()
    command = [
        *config["Entrypoint"],
        *config["Cmd"],
        "--rules",
        "/tmp/rules",
        "--listen",
        f"127.0.0.1:{port}",
        "--dry-run",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="kurative-image-journal-") as journal,
        built.buildah.mounted(built.container) as rootfs,
        tempfile.TemporaryFile() as log,
    ):
        os.chown(journal, UID, UID)
        inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
        inner += ["sh", "-c", f'cd {config["WorkingDir"]} && exec "$@"', "sh", *command]
        process = subprocess.Popen(
            [*UNSHARE, str(rootfs), journal, str(PLAYBOOKS), *inner],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/readyz", process, log)
            request = urllib.request.Request(
                f"{url}/api/v1/alerts", data=ALERT.read_bytes(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
                assert json.loads(answer.read())["received"] >= 1
            # the image's HEALTHCHECK command, pointed at this daemon, says healthy
            kind, *check = config["Healthcheck"]["Test"]
            assert kind == "CMD"
            health = subprocess.run(
                built.buildah.command(
                    "run", "--isolation", "chroot", "--env", f"KURATIVE_HEALTH_URL={url}/healthz",
                    built.container, "--", *check,
                ),
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert health.returncode == 0, health.stderr
        finally:
            stop_process(process)
        output = read(log)
        assert process.returncode == 0, output
        assert "Read-only file system" not in output, output
        files = sorted(p.name for p in Path(journal).iterdir())
        assert "kurative.db" in files, files  # the default journal, in the working directory
        with contextlib.closing(sqlite3.connect(Path(journal) / "kurative.db")) as db:
            ((alerts,),) = db.execute("SELECT count(*) FROM alerts").fetchall()
        assert alerts >= 1
        assert all(Path(journal, name).stat().st_uid == UID for name in files)


def read(log: Any) -> str:
    log.seek(0)
    return str(log.read().decode(errors="replace"))[-4000:]


def wait_for(url: str, process: subprocess.Popen[bytes], log: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kurative serve exited with {process.returncode}: {read(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as a:
            if a.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout:g}s: {read(log)}")


# -- the Dockerfile itself (no tools needed) -------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_pins_a_slim_python_base_both_stages_use() -> None:
    steps = instructions()
    (base,) = [value for keyword, value in steps if keyword == "ARG" and value.startswith("BASE=")]
    assert re.fullmatch(r"BASE=python:3\.11\.\d+-slim-bookworm", base), base
    froms = [value for keyword, value in steps if keyword == "FROM"]
    assert froms == ["${BASE} AS build", "${BASE}"]


def test_the_final_stage_copies_only_the_environment_and_runs_as_10001() -> None:
    steps = instructions()
    final = steps[len(steps) - 1 - [k for k, _ in reversed(steps)].index("FROM") :]
    assert [v for k, v in final if k == "COPY"] == ["--from=build /opt/kurative /opt/kurative"]
    assert ("USER", f"{UID}:{UID}") in final
    assert final[-2:] == [("ENTRYPOINT", '["kurative"]'), ("CMD", '["serve"]')]
    assert ("EXPOSE", "9095") in final
    assert not [v for k, v in final if k == "ADD"]
