"""The start-up's Kubernetes check: without a configuration it says why without importing the client,
in the adapter's own words; with one, it builds the client as a step would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kurative.adapters.kube_settings import KubeSettings, missing_config
from kurative.adapters.kubernetes import ClusterConfigError, KubernetesAdapter
from kurative.daemon import LazyKubernetes
from kurative.execution.breakers import BreakerPolicy


@pytest.fixture(autouse=True)
def _not_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _adapter_says(settings: KubeSettings) -> str:
    adapter = KubernetesAdapter(settings)
    try:
        with pytest.raises(ClusterConfigError) as raised:
            adapter.client(None)
    finally:
        adapter.close()
    return str(raised.value)


@pytest.mark.parametrize("where", ["setting", "env", "home"])
def test_no_configuration_reads_as_the_adapter_says_it(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(tmp_path / "missing.yaml")
    settings = KubeSettings(kubeconfig=missing) if where == "setting" else KubeSettings()
    if where == "env":
        monkeypatch.setenv("KUBECONFIG", f"{missing}:{tmp_path / 'other.yaml'}")
    said = missing_config(settings, None)
    assert said is not None
    assert said.startswith("no Kubernetes config: ")
    assert said == _adapter_says(settings)
    lazy = LazyKubernetes(settings, BreakerPolicy())
    assert lazy.configured() == said


def test_a_kubeconfig_that_exists_is_loaded_and_its_problem_said(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    settings = KubeSettings(kubeconfig=str(broken))
    assert missing_config(settings, None) is None
    lazy = LazyKubernetes(settings, BreakerPolicy())
    try:
        said = lazy.configured()
    finally:
        lazy.close()
    assert said is not None
    assert said.startswith(f"cannot load Kubernetes config from {broken}: ")


def test_without_a_configuration_the_client_is_not_imported(tmp_path: Path) -> None:
    code = f"""
        import sys
        from kurative.adapters.kube_settings import KubeSettings
        from kurative.daemon import LazyKubernetes
        from kurative.execution.breakers import BreakerPolicy
        lazy = LazyKubernetes(KubeSettings(kubeconfig={str(tmp_path / "none.yaml")!r}), BreakerPolicy())
        print(lazy.configured())
        print("kubernetes" in sys.modules)
        """
    command = [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    said, imported = done.stdout.splitlines()
    assert said.startswith("no Kubernetes config: ")
    assert imported == "False"
