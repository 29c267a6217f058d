"""Start a throwaway real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager).

The Kubernetes contract tests run over the project's fake API server and over this real one, so the
fake is kept honest. Everything binds to 127.0.0.1 on free ports, lives under one work directory and is
stopped by PID, also when a test fails or the test process dies (children get SIGTERM through
PR_SET_PDEATHSIG).

    with start_real_cluster(tmp_path) as cluster:
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        core.list_namespace()

There is no scheduler and no kubelet: Deployments get ReplicaSets and Pods (from the controller-manager)
but Pods stay Pending unless a test binds them to a Node object through ``pods/binding``. The node
lifecycle controller is deliberately not run, so Node objects are never tainted as unreachable.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support import kube_build

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

ADMIN = "admin"
UNPRIVILEGED = "kurative"
CONTROLLER_MANAGER = "system:kube-controller-manager"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# Controllers the contract tests rely on. Left out on purpose: nodelifecycle (it would taint the
# kubelet-less Node objects and evict their pods), podgc, HPA (needs a metrics API), endpoints, csr*.
CONTROLLERS = (
    "deployment",
    "replicaset",
    "garbagecollector",
    "disruption",
    "namespace",
    "statefulset",
    "daemonset",
    "job",
    "cronjob",
    "serviceaccount",
    "serviceaccount-token",
)
STOP_GRACE_SECONDS = 10.0
PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class RealKubeError(RuntimeError):
    """The real control plane could not be started; the message carries the tail of the failing log."""


class _PortTaken(RealKubeError):
    """A server lost the race for the free port picked for it; starting again with new ports helps."""


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies, whatever the reason."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RealKubeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_pki(pki: Path) -> None:
    """A private CA, a serving certificate for 127.0.0.1/localhost and a service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "3650", "-subj", "/CN=kurative-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=pki,
    )  # fmt: skip
    (pki / "serving.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
        "-subj", "/CN=kube-apiserver",
        cwd=pki,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "apiserver.crt", "-days", "3650", "-extfile", "serving.ext",
        cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_bytes(self) -> int:
        """Resident memory now (VmRSS), 0 when the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=STOP_GRACE_SECONDS)


@dataclass
class RealCluster:
    """A running control plane. Use as a context manager, or call stop() yourself."""

    workdir: Path
    host: str
    ca_cert: Path
    tokens: dict[str, str]
    etcd_url: str
    processes: list[_Process] = field(default_factory=list)
    ready_seconds: float = 0.0
    verify_ssl: bool = True

    @property
    def admin_token(self) -> str:
        return self.tokens[ADMIN]

    def user_token(self, name: str) -> str:
        """The bearer token of a user from the token file (admin, kurative, or one given at start)."""
        try:
            return self.tokens[name]
        except KeyError:
            raise KeyError(f"no user {name!r} in the token file; known: {sorted(self.tokens)}") from None

    def kubeconfig(self, path: Path, user: str = ADMIN) -> Path:
        """Write a kubeconfig (JSON is YAML) for `user` that kubectl and the kubernetes client load."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "realkube",
                    "cluster": {"server": self.host, "certificate-authority": str(self.ca_cert)},
                }
            ],
            "users": [{"name": user, "user": {"token": self.user_token(user)}}],
            "contexts": [{"name": f"{user}@realkube", "context": {"cluster": "realkube", "user": user}}],
            "current-context": f"{user}@realkube",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        return path

    def api_client(self, user: str = ADMIN) -> ApiClient:
        """A `kubernetes.client.ApiClient` authenticated as `user`; close it when done."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.host
        configuration.ssl_ca_cert = str(self.ca_cert)
        configuration.verify_ssl = self.verify_ssl
        configuration.api_key = {"authorization": self.user_token(user)}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component, for reports."""
        return {proc.name: proc.rss_bytes() for proc in self.processes}

    def pids(self) -> dict[str, int]:
        return {proc.name: proc.pid for proc in self.processes}

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def stop(self) -> None:
        """Stop every component by PID, newest first (controller-manager, apiserver, etcd)."""
        while self.processes:
            self.processes.pop().stop()

    def __enter__(self) -> RealCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(name: str, argv: Sequence[str], workdir: Path) -> _Process:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets PDEATHSIG; tests spawn from one thread
        )
    return _Process(name=name, popen=popen, log=log)


def _wait_for(
    what: str,
    proc: _Process,
    probe: Callable[[], bool],
    deadline: float,
) -> None:
    while True:
        if proc.popen.poll() is not None:
            tail = _tail(proc.log)
            error = _PortTaken if "address already in use" in tail else RealKubeError
            raise error(
                f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}; "
                f"log {proc.log}:\n{tail}"
            )
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RealKubeError(f"timed out waiting for {what}; log {proc.log}:\n{_tail(proc.log)}")
        time.sleep(0.1)


def _http_get(
    url: str, *, token: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        err.close()
        return int(err.code), body


def _is_ok(url: str, *, token: str | None = None, context: ssl.SSLContext | None = None) -> bool:
    return _http_get(url, token=token, context=context)[0] == 200


def _write_tokens(path: Path, users: Mapping[str, Sequence[str]]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    lines = []
    for uid, (user, groups) in enumerate(users.items(), start=1):
        token = secrets.token_hex(16)
        tokens[user] = token
        group_field = f',"{",".join(groups)}"' if groups else ""
        lines.append(f"{token},{user},{uid}{group_field}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return tokens


def start_real_cluster(
    workdir: Path,
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    bin_dir: Path | None = None,
    controller_manager: bool = True,
    timeout: float = 90.0,
    extra_apiserver_args: Sequence[str] = (),
) -> RealCluster:
    """Start etcd, kube-apiserver and (optionally) kube-controller-manager; return once usable.

    `users` adds token users (name -> groups) to the built-in ones: ``admin`` (system:masters) and
    ``kurative`` (no groups, so no privileges until a test grants them). Returns when /readyz is ok,
    the default namespace and the RBAC bootstrap roles exist and the controller-manager is healthy.
    On any failure everything started so far is stopped before the error is raised.
    """
    started = time.monotonic()
    deadline = started + timeout
    bins = bin_dir or kube_build.bin_dir()
    for name in kube_build.BINARIES:
        if not os.access(bins / name, os.X_OK):
            raise RealKubeError(
                f"{bins / name} is missing; build it with `.venv/bin/python -m tests.support.kube_build`"
            )
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    make_pki(pki)
    all_users: dict[str, Sequence[str]] = {
        ADMIN: ("system:masters",),
        UNPRIVILEGED: (),
        CONTROLLER_MANAGER: ("system:masters",),
    }
    all_users.update(users or {})
    tokens = _write_tokens(workdir / "tokens.csv", all_users)

    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            cluster = _launch(
                workdir,
                bins=bins,
                tokens=tokens,
                controller_manager=controller_manager,
                extra_apiserver_args=extra_apiserver_args,
                deadline=deadline,
            )
        except _PortTaken:
            # Free ports are picked before the servers bind them; another test may have won the race.
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        cluster.ready_seconds = time.monotonic() - started
        return cluster
    raise AssertionError("unreachable")


def _launch(
    workdir: Path,
    *,
    bins: Path,
    tokens: dict[str, str],
    controller_manager: bool,
    extra_apiserver_args: Sequence[str],
    deadline: float,
) -> RealCluster:
    """One try at starting the three servers on freshly picked ports."""
    pki = workdir / "pki"
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    shutil.rmtree(workdir / "etcd", ignore_errors=True)
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    host = f"https://127.0.0.1:{api_port}"
    cluster = RealCluster(
        workdir=workdir, host=host, ca_cert=pki / "ca.crt", tokens=tokens, etcd_url=etcd_url
    )
    try:
        etcd = _spawn(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=realkube",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=realkube={peer_url}",
                "--initial-cluster-state=new",
                "--listen-metrics-urls=",
                "--log-level=warn",
                "--logger=zap",
                "--quota-backend-bytes=1073741824",
                # A single member: elect itself at once instead of after the default 1 s.
                "--heartbeat-interval=10",
                "--election-timeout=100",
            ],
            workdir,
        )
        cluster.processes.append(etcd)
        _wait_for(
            "etcd /health",
            etcd,
            lambda: json.loads(_http_get(f"{etcd_url}/health")[1]).get("health") == "true",
            deadline,
        )

        apiserver = _spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                # Endpoints may not hold loopback addresses; nothing here needs the kubernetes Service.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *extra_apiserver_args,
            ],
            workdir,
        )
        cluster.processes.append(apiserver)
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        admin = tokens[ADMIN]
        _wait_for(
            "kube-apiserver /readyz",
            apiserver,
            functools.partial(_is_ok, f"{host}/readyz", context=tls),
            deadline,
        )
        for path in (
            "/api/v1/namespaces/default",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-controller-manager",
        ):
            _wait_for(
                f"GET {path}",
                apiserver,
                functools.partial(_is_ok, f"{host}{path}", token=admin, context=tls),
                deadline,
            )

        if controller_manager:
            kubeconfig = cluster.kubeconfig(
                workdir / "kube-controller-manager.kubeconfig", CONTROLLER_MANAGER
            )
            cm_port = free_port()
            manager = _spawn(
                "kube-controller-manager",
                [
                    str(bins / "kube-controller-manager"),
                    f"--kubeconfig={kubeconfig}",
                    "--address=127.0.0.1",
                    f"--port={cm_port}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    f"--controllers={','.join(CONTROLLERS)}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    "--profiling=false",
                    "--v=1",
                ],
                workdir,
            )
            cluster.processes.append(manager)
            _wait_for(
                "kube-controller-manager /healthz",
                manager,
                functools.partial(_is_ok, f"http://127.0.0.1:{cm_port}/healthz"),
                deadline,
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def real_cluster(workdir: Path, **kwargs: Any) -> Iterator[RealCluster]:
    """Context-manager form of start_real_cluster: everything is stopped when the block exits."""
    cluster = start_real_cluster(workdir, **kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
