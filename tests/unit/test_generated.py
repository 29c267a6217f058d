"""The README's action table and deploy/rbac.yaml match what the code generates (`make docs`)."""

from __future__ import annotations

from tests.support.generated import RBAC, README, rbac_for_rules, readme_with_table


def test_readme_action_table_is_current() -> None:
    text = README.read_text()
    assert readme_with_table(text) == text, "run `make docs`"
    assert "| `kubernetes.drain` |" in text


def test_deploy_rbac_is_current() -> None:
    assert RBAC.read_text() == rbac_for_rules(), "run `make docs`"
