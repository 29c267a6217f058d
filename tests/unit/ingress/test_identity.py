"""Who a credential is: the token's name from the config (``token#N`` without one), the user name for
basic auth. That name is what the journal records as who approved, rejected or cancelled."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kurative.config import Overrides, load_settings
from kurative.ingress.auth import authenticate
from kurative.ingress.settings import Credentials

pytestmark = pytest.mark.timeout(30)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_each_credential_is_known_by_its_name() -> None:
    credentials = Credentials(
        bearer_tokens=("t-alice", "t-unnamed"),
        basic=(("carol", "pw"),),
        bearer_names=("alice",),
    )
    assert authenticate(credentials, "Bearer t-alice") == "alice"
    assert authenticate(credentials, "Bearer t-unnamed") == "token#2"
    assert authenticate(credentials, basic("carol", "pw")) == "carol"
    assert authenticate(credentials, basic("carol", "wrong")) is None
    assert authenticate(credentials, "Bearer nope") is None
    assert "alice" not in repr(credentials)
    assert "t-alice" not in repr(credentials)


def test_the_config_names_tokens(tmp_path: Path) -> None:
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "auth": {"bearerTokens": [{"secretRef": "a", "name": "alice"}, {"secretRef": "b"}]},
        "secrets": {"a": {"env": "A"}, "b": {"env": "B"}},
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    settings = load_settings(Overrides(config=str(tmp_path / "config.yaml")), {})
    assert settings.auth.bearer_tokens == ("a", "b")
    assert settings.auth.bearer_names == ("alice", "token#2")
