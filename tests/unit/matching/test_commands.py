"""``kurative simulate`` and ``kurative test`` end to end through the CLI entry point."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kurative.alerts import fingerprint as alert_fingerprint
from kurative.cli import main

RESTART = """\
apiVersion: kurative/v1
kind: Playbook
metadata:
  name: restart-crashlooping-workload
  version: 3
spec:
  trigger:
    alertname: [KubePodCrashLooping]
    when: "labels.severity == 'critical' && labels.namespace != 'kube-system'"
  dedupe: {key: "join('/', [labels.namespace, labels.pod])", window: 30m}
  limits: [{key: labels.namespace, max: 2, per: 1h}]
  steps:
    - name: owner
      action: kubernetes.resolve_owner
      params: {namespace: "${labels.namespace}", pod: "${labels.pod}"}
    - name: restart
      action: kubernetes.rollout_restart
      params:
        namespace: "${labels.namespace}"
        kind: "${steps.owner.output.kind}"
        name: "${steps.owner.output.name}"
"""

PAGE = """\
apiVersion: kurative/v1
kind: Playbook
metadata:
  name: page-on-critical
  version: 1
spec:
  priority: 10
  trigger:
    status: any
    when: "labels.severity == 'critical'"
  steps:
    - name: say
      action: log
      params: {message: "${labels.alertname} ${alert.status} in ${labels.namespace}"}
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "restart.yaml").write_text(RESTART)
    (directory / "page.yaml").write_text(PAGE)
    return directory


def webhook(*alerts: dict[str, object]) -> dict[str, object]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "kurative",
        "groupKey": "g",
        "alerts": list(alerts),
    }


CRASH = {
    "status": "firing",
    "labels": {
        "alertname": "KubePodCrashLooping",
        "severity": "critical",
        "namespace": "shop",
        "pod": "web-1",
    },
    "startsAt": "2024-05-01T12:00:00Z",
}


def test_simulate_json_is_the_stable_shape(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "alerts.json"
    quiet = {"status": "firing", "labels": {"alertname": "Other", "severity": "info"}}
    payload.write_text(json.dumps(webhook(CRASH, quiet)))
    assert main(["simulate", "--rules", str(rules), "--format", "json", str(payload)]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert len(reports) == 2
    first = reports[0]
    assert first["alert"]["labels"] == CRASH["labels"]
    assert first["alert"]["status"] == "firing"
    assert len(first["alert"]["fingerprint"]) == 16
    assert [m["playbook"] for m in first["matches"]] == ["page-on-critical", "restart-crashlooping-workload"]
    restart = first["matches"][1]
    assert restart["version"] == 3
    assert restart["dedupe_key"] == "shop/web-1"
    assert restart["steps"] == [
        {
            "name": "owner",
            "action": "kubernetes.resolve_owner",
            "params": {"namespace": "shop", "pod": "web-1"},
        },
        {
            "name": "restart",
            "action": "kubernetes.rollout_restart",
            "params": {
                "namespace": "shop",
                "kind": "${steps.owner.output.kind}",
                "name": "${steps.owner.output.name}",
            },
            "deferred": ["kind", "name"],
        },
    ]
    assert first["matches"][0]["steps"][0]["params"] == {"message": "KubePodCrashLooping firing in shop"}
    assert reports[1]["matches"] == []
    assert "explain" not in first


def test_simulate_text_explains_what_did_not_start(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "one.yaml"  # a single alert, written by hand in YAML
    payload.write_text(
        "labels: {alertname: KubePodCrashLooping, severity: critical, namespace: kube-system, pod: dns}\n"
    )
    assert main(["simulate", "--rules", str(rules), "--explain", str(payload)]) == 0
    out = capsys.readouterr().out
    assert "1. page-on-critical v1 priority 10" in out
    assert "restart-crashlooping-workload (no-match): when `labels.severity == 'critical' && " in out
    assert "labels.namespace = 'kube-system'" in out


def test_simulate_prometheus_list_and_resolved(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "prom.json"
    payload.write_text(
        json.dumps(
            [
                {
                    "labels": CRASH["labels"],
                    "startsAt": "2024-05-01T12:00:00Z",
                    "endsAt": "2024-05-01T12:05:00Z",
                }
            ]
        )
    )
    assert main(["simulate", "--rules", str(rules), "--format", "json", str(payload)]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["alert"]["status"] == "resolved"  # its end lies in the past
    assert [m["playbook"] for m in report["matches"]] == ["page-on-critical"]


def test_simulate_bad_alert_file_is_a_usage_error(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps(webhook({"status": "firing", "labels": {"alertname": "A", "replicas": 3}})))
    assert main(["simulate", "--rules", str(rules), str(payload)]) == 2
    err = capsys.readouterr().err
    assert f"{payload}: alerts[0].labels.replicas: 3 is not a string" in err


def test_simulate_refuses_broken_playbooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text(RESTART.replace("version: 3", "version: three"))
    payload = tmp_path / "a.json"
    payload.write_text(json.dumps(CRASH))
    assert main(["simulate", "--rules", str(rules), str(payload)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:5:" in err


def write_test(tmp_path: Path, body: str, name: str = "restart.test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_kurative_test_passes(rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(
        tmp_path,
        """\
        tests:
          - name: restarted once per window, limited per namespace
            alerts:
              - labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-1}
              - labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-1}
                at: 10m
              - labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-2}
                at: 11m
              - labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-3}
                at: 12m
              - labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-1}
                status: resolved
                at: 13m
            expect:
              - playbooks: [page-on-critical, restart-crashlooping-workload]
                dedupe_keys: {restart-crashlooping-workload: shop/web-1}
                steps:
                  restart-crashlooping-workload:
                    owner: {namespace: shop, pod: web-1}
                    restart: {name: "${steps.owner.output.name}"}
              - playbooks: []
                duplicates: [page-on-critical, restart-crashlooping-workload]
              - playbooks: [page-on-critical, restart-crashlooping-workload]
              - playbooks: [page-on-critical]
                limited: [restart-crashlooping-workload]
              - playbooks: [page-on-critical]
                steps:
                  page-on-critical:
                    say: {message: KubePodCrashLooping resolved in shop}
          - name: the label shortcut
            alerts:
              - {alertname: KubePodCrashLooping, severity: warning}
            expect:
              - playbooks: []
        """,
    )
    assert main(["test", "--rules", str(rules), str(path)]) == 0
    out = capsys.readouterr().out
    assert f"Unit Testing:  {path}\n  SUCCESS (2 cases)" in out
    assert out.rstrip().endswith("2 cases, 2 passed, 0 failed")


def test_kurative_test_failure_shows_a_diff_and_why(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(
        tmp_path,
        """\
        tests:
          - name: warning restarts (wrongly expected)
            alerts:
              - {alertname: KubePodCrashLooping, severity: warning, namespace: shop, pod: web-1}
            expect:
              - playbooks: [restart-crashlooping-workload, no-such-playbook]
        """,
    )
    assert main(["test", "--rules", str(rules), str(path)]) == 1
    out = capsys.readouterr().out
    assert 'case "warning restarts (wrongly expected)" (line 2), alert 1 firing' in out
    assert '-    "restart-crashlooping-workload",' in out
    assert "note: restart-crashlooping-workload did not match: when `labels.severity == 'critical'" in out
    assert "note: unknown playbook 'no-such-playbook'" in out
    assert out.rstrip().endswith("1 case, 0 passed, 1 failed")


def test_kurative_test_reports_invalid_files_with_positions(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(
        tmp_path,
        """\
        tests:
          - name: bad
            alerts:
              - {alertname: A, replicas: 3}
              - labels: {alertname: A}
                startsAt: soon
            expect:
              - playbook: []
        """,
        "bad_test.yaml",
    )
    assert main(["test", "--rules", str(rules), str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:4:" in out
    assert "tests[0].alerts[0].replicas: 3 is not of type 'string'" in out
    assert f"{path}:8:" in out
    assert "'playbooks' is a required property" in out


def test_simulate_hand_written_yaml_with_unquoted_times(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "alert.yaml"
    payload.write_text(
        "status: firing\n"
        "labels: {alertname: KubePodCrashLooping, severity: critical, namespace: shop, pod: web-1}\n"
        "startsAt: 2024-05-01T12:00:00Z\n"
    )
    assert main(["simulate", "--rules", str(rules), "--format", "json", str(payload)]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["alert"]["startsAt"] == "2024-05-01T12:00:00Z"
    assert report["matches"][0]["dedupe_key"].endswith("@2024-05-01T12:00:00Z")


def test_simulate_unreadable_input(rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["simulate", "--rules", str(rules), str(deep)]) == 2
    assert main(["simulate", "--rules", str(rules), str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "deep.json" in err
    assert "missing.json: cannot read" in err


def test_kurative_test_finds_test_files_in_directories(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite"
    (suite / "nested").mkdir(parents=True)
    (suite / ".hidden").mkdir()
    case = "tests:\n  - name: n\n    alerts: [{alertname: X}]\n    expect: [{playbooks: []}]\n"
    (suite / "nested" / "a_test.yaml").write_text(case)
    (suite / "b.test.yaml").write_text(case)
    (suite / ".hidden" / "c.test.yaml").write_text("not: a test")
    (suite / "playbook.yaml").write_text("not: a test either")
    assert main(["test", "--rules", str(rules), str(suite)]) == 0
    out = capsys.readouterr().out
    assert out.count("SUCCESS (1 case)") == 2
    assert ".hidden" not in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["test", "--rules", str(rules), str(empty)]) == 2
    assert "no test files" in capsys.readouterr().err


DISK = {"alertname": "DiskFull", "severity": "critical", "namespace": "db"}


def test_simulate_repeats_without_starts_at_join_one_episode(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script posts the same alert without startsAt, again and again, then resolves it."""
    files = []
    for name, alert in (
        ("first.json", {"labels": DISK}),
        ("repeat.json", {"labels": DISK}),
        ("resolved.json", {"labels": DISK, "endsAt": "2024-05-01T12:05:00Z"}),
    ):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps([alert]))
    assert main(["simulate", "--rules", str(rules), "--format", "json", *map(str, files)]) == 0
    reports = json.loads(capsys.readouterr().out)
    keys = [report["matches"][0]["dedupe_key"] for report in reports]
    starts = [report["alert"]["startsAt"] for report in reports]
    fingerprint = reports[0]["alert"]["fingerprint"]
    assert starts == [starts[0]] * 3  # the repeat and the resolution join the first one's episode
    assert keys == [f"{fingerprint}@{starts[0]}"] * 2 + [f"{fingerprint}@{starts[0]}/resolved"]


def test_kurative_test_repeats_without_starts_at_run_once_per_episode(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = "{alertname: DiskFull, severity: critical, namespace: db}"
    key = f"{alert_fingerprint(DISK)}@2000-01-01T"

    def ran(start: str) -> str:
        return f'{{playbooks: [page-on-critical], dedupe_keys: {{page-on-critical: "{key}{start}"}}}}'

    path = write_test(
        tmp_path,
        f"""\
        tests:
          - name: a script's repeats without startsAt
            alerts:
              - {labels}
              - {{labels: {labels}, at: 4h}}
              - {{labels: {labels}, status: resolved, at: 5h}}
              - {{labels: {labels}, at: 6h}}
              - {{labels: {labels}, at: 10h}}
            expect:
              - {ran("00:00:00Z")}
              - {{playbooks: [], duplicates: [page-on-critical]}}
              - {ran("00:00:00Z/resolved")}
              - {ran("06:00:00Z")}
              - {{playbooks: [], duplicates: [page-on-critical]}}
        """,
    )
    assert main(["test", "--rules", str(rules), str(path)]) == 0, capsys.readouterr().out
