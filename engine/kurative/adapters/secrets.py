"""Secrets by reference: a playbook names ``{secretRef: name}``, the daemon config says where it lives.

A secret is an environment variable, a file (re-read on every use, so a rotated Kubernetes Secret
volume or a Vault agent's file is picked up without a restart) or a key of a Kubernetes Secret (read
through the Kubernetes adapter's JSON API and base64-decoded). One trailing newline is stripped from
either, as ``echo`` and most editors add one (``kubectl create secret --from-file`` keeps it): the
same Secret gives the same value mounted as a file or read through the API. The value is resolved
when a step runs, never when a playbook loads, and travels as a :class:`Secret`, whose ``repr`` and
``str`` show only its name, so a value that ends up in a log line, an error or an output by mistake
still reads ``<secret name>``.

A secret that cannot be found is a permanent error naming the reference and where it was looked
for, never a value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kurative.errors import ObjectNotFound, PermanentActionError

if TYPE_CHECKING:
    from kurative.adapters.kubernetes import KubernetesAdapter


class Secret:
    """A secret value that never shows itself: ``repr``/``str``/``format`` give ``<secret name>``."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one place that must send it (a header, a URL)."""
        return self._value

    def __repr__(self) -> str:
        return f"<secret {self.name}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


class SecretNotFound(PermanentActionError):
    """The reference is not configured, or its source (variable, file, Secret key) has no value."""


@dataclass(frozen=True, slots=True)
class EnvSecret:
    """``{env: NAME}``: the value of an environment variable of the daemon."""

    env: str
    """Name of the environment variable."""


@dataclass(frozen=True, slots=True)
class FileSecret:
    """``{file: PATH}``: the content of a file, re-read on every use, one trailing newline stripped."""

    file: str
    """Path of the file (e.g. a mounted Kubernetes Secret volume)."""


@dataclass(frozen=True, slots=True)
class KubernetesSecret:
    """``{kubernetes: {namespace, name, key}}``: one key of a Kubernetes Secret."""

    namespace: str
    """Namespace of the Secret."""
    name: str
    """Name of the Secret."""
    key: str
    """Key in the Secret's ``data``."""
    cluster: str | None = None
    """Cluster to read it from; None: the default cluster."""


SecretSource = EnvSecret | FileSecret | KubernetesSecret


@dataclass(frozen=True, slots=True)
class SecretSettings:
    """The ``secrets:`` section of the daemon config: reference name -> where the value lives."""

    sources: Mapping[str, SecretSource] = field(default_factory=dict)
    """Every secret a playbook may name with ``{secretRef: name}``."""


class SecretStore:
    """Resolves ``secretRef`` names at run time; ``kubernetes`` reads Kubernetes Secrets."""

    def __init__(
        self,
        settings: SecretSettings | None = None,
        *,
        kubernetes: KubernetesAdapter | None = None,
        environ: Mapping[str, str] | None = None,
        resolved: Callable[[str], None] = lambda value: None,
    ) -> None:
        """``resolved`` is told every value handed out (the daemon's log redactor learns them)."""
        self.settings = settings or SecretSettings()
        self._kubernetes = kubernetes
        self._environ = os.environ if environ is None else environ
        self._resolved = resolved

    def __repr__(self) -> str:
        return f"SecretStore({sorted(self.settings.sources)})"

    async def resolve(self, name: str) -> Secret:
        """The value of the secret ``name``; :class:`SecretNotFound` when it has none."""
        source = self.settings.sources.get(name) if isinstance(name, str) else None
        if source is None:
            known = ", ".join(sorted(self.settings.sources)) or "none"
            raise SecretNotFound(
                f"secretRef {str(name)[:100]!r} is not configured: add it to the secrets section of the "
                f"daemon config (configured: {known})"
            )
        if isinstance(source, EnvSecret):
            value = self._environ.get(source.env)
            where = f"environment variable {source.env}"
        elif isinstance(source, FileSecret):
            value = await asyncio.to_thread(_read_file, name, source.file)
            where = f"file {source.file}"
        else:
            value = await self._read_kubernetes(name, source)
            where = f"key {source.key} of Kubernetes Secret {source.namespace}/{source.name}"
        if value is None:
            raise SecretNotFound(f"secretRef {name!r}: {where} does not exist")
        if not value:
            raise SecretNotFound(f"secretRef {name!r}: {where} is empty")
        self._resolved(value)
        return Secret(name, value)

    async def _read_kubernetes(self, ref: str, source: KubernetesSecret) -> str | None:
        if self._kubernetes is None:
            raise SecretNotFound(
                f"secretRef {ref!r} lives in a Kubernetes Secret, but no Kubernetes client is configured"
            )
        path = f"/api/v1/namespaces/{source.namespace}/secrets/{source.name}"
        try:
            found = await self._kubernetes.client(source.cluster).request("GET", path)
        except ObjectNotFound:
            raise SecretNotFound(
                f"secretRef {ref!r}: Kubernetes Secret {source.namespace}/{source.name} does not exist"
            ) from None
        data = (found.get("data") or {}) if isinstance(found, dict) else {}
        encoded = data.get(source.key)
        if encoded is None:
            return None
        try:
            return _without_final_newline(base64.b64decode(encoded, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError):
            raise SecretNotFound(
                f"secretRef {ref!r}: key {source.key} of Kubernetes Secret {source.namespace}/{source.name} "
                "is not base64-encoded UTF-8 text"
            ) from None


def _read_file(ref: str, path: str) -> str | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        # Never the exception's text: a decoding error quotes the bytes it choked on.
        raise SecretNotFound(
            f"secretRef {ref!r}: file {path} cannot be read ({type(exc).__name__})"
        ) from None
    return _without_final_newline(text)


def _without_final_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
