"""Build and cache a real kube-apiserver, kube-controller-manager and etcd for contract tests.

No package ships a kube-apiserver binary, but Debian 12's ``kubernetes`` source package (v1.20.2)
builds with Debian's own Go 1.19. Everything is fetched with apt from the machine's configured Debian
mirror into private directories (no system-wide install) and the resulting binaries are cached outside
the repository, keyed by version, so a build happens once per machine:

    ~/.cache/kurative/kube-v1.20.2/bin/{kube-apiserver,kube-controller-manager,etcd}

A file lock serialises concurrent builders (two pytest processes, or pytest and a manual run); the
second one waits and then finds the binaries ready. Run it by hand with::

    .venv/bin/python -m tests.support.kube_build          # build if missing, print the bin dir
    .venv/bin/python -m tests.support.kube_build --force  # rebuild

``KURATIVE_KUBE_CACHE`` overrides the cache root (default ``~/.cache/kurative``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

KUBE_VERSION = "v1.20.2"
BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
DEBIAN_SUITE = "bookworm"
BUILD_PACKAGES = ("golang-1.19-go", "golang-1.19-src", "etcd-server", "rsync", "libpopt0")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
STAMP = "BUILD-OK"


class KubeBuildError(RuntimeError):
    """The build could not produce the binaries; the message says which step failed and why."""


def cache_root() -> Path:
    """Where kurative caches things it builds for tests (outside the repository)."""
    override = os.environ.get("KURATIVE_KUBE_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kurative"


def cache_dir(version: str = KUBE_VERSION) -> Path:
    return cache_root() / f"kube-{version}"


def bin_dir(version: str = KUBE_VERSION) -> Path:
    return cache_dir(version) / "bin"


def binaries_ready(version: str = KUBE_VERSION) -> bool:
    """True when every binary and the success stamp are in the cache."""
    bdir = bin_dir(version)
    if not (cache_dir(version) / STAMP).is_file():
        return False
    return all(os.access(bdir / name, os.X_OK) for name in BINARIES)


def _log(message: str) -> None:
    print(f"[kube-build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def _build_lock(version: str) -> Iterator[None]:
    cdir = cache_dir(version)
    cdir.mkdir(parents=True, exist_ok=True)
    with open(cdir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another process is building into {cdir}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    argv: Sequence[str],
    *,
    step: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
) -> None:
    """Run one build step; on failure raise with the step name and the end of its output."""
    if log_file is not None:
        with open(log_file, "ab") as out:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = log_file.read_text(errors="replace").splitlines()[-40:]
            raise KubeBuildError(
                f"{step} failed (exit {proc.returncode}); full log: {log_file}\n" + "\n".join(tail)
            )
        return
    proc2 = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc2.returncode != 0:
        output = (proc2.stdout + proc2.stderr).strip().splitlines()[-40:]
        raise KubeBuildError(
            f"{step} failed (exit {proc2.returncode}): {' '.join(argv)}\n" + "\n".join(output)
        )


def _debian_mirror() -> str:
    """The machine's own Debian mirror URI, so the build uses whatever apt already reaches."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for block in sources.read_text().split("\n\n"):
            if re.search(rf"^Suites:.*\b{DEBIAN_SUITE}\b", block, re.M) and "security" not in block:
                match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if match:
                    return match.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            uris = [p for p in line.split() if p.startswith(("http://", "https://"))]
            if line.startswith("deb ") and uris and "security" not in uris[0]:
                return uris[0]
    return DEFAULT_MIRROR


class _PrivateApt:
    """apt-get with its own sources, lists and archive cache: nothing is installed system-wide."""

    def __init__(self, root: Path, log_file: Path) -> None:
        self.root = root
        self.log_file = log_file
        for sub in ("etc", "lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        mirror = _debian_mirror()
        signed = f"[signed-by={KEYRING}] " if Path(KEYRING).is_file() else ""
        (root / "etc/sources.list").write_text(
            f"deb {signed}{mirror} {DEBIAN_SUITE} main\ndeb-src {signed}{mirror} {DEBIAN_SUITE} main\n"
        )

    def argv(self, *args: str) -> list[str]:
        r = self.root
        return [
            "apt-get",
            "-q",
            "-y",
            "-o",
            f"Dir::Etc::SourceList={r}/etc/sources.list",
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            f"Dir::State::Lists={r}/lists",
            "-o",
            f"Dir::Cache={r}/cache",
            "-o",
            f"Dir::Cache::Archives={r}/cache/archives",
            "-o",
            "APT::Sandbox::User=root",
            *args,
        ]

    def run(self, *args: str, step: str, cwd: Path | None = None) -> None:
        _run(self.argv(*args), step=step, cwd=cwd, log_file=self.log_file)


# Host tools the build needs (command -> Debian package); all are in the stock Debian 12 image.
HOST_TOOLS = {
    "dpkg-source": "dpkg-dev",
    "make": "make",
    "patch": "patch",
    "xz": "xz-utils",
    "openssl": "openssl",
}


def _ensure_host_tools() -> None:
    """Check the build's host tools; in CI (as root) install the missing ones, elsewhere say how."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise KubeBuildError("building kube-apiserver needs a Debian machine (apt-get and dpkg)")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if not (os.environ.get("CI") and os.geteuid() == 0):
        raise KubeBuildError(f"building kube-apiserver needs {', '.join(missing)}: run `{' '.join(command)}`")
    _log(f"installing host tools: {' '.join(missing)}")
    _run(["apt-get", "update", "-q"], step="apt-get update")
    _run(command, step=f"apt-get install {' '.join(missing)}")


def _build_env(root: Path, wrappers: Path, gocache: Path) -> dict[str, str]:
    """Debian's Go 1.19 from the private root, offline, with the version stamped as upstream does."""
    goroot = root / "usr/lib/go-1.19"
    env = {k: v for k, v in os.environ.items() if k not in {"GOPATH", "GOFLAGS", "GOROOT", "GOBIN"}}
    env.update(
        GOROOT=str(goroot),
        PATH=f"{wrappers}:{goroot}/bin:{env.get('PATH', '/usr/bin:/bin')}",
        CGO_ENABLED="0",
        GOPROXY="off",
        GOTOOLCHAIN="local",
        KUBE_GIT_VERSION=KUBE_VERSION,
        KUBE_GIT_TREE_STATE="clean",
        GOCACHE=str(gocache),
    )
    return env


def build(version: str = KUBE_VERSION, *, force: bool = False, keep_work: bool = False) -> Path:
    """Build (once) and return the directory holding kube-apiserver, kube-controller-manager and etcd.

    Idempotent and safe to call from several processes at once. Raises KubeBuildError with the failed
    step and the tail of its log.
    """
    if version != KUBE_VERSION:
        raise KubeBuildError(f"only {KUBE_VERSION} is buildable from Debian 12's source package")
    if binaries_ready(version) and not force:
        return bin_dir(version)
    with _build_lock(version):
        if binaries_ready(version) and not force:
            _log("binaries were built by another process meanwhile")
            return bin_dir(version)
        _ensure_host_tools()
        started = time.monotonic()
        cdir = cache_dir(version)
        work = cdir / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        (cdir / STAMP).unlink(missing_ok=True)
        log_file = cdir / "build.log"
        log_file.write_text("")
        _log(f"building kube-apiserver {version} into {cdir} (5 to 12 minutes on 2 cores; log: {log_file})")

        apt = _PrivateApt(work / "apt", log_file)
        _log("apt-get update (private lists)")
        apt.run("update", step="apt-get update")

        debs = work / "debs"
        debs.mkdir()
        _log(f"apt-get download {' '.join(BUILD_PACKAGES)}")
        apt.run("download", *BUILD_PACKAGES, step="apt-get download", cwd=debs)
        root = work / "root"
        root.mkdir()
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(root)], step=f"dpkg -x {deb.name}", log_file=log_file)

        src = work / "src"
        src.mkdir()
        _log("apt-get source --download-only kubernetes")
        apt.run("source", "--download-only", "kubernetes", step="apt-get source kubernetes", cwd=src)
        dscs = sorted(src.glob("kubernetes_*.dsc"))
        if not dscs:
            raise KubeBuildError(f"apt-get source left no kubernetes_*.dsc in {src}")
        tree = src / "kubernetes"
        _log(f"dpkg-source -x {dscs[-1].name}")
        _run(
            ["dpkg-source", "-x", "--no-check", str(dscs[-1]), str(tree)],
            step="dpkg-source -x",
            cwd=src,
            log_file=log_file,
        )

        wrappers = work / "wrappers"
        wrappers.mkdir()
        rsync = wrappers / "rsync"
        libdirs = ":".join(
            str(root / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib")
        )
        rsync.write_text(
            f'#!/bin/sh\nLD_LIBRARY_PATH="{libdirs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
            f'exec "{root}/usr/bin/rsync" "$@"\n'
        )
        rsync.chmod(0o755)
        env = _build_env(root, wrappers, work / "gocache")
        _run(["go", "version"], step="go version", env=env, log_file=log_file)

        _log("make WHAT='cmd/kube-apiserver cmd/kube-controller-manager' (the long part)")
        make_started = time.monotonic()
        _run(
            ["make", "WHAT=cmd/kube-apiserver cmd/kube-controller-manager"],
            step="make kube-apiserver kube-controller-manager",
            cwd=tree,
            env=env,
            log_file=log_file,
        )
        _log(f"make finished in {time.monotonic() - make_started:.0f}s")

        out = tree / "_output/bin"
        if not out.is_dir():
            out = tree / "_output/local/bin/linux/amd64"
        bdir = bin_dir(version)
        bdir.mkdir(parents=True, exist_ok=True)
        sources = {
            "kube-apiserver": out / "kube-apiserver",
            "kube-controller-manager": out / "kube-controller-manager",
            "etcd": root / "usr/bin/etcd",
        }
        for name, path in sources.items():
            if not path.is_file():
                raise KubeBuildError(f"expected {path} after the build, but it is missing")
            tmp = bdir / f".{name}.tmp"
            shutil.copy2(path, tmp)
            tmp.chmod(0o755)
            tmp.replace(bdir / name)
        _run([str(bdir / "kube-apiserver"), "--version"], step="kube-apiserver --version", log_file=log_file)
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
        elapsed = time.monotonic() - started
        (cdir / STAMP).write_text(
            f"{version} built in {elapsed:.0f}s at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        )
        _log(f"done in {elapsed:.0f}s: {bdir}")
        return bdir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is complete")
    parser.add_argument("--keep-work", action="store_true", help="keep the source tree and Go toolchain")
    parser.add_argument("--check", action="store_true", help="only report whether the binaries are cached")
    args = parser.parse_args(argv)
    if args.check:
        ready = binaries_ready()
        print(bin_dir() if ready else f"missing: {bin_dir()}")
        return 0 if ready else 1
    try:
        print(build(force=args.force, keep_work=args.keep_work))
    except KubeBuildError as exc:
        print(f"kube build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
