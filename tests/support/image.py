"""The container image built without a registry or a Docker engine: Debian's buildah, a base image made
by debootstrap from Debian's packages, and the repository's own Dockerfile.

No public image registry answers here, so ``python:3.11-slim`` cannot be pulled. The base is Debian
bookworm (minbase) with its python3 (3.11) and python3-venv, made with debootstrap and imported into a
private buildah store under ``~/.cache/kurative/image/`` (vfs storage, chroot isolation: no overlay
mounts, no user namespaces, no daemon). It carries this machine's CA certificates, because this
machine's egress to PyPI goes through a TLS-intercepting proxy and the build stage downloads the
dependencies' wheels. The base is made once per recipe (a hash of suite, packages, mirror and those
certificates); the image is rebuilt on every run from the Dockerfile with ``--build-arg BASE=...``.
docs/image.md has the commands and the figures.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("KURATIVE_CACHE", Path.home() / ".cache" / "kurative")) / "image"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
IMAGE = "localhost/kurative:test"


def debian_mirror() -> str:
    """The machine's own Debian mirror, as apt uses it (deb822 sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    with contextlib.suppress(OSError):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            if SUITE in fields.get("Suites", "").split() and "security" not in fields.get("URIs", ""):
                return fields["URIs"].split()[0].strip()
    return DEFAULT_MIRROR


def local_certificates() -> list[Path]:
    return sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []


def base_key(mirror: str) -> str:
    digest = hashlib.sha256(json.dumps([SUITE, PACKAGES, mirror]).encode())
    for certificate in local_certificates():
        digest.update(certificate.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Buildah:
    """buildah on a private store: nothing of the machine's own containers storage is touched."""

    executable: str
    root: Path = CACHE / "storage"
    runroot: Path = Path(tempfile.gettempdir()) / "kurative-buildah-run"

    def command(self, *args: str) -> list[str]:
        return [
            self.executable,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def run(self, *args: str, timeout: float = 120, cwd: Path | None = None) -> str:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"buildah {' '.join(args)} failed ({result.returncode}): {result.stderr[-3000:]}"
            )
        return result.stdout

    def exists(self, image: str) -> bool:
        result = subprocess.run(
            self.command("inspect", "--type", "image", image), capture_output=True, timeout=60, check=False
        )
        return result.returncode == 0

    def inspect(self, image: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.run("inspect", "--type", "image", image))
        return found

    @contextlib.contextmanager
    def container(self, image: str) -> Iterator[str]:
        name = self.run("from", "--pull=never", image).strip()
        try:
            yield name
        finally:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.run("rm", name)

    @contextlib.contextmanager
    def mounted(self, container: str) -> Iterator[Path]:
        path = Path(self.run("mount", container).strip())
        try:
            yield path
        finally:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.run("umount", container)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One builder at a time on the cache (two test runs on one machine share it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_image(buildah: Buildah, debootstrap: str) -> tuple[str, bool]:
    """The tag of the debootstrap-made base for the current recipe, and whether it was made now."""
    mirror = debian_mirror()
    tag = f"localhost/kurative-base:{SUITE}-{base_key(mirror)}"
    if buildah.exists(tag):
        return tag, False
    rootfs = CACHE / f"rootfs-{base_key(mirror)}"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({result.returncode}): {result.stdout[-3000:]}")
        for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists").mkdir()
        for certificate in local_certificates():
            shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
        subprocess.run(
            ["chroot", str(rootfs), "update-ca-certificates"], capture_output=True, timeout=120, check=True
        )
        container = buildah.run("from", "scratch").strip()
        try:
            buildah.run("copy", container, f"{rootfs}/", "/", timeout=600)
            buildah.run(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "/bin/sh",
                "--label",
                f"org.opencontainers.image.description=Debian {SUITE} minbase with {' '.join(PACKAGES)}",
                container,
            )
            buildah.run("commit", "--rm", container, tag, timeout=600)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                buildah.run("rm", container)
            raise
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag, True


def build_image(buildah: Buildah, root: Path, base: str, revision: str) -> str:
    """Build ``root``'s Dockerfile on ``base`` as :data:`IMAGE` (docker format, so HEALTHCHECK stays);
    the previous build's image and containers are removed first, so the vfs store does not grow run
    after run. Call it under :func:`locked`."""
    with contextlib.suppress(RuntimeError):
        buildah.run("rm", "--all")  # working containers a killed run left (this store is the tests' own)
    with contextlib.suppress(RuntimeError):
        buildah.run("rmi", "--force", IMAGE)
    buildah.run(
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "--format",
        "docker",
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"REVISION={revision}",
        "--tag",
        IMAGE,
        "--file",
        str(root / "Dockerfile"),
        str(root),
        timeout=1200,
    )
    with contextlib.suppress(RuntimeError):
        buildah.run("rmi", "--prune")  # the build stage's leftovers
    return IMAGE
