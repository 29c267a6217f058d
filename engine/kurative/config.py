"""The daemon's settings: one typed object, built once at start from flags, environment, file, defaults.

Precedence is flags > ``KURATIVE_*`` environment variables > the config file > defaults. The file is
validated like a playbook, with positioned diagnostics (``config.yaml:7:3: E102 ... (hint: ...)``), and
the daemon refuses to start on an invalid one. Each layer keeps its own settings dataclass
(:class:`~kurative.ingress.settings.IngressSettings`, :class:`~kurative.journal.settings.JournalSettings`,
:class:`~kurative.execution.settings.RunnerSettings`, the Kubernetes adapter's ``KubeSettings`` and the
actions' ``KubeGuards``...) and gets exactly that section; nothing reads settings from a module global.

Relative paths in the file (playbook folders, TLS files, secret files, the kubeconfig) are relative to
the file's folder, as Prometheus resolves its rule files; paths given as flags or in the environment are
relative to the working directory.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kurative.actions.kubernetes import KubeGuards
from kurative.adapters.kube_settings import KubeSettings
from kurative.adapters.prometheus import PrometheusSettings
from kurative.adapters.secrets import EnvSecret, FileSecret, KubernetesSecret, SecretSettings, SecretSource
from kurative.diagnostics import Diagnostic, has_errors
from kurative.durations import parse_duration
from kurative.errors import ConfigError, UsageError
from kurative.execution.breakers import BreakerSettings, BreakerThresholds
from kurative.execution.settings import RunnerSettings
from kurative.ingress.settings import IngressSettings
from kurative.journal.settings import JournalSettings
from kurative.logging import FORMATS, LEVELS, LoggingSettings
from kurative.playbooks.configs import config_diagnostics
from kurative.playbooks.loading import is_config
from kurative.playbooks.yamlload import load_yaml_file

ENV_PREFIX = "KURATIVE_"
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class RulesSettings:
    paths: tuple[str, ...] = ()
    """Playbook folders or files."""
    watch: bool = True
    """Reload when they change (and on SIGHUP)."""


@dataclass(frozen=True, slots=True)
class AuthRefs:
    """Which secrets hold the credentials; resolved to values at start, never kept in the settings."""

    bearer_tokens: tuple[str, ...] = ()
    basic: tuple[tuple[str, str], ...] = ()
    """(username, name of the secret holding the password)."""
    bearer_names: tuple[str, ...] = ()
    """Who holds each of ``bearer_tokens`` (``token#N`` when the config names nobody)."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says; None leaves the value to the environment, the file or the default."""

    config: str | None = None
    rules: tuple[str, ...] = ()
    journal: str | None = None
    listen: str | None = None
    dry_run: bool | None = None
    migrate: bool | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon was configured with; each part goes to the layer it belongs to."""

    listen: IngressSettings = field(default_factory=IngressSettings)
    auth: AuthRefs = field(default_factory=AuthRefs)
    journal: JournalSettings = field(default_factory=JournalSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    guards: KubeGuards = field(default_factory=KubeGuards)
    kubernetes: KubeSettings = field(default_factory=KubeSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)
    """Secret name -> where its value is (environment variable, file, Kubernetes Secret key)."""
    breakers: BreakerSettings = field(default_factory=BreakerSettings)
    """Circuit-breaker thresholds, with per-target overrides."""
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    """The default Prometheus of ``prometheus.query`` steps."""
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str | None = None
    """The config file these settings came from, if any."""


def read_config_file(path: str) -> dict[str, Any]:
    """The validated content of one config file; :class:`ConfigError` with every diagnostic if not."""
    loaded = load_yaml_file(path)
    diagnostics: list[Diagnostic] = list(loaded.diagnostics)
    configs = [doc for doc in loaded.documents if is_config(doc)]
    if not diagnostics and len(loaded.documents) != 1:
        diagnostics.append(
            Diagnostic.make(
                path, 1, 1, "E107", "a config file holds exactly one document", "remove the others"
            )
        )
    elif not diagnostics and not configs:
        diagnostics.append(
            Diagnostic.make(
                path, 1, 1, "E107", "not a kurative config: kind must be 'Config'", "write kind: Config"
            )
        )
    for doc in configs:
        diagnostics.extend(config_diagnostics(doc))
    if has_errors(diagnostics):
        raise ConfigError(f"{path}: invalid config", tuple(sorted(diagnostics)))
    data: dict[str, Any] = configs[0].data
    return data


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (loopback)."""
    if not text or any(c.isspace() for c in text) or "\0" in text:
        raise UsageError(f"{where}: invalid listen address {text!r}: write HOST:PORT, e.g. 127.0.0.1:9095")
    try:
        parts = urllib.parse.urlsplit(f"//{text}")
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{where}: invalid listen address {text!r}: {exc}") from None
    if port is None:
        raise UsageError(f"{where}: invalid listen address {text!r}: a port is missing (HOST:PORT)")
    host = parts.netloc.rsplit(":", 1)[0]
    odd = parts.netloc != text or "@" in text or (host.startswith("[") and not host.endswith("]"))
    if odd or (host and not host.startswith("[") and ("[" in host or "]" in host)):
        raise UsageError(
            f"{where}: invalid listen address {text!r}: "
            "write only HOST:PORT, e.g. 127.0.0.1:9095 or [::1]:9095"
        )
    return parts.hostname or "127.0.0.1", port


def _flag(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise UsageError(f"{where}={value!r}: write true or false")


def _choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value.lower() not in allowed:
        raise UsageError(f"{ENV_PREFIX}{name}={value!r}: use one of {', '.join(allowed)}")
    return value.lower()


def _seconds(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key)
    return default if value is None else parse_duration(value)


def _relative(base: Path | None, path: str | None) -> str | None:
    if path is None or base is None or Path(path).is_absolute():
        return path
    return str(base / path)


def _secret_source(source: Mapping[str, Any], base: Path | None) -> SecretSource:
    if "env" in source:
        return EnvSecret(source["env"])
    if "file" in source:
        return FileSecret(_relative(base, source["file"]) or source["file"])
    where = source["kubernetes"]
    return KubernetesSecret(where["namespace"], where["name"], where["key"])


def _from_file(data: Mapping[str, Any], base: Path | None) -> Settings:
    listen = data.get("listen", {})
    tls = listen.get("tls", {})
    auth = data.get("auth", {})
    journal = data.get("journal", {})
    playbooks = data.get("playbooks", {})
    runner = data.get("runner", {})
    safety = data.get("safety", {})
    clusters = data.get("clusters", {})
    defaults = Settings()
    breakers = data.get("breakers", {})
    return Settings(
        listen=IngressSettings(
            host=listen.get("host", defaults.listen.host),
            port=listen.get("port", defaults.listen.port),
            tls_cert_file=_relative(base, tls.get("certFile")),
            tls_key_file=_relative(base, tls.get("keyFile")),
            max_body_bytes=listen.get("maxBodyBytes", defaults.listen.max_body_bytes),
            backlog=listen.get("backlog", defaults.listen.backlog),
            read_timeout=_seconds(listen, "readTimeout", defaults.listen.read_timeout),
            max_connections=listen.get("maxConnections", defaults.listen.max_connections),
        ),
        auth=AuthRefs(
            bearer_tokens=tuple(ref["secretRef"] for ref in auth.get("bearerTokens", ())),
            bearer_names=tuple(
                ref.get("name", f"token#{number}")
                for number, ref in enumerate(auth.get("bearerTokens", ()), 1)
            ),
            basic=tuple(
                (entry["username"], entry["password"]["secretRef"]) for entry in auth.get("basic", ())
            ),
        ),
        journal=JournalSettings(
            url=journal.get("url", defaults.journal.url),
            migrate=journal.get("migrate", defaults.journal.migrate),
            retention_seconds=_seconds(journal, "retention", defaults.journal.retention_seconds),
            wait_seconds=_seconds(journal, "wait", defaults.journal.wait_seconds),
            timeout_seconds=_seconds(journal, "timeout", defaults.journal.timeout_seconds),
        ),
        rules=RulesSettings(
            paths=tuple(_relative(base, p) or p for p in playbooks.get("paths", ())),
            watch=playbooks.get("watch", defaults.rules.watch),
        ),
        runner=RunnerSettings(
            workers=runner.get("workers", defaults.runner.workers),
            per_cluster=runner.get("perCluster", defaults.runner.per_cluster),
            lease_seconds=_seconds(runner, "lease", defaults.runner.lease_seconds),
            shutdown_timeout=_seconds(runner, "shutdownTimeout", defaults.runner.shutdown_timeout),
            poll_interval=_seconds(runner, "pollInterval", defaults.runner.poll_interval),
            dry_run=safety.get("dryRun", defaults.runner.dry_run),
            # the label picks a cluster only where the config maps clusters to contexts
            cluster_label=clusters.get("label", "cluster") if clusters.get("contexts") else None,
        ),
        guards=replace(
            defaults.guards,
            protected_namespaces=tuple(
                safety.get("protectedNamespaces", defaults.guards.protected_namespaces)
            ),
            allowed_namespaces=tuple(safety.get("namespaces", {}).get("allow", ())),
            denied_namespaces=tuple(safety.get("namespaces", {}).get("deny", ())),
        ),
        kubernetes=replace(
            defaults.kubernetes,
            kubeconfig=_relative(base, clusters.get("kubeconfig")),
            contexts=dict(clusters.get("contexts", {})),
            default_context=clusters.get("default"),
            read_timeout=_seconds(clusters, "timeout", defaults.kubernetes.read_timeout),
        ),
        secrets=SecretSettings(
            {name: _secret_source(source, base) for name, source in data.get("secrets", {}).items()}
        ),
        breakers=BreakerSettings(
            fail_max=breakers.get("failMax", defaults.breakers.fail_max),
            reset_timeout=_seconds(breakers, "resetTimeout", defaults.breakers.reset_timeout),
            overrides={
                target: BreakerThresholds(
                    fail_max=values.get("failMax"),
                    reset_timeout=_seconds(values, "resetTimeout", 0.0) or None,
                )
                for target, values in breakers.get("overrides", {}).items()
            },
        ),
        prometheus=PrometheusSettings(url=data.get("prometheus", {}).get("url")),
        logging=LoggingSettings(**data.get("logging", {})),
    )


def load_settings(overrides: Overrides, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings for ``kurative serve``; :class:`ConfigError` or :class:`UsageError` when invalid."""
    env = dict(os.environ if environ is None else environ)

    def from_env(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value if value else None

    path = overrides.config or from_env("CONFIG")
    settings = Settings()
    if path is not None:
        settings = replace(_from_file(read_config_file(path), Path(path).parent), source=path)

    journal = settings.journal
    url = overrides.journal or from_env("JOURNAL")
    if url is not None:
        journal = replace(journal, url=url)
    migrate = overrides.migrate
    if migrate is None and from_env("MIGRATE") is not None:
        migrate = _flag(env[ENV_PREFIX + "MIGRATE"], ENV_PREFIX + "MIGRATE")
    if migrate is not None:
        journal = replace(journal, migrate=migrate)

    listen = settings.listen
    address, where = overrides.listen, "--listen"
    if address is None and from_env("LISTEN") is not None:
        address, where = env[ENV_PREFIX + "LISTEN"], ENV_PREFIX + "LISTEN"
    if address is not None:
        host, port = parse_listen(address, where)
        listen = replace(listen, host=host, port=port)

    rules = settings.rules
    paths: Sequence[str] = overrides.rules or tuple(
        p for p in (from_env("RULES") or "").split(os.pathsep) if p
    )
    if paths:
        rules = replace(rules, paths=tuple(paths))

    runner = settings.runner
    dry_run = overrides.dry_run
    if dry_run is None and from_env("DRY_RUN") is not None:
        dry_run = _flag(env[ENV_PREFIX + "DRY_RUN"], ENV_PREFIX + "DRY_RUN")
    if dry_run is not None:
        runner = replace(runner, dry_run=dry_run)

    logs = settings.logging
    level = _choice(from_env("LOG_LEVEL"), "LOG_LEVEL", tuple(LEVELS))
    if level is not None:
        logs = replace(logs, level=level)
    form = _choice(from_env("LOG_FORMAT"), "LOG_FORMAT", FORMATS)
    if form is not None:
        logs = replace(logs, format=form)  # type: ignore[arg-type]  # one of FORMATS

    return replace(settings, journal=journal, listen=listen, rules=rules, runner=runner, logging=logs)
