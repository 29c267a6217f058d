"""What the ingress needs to know: where it listens, how big a body may be, who may post."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from kurative.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9095
MIN_READ_TIMEOUT = 1.0
"""Seconds; the least ``read_timeout`` (``kurative.playbooks.configs`` says so with the position)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Resolved credentials: bearer tokens and (user, password) pairs. Never printed: the repr names
    how many there are, not what they are. Each one has a name, the identity the journal records for
    approvals: the token's ``name`` from the config, the user name for basic auth."""

    bearer_tokens: tuple[str, ...] = ()
    basic: tuple[tuple[str, str], ...] = ()
    bearer_names: tuple[str, ...] = ()
    """Who holds each bearer token, in the same order; a token without a name is ``token#N``."""

    def __bool__(self) -> bool:
        return bool(self.bearer_tokens or self.basic)

    def __repr__(self) -> str:
        return f"Credentials(bearer_tokens={len(self.bearer_tokens)}, basic={len(self.basic)})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class IngressSettings:
    """The ``listen`` section of the daemon config."""

    host: str = DEFAULT_HOST
    """Address to bind; anything but loopback needs credentials."""
    port: int = DEFAULT_PORT
    """TCP port; 0 picks a free one (tests)."""
    tls_cert_file: str | None = None
    """PEM certificate chain; with ``tls_key_file`` the ingress speaks HTTPS only."""
    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file``."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest request body accepted; a larger one is answered 413 before it is read whole."""
    max_header_bytes: int = 64 * 1024
    """Largest request line and headers accepted; a client that sends more is answered 431 and
    disconnected (:mod:`kurative.ingress.protocol`)."""
    read_timeout: float = 30.0
    """Seconds a client has to send a whole request (from connecting, for its first one); a slower
    one is answered 408 and disconnected, so that slow clients cannot hold connections for ever."""
    max_connections: int = 4096
    """Connections served at once; one more is closed as soon as it is accepted. The daemon raises
    its soft limit of open files to fit this many and its other files (up to the hard limit), and
    serves fewer, with a warning, when the hard limit leaves less room."""
    backlog: int = 2048
    """Listen backlog: 1,000 Alertmanager groups flushing at once must not be refused (the kernel
    caps it at net.core.somaxconn)."""
    retry_after: float = 5.0
    """Seconds a 503 asks the sender to wait while the journal cannot commit."""
    credentials: Credentials = field(default_factory=Credentials)
    """Who may post alerts and use the API; empty means no authentication (loopback only)."""

    def check(self) -> None:
        """Refuse a listener that would accept alerts from the network without credentials."""
        if not self.credentials and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host}:{self.port} without credentials: configure "
                "auth.bearerTokens or auth.basic, or listen on 127.0.0.1"
            )
        if not self.read_timeout >= MIN_READ_TIMEOUT:
            raise ConfigError(
                f"listen.readTimeout must be at least {MIN_READ_TIMEOUT:g}s, not {self.read_timeout:g}s: "
                "every request would be answered 408"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("listen.tls needs both certFile and keyFile")
        for what, path in (("certFile", self.tls_cert_file), ("keyFile", self.tls_key_file)):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"listen.tls.{what}: {path} is not a readable file")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
