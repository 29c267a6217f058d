"""What lint finds in an expression is found once per expression text, but reported for each playbook
that writes it, at its own position, and judged against each playbook's own trigger."""

from __future__ import annotations

from pathlib import Path

from kurative.linting.lint import lint_paths

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {{name: {name}, version: 1}}
spec:
  trigger:
    alertname: [{alertname}]
    status: {status}
    when: "labels.alertname == 'Foo' && alert.status == 'resolved' && labels.gone == null"
  steps:
    - name: first
      action: log
      params: {{message: "${{labels.namespace}}"}}
    - name: second
      action: log
      when: "steps.first.status == 'succeeded' && steps.third.status == 'failed'"
      params: {{message: "${{steps.first.status}} ${{steps.second.status}}"}}
"""


def test_each_playbook_gets_its_own_findings_for_a_shared_expression(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(PLAYBOOK.format(name="a", alertname="Foo", status="firing"))
    (tmp_path / "b.yaml").write_text("\n" + PLAYBOOK.format(name="b", alertname="Bar", status="resolved"))
    found = [(Path(d.path).name, d.line, d.code, d.message) for d in lint_paths([tmp_path]).diagnostics]
    bare = "null here is a field named 'null', not the literal (it reads as null)"
    third = "step 'second' reads steps.third, but there is no such step"
    itself = "step 'second' reads steps.second, which is this step itself"
    firing_only = "alert.status == 'resolved' is never true: the trigger admits only firing alerts"
    only_bar = "labels.alertname == 'Foo' is never true: the trigger admits only Bar"
    assert found == [
        ("a.yaml", 8, "W501", firing_only),
        ("a.yaml", 8, "W503", bare),
        ("a.yaml", 15, "E303", third),
        ("a.yaml", 16, "E304", itself),
        ("b.yaml", 9, "W501", only_bar),
        ("b.yaml", 9, "W503", bare),
        ("b.yaml", 16, "E303", third),
        ("b.yaml", 17, "E304", itself),
    ]
