"""The daemon's settings: positioned diagnostics for a bad file, and flags > environment > file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from kurative.adapters.secrets import EnvSecret, FileSecret
from kurative.config import Overrides, load_settings
from kurative.errors import ConfigError, UsageError
from kurative.ingress.settings import IngressSettings

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "config.yaml"


def test_defaults_without_a_file() -> None:
    settings = load_settings(Overrides(), {})
    assert settings.journal.url == "sqlite:///./kurative.db"
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 9095)
    assert settings.runner.dry_run is False
    assert settings.rules.paths == ()
    assert settings.source is None


def test_the_example_config_with_paths_relative_to_its_folder() -> None:
    settings = load_settings(Overrides(config=str(EXAMPLE)), {})
    assert settings.rules.paths == (str(EXAMPLE.parent / "playbooks"),)
    assert settings.runner.dry_run is True
    assert settings.guards.protected_namespaces == ("kube-system", "kube-public", "monitoring")
    assert settings.kubernetes.contexts == {"prod-eu-1": "prod-eu-1-admin"}
    assert settings.kubernetes.default_context == "kind-kurative"
    assert settings.auth.bearer_tokens == ("alertmanager-token",)
    assert settings.journal.retention_seconds == 30 * 86400
    assert settings.secrets.sources["slack-webhook"] == FileSecret("/var/run/secrets/kurative/slack-webhook")
    assert settings.secrets.sources["alertmanager-token"] == EnvSecret("KURATIVE_ALERTMANAGER_TOKEN")
    assert (settings.breakers.fail_max, settings.breakers.reset_timeout) == (5, 30.0)
    assert settings.prometheus.url == "http://127.0.0.1:9090"


def test_flags_beat_the_environment_which_beats_the_file() -> None:
    env = {
        "KURATIVE_CONFIG": str(EXAMPLE),
        "KURATIVE_JOURNAL": "sqlite:///env.db",
        "KURATIVE_LISTEN": "127.0.0.2:9100",
        "KURATIVE_RULES": "a:b",
        "KURATIVE_DRY_RUN": "false",
        "KURATIVE_LOG_LEVEL": "DEBUG",
    }
    from_env = load_settings(Overrides(), env)
    assert from_env.source == str(EXAMPLE)
    assert from_env.journal.url == "sqlite:///env.db"
    assert (from_env.listen.host, from_env.listen.port) == ("127.0.0.2", 9100)
    assert from_env.rules.paths == ("a", "b")
    assert from_env.runner.dry_run is False
    assert from_env.logging.level == "debug"
    flags = Overrides(
        journal="sqlite:///flag.db", listen="[::1]:9200", rules=("c",), dry_run=True, migrate=True
    )
    from_flags = load_settings(flags, env)
    assert from_flags.journal.url == "sqlite:///flag.db"
    assert from_flags.journal.migrate is True
    assert (from_flags.listen.host, from_flags.listen.port) == ("::1", 9200)
    assert from_flags.rules.paths == ("c",)
    assert from_flags.runner.dry_run is True


def test_an_invalid_file_is_refused_with_every_positioned_diagnostic(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("  watch: true", "  wtach: true").replace("failMax: 5", "failMax: 0")
    text = text.replace("{secretRef: alertmanager-token}", "{secretRef: alertmanager-tokn}")
    bad = tmp_path / "config.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(Overrides(config=str(bad)), {})
    lines = [str(d) for d in caught.value.diagnostics]
    assert lines == [
        f"{bad}:8:19: E110 secretRef 'alertmanager-tokn' names no secret of the secrets section "
        "(hint: did you mean 'alertmanager-token'?)",
        f"{bad}:15:3: E102 unknown field 'wtach' in playbooks (hint: did you mean 'watch'?)",
        f"{bad}:23:21: E104 breakers.failMax must be at least 1, not 0 (hint: use a value at least 1)",
    ]


def test_namespace_allow_and_deny_lists_reach_the_guards(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: kurative/v1\nkind: Config\nsafety:\n"
        "  namespaces:\n    allow: [shop, payments]\n    deny: [payments]\n"
    )
    guards = load_settings(Overrides(config=str(config)), {}).guards
    assert (guards.allowed_namespaces, guards.denied_namespaces) == (("shop", "payments"), ("payments",))
    assert guards.refusal("shop") is None
    assert guards.refusal("payments") == "is denied (safety.namespaces.deny)"
    assert guards.refusal("other") == "is not allowed (safety.namespaces.allow)"
    assert guards.refusal("kube-system") == "is protected"


def test_a_namespace_that_can_never_match_is_refused_where_it_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "apiVersion: kurative/v1\nkind: Config\nsafety:\n  protectedNamespaces: [Kube-System]\n"
        f"  namespaces:\n    deny: [ok, {'x' * 64}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(Overrides(config=str(bad)), {})
    hint = (
        "(hint: a namespace name is a DNS-1123 label: lower-case letters, digits and '-', at most 63 "
        "characters; this entry would never match one)"
    )
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{bad}:4:25: E108 invalid namespace 'Kube-System' at safety.protectedNamespaces[0] {hint}",
        f"{bad}:6:16: E108 invalid namespace '{'x' * 64}' at safety.namespaces.deny[1] {hint}",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("apiVersion: kurative/v1\nkind: Playbook\n", "kind must be 'Config'"),
        ("apiVersion: kurative/v1\nkind: Config\n---\nkind: Config\n", "exactly one document"),
        ("a: *nothing\n", "E0"),
        ("\xff\xfe", "E001"),
    ],
)
def test_files_that_are_no_config(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(Overrides(config=str(bad)), {})
    assert any(message in str(d) for d in caught.value.diagnostics)


def test_an_unreadable_or_huge_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(Overrides(config=str(tmp_path / "missing.yaml")), {})
    assert [(d.code, "cannot read file" in d.message) for d in missing.value.diagnostics] == [("E001", True)]
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as out:
        out.truncate(50 * 1024 * 1024)
    with pytest.raises(ConfigError) as big:
        load_settings(Overrides(config=str(huge)), {})
    assert [d.code for d in big.value.diagnostics] == ["E005"]


@pytest.mark.parametrize(
    "listen",
    [
        *("nohost", "127.0.0.1:99999", "127.0.0.1:http", "[::1:9095", "a b:1", "127.0.0.1:9\x0095", ""),
        # nothing around HOST:PORT is dropped without a word
        *(
            "127.0.0.1:9095/x",
            "127.0.0.1:9095?a=b",
            "127.0.0.1:9095#x",
            "[::1]junk:9095",
            "user:pw@10.0.0.1:80",
        ),
    ],
)
def test_bad_listen_addresses_are_usage_errors(listen: str) -> None:
    with pytest.raises(UsageError, match="listen address"):
        load_settings(Overrides(listen=listen), {})


@pytest.mark.parametrize(
    ("name", "value"),
    [("KURATIVE_DRY_RUN", "maybe"), ("KURATIVE_LOG_FORMAT", "xml"), ("KURATIVE_MIGRATE", "2")],
)
def test_bad_environment_values_are_usage_errors(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        load_settings(Overrides(), {name: value})


def test_the_kubernetes_read_timeout_comes_from_clusters_timeout(tmp_path: Path) -> None:
    assert load_settings(Overrides(), {}).kubernetes.read_timeout == 30.0
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: kurative/v1\nkind: Config\nclusters: {timeout: 1500ms}\n")
    assert load_settings(Overrides(config=str(config)), {}).kubernetes.read_timeout == 1.5
    config.write_text("apiVersion: kurative/v1\nkind: Config\nclusters: {timeout: soon}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(Overrides(config=str(config)), {})
    assert any("timeout" in str(d) for d in caught.value.diagnostics)


def test_the_ingress_read_timeout_and_connection_limit(tmp_path: Path) -> None:
    defaults = load_settings(Overrides(), {}).listen
    assert (defaults.read_timeout, defaults.max_connections) == (30.0, 4096)
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: kurative/v1\nkind: Config\nlisten: {readTimeout: 5s, maxConnections: 2000}\n"
    )
    listen = load_settings(Overrides(config=str(config)), {}).listen
    assert (listen.read_timeout, listen.max_connections) == (5.0, 2000)
    config.write_text("apiVersion: kurative/v1\nkind: Config\nlisten: {maxConnections: 3}\n")
    with pytest.raises(ConfigError):
        load_settings(Overrides(config=str(config)), {})


@pytest.mark.parametrize("value", ["0s", "0ms", "500ms"])
def test_a_read_timeout_under_one_second_is_a_positioned_config_error(tmp_path: Path, value: str) -> None:
    """readTimeout 0s answered every request 408 before it was parsed."""
    config = tmp_path / "config.yaml"
    config.write_text(f"apiVersion: kurative/v1\nkind: Config\nlisten:\n  readTimeout: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(Overrides(config=str(config)), {})
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{config}:4:16: E104 listen.readTimeout must be at least 1s, not {value} (hint: a client has "
        "this long to send a whole request: use 1s or more (default 30s))"
    ]
    config.write_text("apiVersion: kurative/v1\nkind: Config\nlisten: {readTimeout: 1s}\n")
    assert load_settings(Overrides(config=str(config)), {}).listen.read_timeout == 1.0


def test_the_ingress_settings_refuse_a_read_timeout_under_one_second() -> None:
    with pytest.raises(ConfigError, match="readTimeout must be at least 1s"):
        IngressSettings(read_timeout=0.0).check()
    IngressSettings(read_timeout=1.0).check()


def test_journal_timeout_bounds_each_operation_by_default_and_zero_lifts_the_bound(tmp_path: Path) -> None:
    assert load_settings(Overrides(), {}).journal.timeout_seconds == 10.0
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: kurative/v1\nkind: Config\njournal: {timeout: 2500ms}\n")
    assert load_settings(Overrides(config=str(config)), {}).journal.timeout_seconds == 2.5
    config.write_text("apiVersion: kurative/v1\nkind: Config\njournal: {timeout: 0s}\n")
    assert load_settings(Overrides(config=str(config)), {}).journal.timeout_seconds == 0.0
