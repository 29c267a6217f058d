"""The README's action table and the deploy manifests' generated parts match the code (`make docs`)."""

from __future__ import annotations

from ruamel.yaml import YAML

from tests.support.generated import (
    BASE,
    BASE_RULES,
    OWN_RBAC,
    RBAC,
    README,
    base_playbooks,
    own_rbac_patch,
    rbac_for_rules,
    readme_with_table,
)


def test_readme_action_table_is_current() -> None:
    text = README.read_text()
    assert readme_with_table(text) == text, "run `make docs`"
    assert "| `kubernetes.drain` |" in text


def test_deploy_rbac_is_current() -> None:
    assert RBAC.read_text() == rbac_for_rules(), "run `make docs`"
    assert (
        "# Kubernetes Secrets read (get by name only): kurative/kurative-auth, kurative/kurative-webhooks"
        in (RBAC.read_text())
    )
    assert OWN_RBAC.read_text() == own_rbac_patch(), "run `make docs`"


def test_the_base_deploys_the_repository_playbooks() -> None:
    copied = {path.name: path.read_text() for path in sorted(BASE_RULES.glob("*.yaml"))}
    assert copied == base_playbooks(), "run `make docs`"
    kustomization = YAML(typ="safe").load((BASE / "playbooks" / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == [f"rules/{name}" for name in copied], "list every playbook in the generator"
    for name, text in copied.items():
        first = text.splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), name
        schema = (BASE_RULES / first.split("$schema=", 1)[1]).resolve()
        assert schema.is_file(), f"{name}: the $schema comment points at {schema}, which does not exist"
