"""Self-monitoring (deploy/monitoring/): the PrometheusRule's rules pass ``promtool check rules``, every
alert has a ``promtool test rules`` unit test that fires it and one that does not, every rule says what
to do, every metric a rule names is one the daemon really exports, and the kustomization renders.

promtool is Debian's (the ``prometheus`` package): without it the tests skip, with ``CI`` set it is
installed. The unit tests run on the rules extracted from the PrometheusRule's ``spec`` with only their
``summary`` annotation (promtool compares every annotation of a firing alert, and the runbook texts
belong in the rules, not copied into the tests); ``check rules`` runs on the rules as they are.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kurative.config import Overrides, load_settings
from kurative.daemon import Daemon
from tests.support.debian import require_debian_tool
from tests.support.kubectl import require_kubectl
from tests.support.postgres import free_port

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))
RULES_FILE = "kurative.rules.yaml"  # the name the unit tests' rule_files give
SEVERITIES = {"critical", "warning", "info"}
FROM_PROMETHEUS = {"up"}  # series Prometheus makes itself for every target


def prometheus_rule() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    return document


def rules() -> list[dict[str, Any]]:
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules()]


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_debian_tool(lambda: shutil.which("promtool"), "prometheus", "promtool")


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_promtool_checks_the_rules(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / RULES_FILE
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    spec = prometheus_rule()["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    for test in UNIT_TESTS:
        shutil.copy(test, tmp_path / test.name)
    result = run(promtool, "test", "rules", *(test.name for test in UNIT_TESTS), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def unit_test_cases() -> Iterator[tuple[str, bool]]:
    """(alert name, whether the case expects it to fire) for every alert_rule_test case."""
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == [RULES_FILE], path
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                yield case["alertname"], bool(case.get("exp_alerts"))


@pytest.mark.parametrize("alert", alert_names())
def test_every_alert_is_tested_firing_and_not_firing(alert: str) -> None:
    cases = set(unit_test_cases())
    assert (alert, True) in cases, f"no unit test makes {alert} fire"
    assert (alert, False) in cases, f"no unit test shows {alert} staying quiet"


def test_unit_tests_name_only_alerts_that_exist() -> None:
    assert {alert for alert, _ in unit_test_cases()} <= set(alert_names())


@pytest.mark.parametrize("alert", alert_names())
def test_every_rule_has_a_severity_and_runbook_text(alert: str) -> None:
    (rule,) = [rule for rule in rules() if rule["alert"] == alert]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook"):
        assert len(annotations.get(key, "").split()) >= 5, f"{alert}: {key} says too little"
    assert 'job="kurative"' in rule["expr"], f"{alert} must select the kurative job"


def names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: an identifier before ``{``, or a bare one of ours."""
    selected = set(re.findall(r"\b([a-zA-Z_:][\w:]*)\s*\{", expr))
    bare = set(re.findall(r"\b((?:kurative|process)_\w+)\b", expr))
    return selected | bare


def test_names_in_finds_selectors() -> None:
    expr = 'sum by (a) (rate(kurative_x_total{job="k"}[5m])) > 0 and on() process_start_time_seconds'
    assert names_in(expr) == {"kurative_x_total", "process_start_time_seconds"}


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition declares, as a query names it, whether or not it has a sample
    yet (a counter family ``x`` is queried as ``x_total``, a histogram as ``x_bucket``...)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
    }
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    return names


PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: log-it, version: 1}
spec:
  trigger: {alertname: [TestAlert]}
  approval: auto
  steps:
    - {name: only, action: log, params: {message: "hello"}}
"""


async def test_every_metric_a_rule_names_is_exported_by_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "log.yaml").write_text(PLAYBOOK)
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "journal": {"url": f"sqlite:///{tmp_path / 'journal.sqlite'}", "migrate": True},
        "playbooks": {"paths": ["rules"]},
        "logging": {"format": "json", "level": "warning"},
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    daemon = Daemon(load_settings(Overrides(config=str(tmp_path / "config.yaml")), {}), environ={})
    task = asyncio.create_task(daemon.run())
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        assert ready in done, "the daemon did not get ready in 30 s"
        async with httpx.AsyncClient(base_url=daemon.url or "", timeout=10) as client:
            answer = await client.get("/metrics")
        assert answer.status_code == 200
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)
    exported = exported_names(answer.text)
    assert "kurative_breaker_state" in exported
    used = {name for rule in rules() for name in names_in(rule["expr"])}
    assert {"kurative_breaker_state", "kurative_executions_total", "process_start_time_seconds"} <= used
    assert used - FROM_PROMETHEUS <= exported, sorted(used - FROM_PROMETHEUS - exported)


def test_the_service_monitor_scrapes_the_http_port_at_metrics() -> None:
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "kurative"}
    # the rules select job="kurative": the job label is taken from the Service's name label
    assert spec["jobLabel"] == "app.kubernetes.io/name"


def services_in_deploy() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # a kustomize patch or template that is not plain YAML is not a Service
        found += [(path, d) for d in documents if isinstance(d, dict) and d.get("kind") == "Service"]
    return found


def test_a_kurative_service_in_deploy_is_one_the_service_monitor_selects() -> None:
    """Whatever Services deploy/ holds for kurative (deploy/kustomize/ once it exists) expose the port
    the ServiceMonitor scrapes, under the label it selects."""
    for path, service in services_in_deploy():
        labels = service.get("metadata", {}).get("labels", {})
        ours = "kurative" in (service["metadata"].get("name"), labels.get("app.kubernetes.io/name"))
        if not ours:
            continue
        assert labels.get("app.kubernetes.io/name") == "kurative", path
        ports = {port.get("name"): port.get("port") for port in service["spec"]["ports"]}
        assert ports.get("http") == 9095, path


def test_the_kustomization_renders_both_objects() -> None:
    kubectl = str(require_kubectl())
    result = run(kubectl, "kustomize", str(MONITORING))
    assert result.returncode == 0, result.stderr
    rendered = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(result.stdout) if d}
    assert rendered == {("ServiceMonitor", "kurative"), ("PrometheusRule", "kurative")}
