"""Secrets by reference from env, files and a Kubernetes Secret on the fake API server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kurative.adapters.kubernetes import KubernetesAdapter
from kurative.adapters.secrets import (
    EnvSecret,
    FileSecret,
    KubernetesSecret,
    Secret,
    SecretNotFound,
    SecretSettings,
    SecretStore,
)
from tests.integration.kube.helpers import Kube

VALUE = "xoxb-very-secret-value-42"


def store(kube: KubernetesAdapter | None = None, **sources: object) -> SecretStore:
    return SecretStore(SecretSettings(sources), kubernetes=kube, environ={"HOOK": VALUE})  # type: ignore[arg-type]


async def test_from_an_environment_variable() -> None:
    secret = await store(hook=EnvSecret("HOOK")).resolve("hook")
    assert secret.reveal() == VALUE
    assert repr(secret) == str(secret) == f"{secret}" == "<secret hook>"
    assert VALUE not in repr([secret, {"s": secret}])


async def test_a_missing_variable_names_the_reference_and_the_variable() -> None:
    with pytest.raises(SecretNotFound, match="secretRef 'token': environment variable NOPE does not exist"):
        await store(token=EnvSecret("NOPE")).resolve("token")


async def test_an_unknown_reference_lists_the_configured_ones() -> None:
    with pytest.raises(SecretNotFound, match=r"'slack' is not configured.*\(configured: hook\)"):
        await store(hook=EnvSecret("HOOK")).resolve("slack")


async def test_a_file_is_re_read_on_every_use_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    secrets = store(token=FileSecret(str(path)))
    assert (await secrets.resolve("token")).reveal() == "first"
    path.write_text("second\n\n")  # rotated; only one newline is the editor's
    assert (await secrets.resolve("token")).reveal() == "second\n"
    path.write_text("crlf\r\n")
    assert (await secrets.resolve("token")).reveal() == "crlf"
    path.unlink()
    with pytest.raises(SecretNotFound, match=f"secretRef 'token': file {path} does not exist"):
        await secrets.resolve("token")


async def test_an_unreadable_file_never_quotes_its_content(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + VALUE.encode())
    with pytest.raises(SecretNotFound) as caught:
        await store(token=FileSecret(str(path))).resolve("token")
    assert VALUE not in str(caught.value)
    assert "cannot be read (UnicodeDecodeError)" in str(caught.value)


@pytest.mark.kube
async def test_from_a_kubernetes_secret(kube: Kube, kube_adapter: KubernetesAdapter) -> None:
    encoded = base64.b64encode(VALUE.encode()).decode()
    from_file = base64.b64encode(VALUE.encode() + b"\n").decode()  # kubectl create secret --from-file
    data = {"slack": encoded, "from-file": from_file}
    kube.create(
        kube.ns_path("secrets"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "data": data},
    )
    secrets = store(
        kube_adapter,
        slack=KubernetesSecret(kube.namespace, "hooks", "slack"),
        file=KubernetesSecret(kube.namespace, "hooks", "from-file"),
        other=KubernetesSecret(kube.namespace, "hooks", "pagerduty"),
        gone=KubernetesSecret(kube.namespace, "nothing-here", "slack"),
    )
    with capture_logs() as logs:
        assert (await secrets.resolve("slack")).reveal() == VALUE
        assert (await secrets.resolve("file")).reveal() == VALUE  # as the same Secret mounted as a file
        with pytest.raises(
            SecretNotFound,
            match=f"'other': key pagerduty of Kubernetes Secret {kube.namespace}/hooks does not exist",
        ) as missing_key:
            await secrets.resolve("other")
        with pytest.raises(
            SecretNotFound, match=f"Kubernetes Secret {kube.namespace}/nothing-here does not exist"
        ) as missing_secret:
            await secrets.resolve("gone")
    for text in (str(missing_key.value), str(missing_secret.value), repr(logs)):
        assert VALUE not in text
        assert encoded not in text


def test_a_secret_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret("hook", VALUE))
