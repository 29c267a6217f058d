"""From a rule that fires in a real Prometheus, through a real Alertmanager, to ``kurative serve`` (a
process on PostgreSQL) changing the cluster and calling a webhook; and from ``amtool`` alerts to
executions that wait for approval, are cancelled by the resolved notification, or approved with the
``kurative executions`` CLI."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN, WEBHOOK_KEY, Stack
from tests.integration.kube.helpers import APPS, CORE
from tests.support.prometheus import start_prometheus

pytestmark = pytest.mark.timeout(150)

DEGRADED = "KurativeE2EDegraded"
SCALE_UP = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: scale-up, version: 1}}
    spec:
      trigger: {{alertname: [{DEGRADED}], when: "labels.severity == 'critical'"}}
      approval: auto
      steps:
        - name: scale
          action: kubernetes.scale
          params:
            namespace: "${{labels.namespace}}"
            kind: Deployment
            name: "${{labels.deployment}}"
            replicas: 3
        - name: mark
          action: kubernetes.annotate
          params:
            namespace: "${{labels.namespace}}"
            kind: Deployment
            name: "${{labels.deployment}}"
            annotations: {{kurative.example/alert: "${{alert.fingerprint}}"}}
        - name: notify
          action: http.request
          params:
            url: {{secretRef: webhook}}
            json: {{text: "scaled ${{labels.deployment}} to 3", fingerprint: "${{alert.fingerprint}}"}}
"""

UNHEALTHY = "KurativeE2ENodeUnhealthy"
CORDON = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: cordon-node, version: 1}}
    spec:
      trigger: {{alertname: [{UNHEALTHY}]}}
      approval: required
      steps:
        - name: cordon
          action: kubernetes.cordon
          params: {{node: "${{labels.node}}"}}
        - name: notify
          action: http.request
          params: {{url: {{secretRef: webhook}}, json: {{text: "cordoned ${{labels.node}}"}}}}
"""


def rule(namespace: str) -> str:
    return textwrap.dedent(
        f"""\
        groups:
          - name: e2e
            interval: 1s
            rules:
              - alert: {DEGRADED}
                expr: vector(1)
                labels: {{severity: critical, namespace: {namespace}, deployment: web}}
                annotations: {{summary: web is degraded}}
        """
    )


def dashboard_queries() -> list[str]:
    board = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/kurative.json").read_text())
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", ())]


def inbox_count(stack: Stack, fingerprint: str) -> int:
    (row,) = stack.query("SELECT count(*) FROM alerts WHERE fingerprint = %s", fingerprint)
    return int(row[0])


def test_a_firing_prometheus_rule_becomes_one_execution_that_changes_the_cluster(stack: Stack) -> None:
    stack.kube.deployment("web", replicas=1)
    stack.playbook("scale-up", SCALE_UP)
    stack.start()
    assert stack.alertmanager is not None
    assert stack.serve is not None
    daemon = urllib.parse.urlsplit(stack.serve.url).netloc
    with start_prometheus(
        rules=rule(stack.kube.namespace), alertmanagers=[stack.alertmanager.url], scrape=[daemon]
    ) as prom:

        def finished() -> list[dict[str, Any]]:
            found = stack.executions()
            return found if found and all(e["state"] in {"succeeded", "failed"} for e in found) else []

        (execution,) = stack.wait(finished, "the alert Prometheus fires becomes an execution that finishes")
        assert execution["state"] == "succeeded", execution["error"]
        assert execution["playbook_name"] == "scale-up"
        fingerprint = execution["alert_fingerprint"]
        # Alertmanager repeats the notification (repeat_interval 2s): each repeat is committed, none
        # starts a second execution
        stack.wait(lambda: inbox_count(stack, fingerprint) >= 3, "two repeats of the notification")
        assert [e["id"] for e in stack.executions()] == [execution["id"]]
        # it came from the rule: Prometheus's generatorURL, the group Alertmanager formed
        ((generator, receiver),) = stack.query(
            "SELECT payload->>'generatorURL', payload->'group'->>'receiver' FROM alerts"
            " WHERE id = (SELECT alert_id FROM executions WHERE id = %s)",
            execution["id"],
        )
        assert generator.startswith(prom.url), generator
        assert receiver == "kurative"
        assert stack.query("SELECT DISTINCT source FROM alerts") == [("alertmanager",)]
        # Prometheus scrapes the daemon: its series are there to query, and so is every dashboard query
        done = 'kurative_executions_total{job="kurative",playbook="scale-up",outcome="succeeded"}'
        assert float(prom.wait_for_series(done)[0]["value"][1]) == 1
        prom.wait_for_series('kurative_alerts_received_total{endpoint="alertmanager",status="firing"} > 0')
        prom.wait_for_series('kurative_step_duration_seconds_count{action="kubernetes.scale"}')
        prom.wait_for_series('kurative_playbooks_loaded{job="kurative"} == 1')
        for expr in dashboard_queries():
            prom.query(expr.replace("$__rate_interval", "1m"))  # a query Prometheus cannot parse raises

    detail = stack.kurative_json("executions", "show", execution["id"])
    finals = [(s["name"], s["status"]) for s in detail["steps"] if s["status"] != "started"]
    assert finals == [("scale", "succeeded"), ("mark", "succeeded"), ("notify", "succeeded")]
    deployment = stack.kube.get(stack.kube.ns_path("deployments", "web", group=APPS))
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["annotations"]["kurative.example/alert"] == fingerprint
    (hook,) = stack.sink.requests
    assert hook.path == f"/hooks/{WEBHOOK_KEY}"
    assert hook.json() == {"text": "scaled web to 3", "fingerprint": fingerprint}
    assert hook.idempotency_key == f"{execution['id']}/notify"
    assert WEBHOOK_KEY not in repr(detail)  # the secret URL stays out of the journal
    assert stack.serve is not None
    assert stack.serve.stop() == 0
    assert WEBHOOK_KEY not in stack.serve.log.read_text()  # nor in the daemon's log


def test_amtool_alerts_wait_for_approval_a_resolved_one_is_cancelled_an_approved_one_runs(
    stack: Stack,
) -> None:
    suffix = stack.kube.namespace.rsplit("-", 1)[-1]
    resolved_node, approved_node = f"e2e-a-{suffix}", f"e2e-b-{suffix}"
    for node in (resolved_node, approved_node):
        stack.kube.node(node)
    stack.playbook("cordon", CORDON)
    # one group for both nodes: the resolved alert arrives beside the one still firing
    stack.start(group_by=["alertname"])
    am = stack.alertmanager
    assert am is not None
    for node in (resolved_node, approved_node):
        am.add_alert(alertname=UNHEALTHY, node=node, severity="critical")

    def waiting() -> dict[str, str]:
        found = {e["id"] for e in stack.executions() if e["state"] == "awaiting_approval"}
        if len(found) < 2:
            return {}
        rows = stack.query(
            "SELECT e.id, a.labels->>'node' FROM executions e JOIN alerts a ON a.id = e.alert_id"
        )
        return {node: execution for execution, node in rows if execution in found}

    by_node = stack.wait(waiting, "both alerts wait for approval")
    for node in (resolved_node, approved_node):
        assert not stack.kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")

    am.add_alert(alertname=UNHEALTHY, node=resolved_node, severity="critical", end=True)
    approve = stack.kurative(
        "executions", "approve", "--journal", stack.journal_url, by_node[approved_node],
        "--as", "alice", "--reason", "node is flapping, cordon it",
    )  # fmt: skip
    assert approve.returncode == 0, approve.stderr
    assert "approved by alice" in approve.stdout

    def finished() -> dict[str, str]:
        states = {e["id"]: e["state"] for e in stack.executions()}
        done = {"succeeded", "failed", "cancelled"}
        return states if len(states) == 2 and set(states.values()) <= done else {}

    states = stack.wait(finished, "one execution cancelled, the other finished")
    assert states == {by_node[resolved_node]: "cancelled", by_node[approved_node]: "succeeded"}
    assert not stack.kube.get(f"{CORE}/nodes/{resolved_node}")["spec"].get("unschedulable")
    assert stack.kube.get(f"{CORE}/nodes/{approved_node}")["spec"]["unschedulable"] is True

    approved = stack.kurative_json("executions", "show", by_node[approved_node])
    assert [(a["decision"], a["who"], a["reason"]) for a in approved["approvals"]] == [
        ("approved", "alice", "node is flapping, cordon it")
    ]
    finals = [(s["name"], s["status"]) for s in approved["steps"] if s["status"] != "started"]
    assert finals == [("cordon", "succeeded"), ("notify", "succeeded")]
    # cancelled by the resolved notification Alertmanager sent for it
    statuses = stack.query(
        "SELECT a.status FROM alerts a JOIN executions e ON e.alert_fingerprint = a.fingerprint"
        " WHERE e.id = %s ORDER BY a.received_at",
        by_node[resolved_node],
    )
    assert ("resolved",) in statuses
    assert len(stack.query("SELECT DISTINCT payload->'group'->>'groupKey' FROM alerts")) == 1
    cancelled = stack.kurative_json("executions", "show", by_node[resolved_node])
    assert cancelled["steps"] == []
    assert cancelled["approvals"] == []
    (hook,) = stack.sink.requests
    assert hook.json() == {"text": f"cordoned {approved_node}"}
    assert hook.idempotency_key == f"{by_node[approved_node]}/notify"

    # the resolved alert fires again: a new firing episode, a new execution; rejected with the CLI
    am.add_alert(alertname=UNHEALTHY, node=resolved_node, severity="critical")
    again = stack.wait(
        lambda: [e["id"] for e in stack.executions() if e["state"] == "awaiting_approval"],
        "the new episode waits for approval",
    )
    assert len(again) == 1
    assert again[0] not in by_node.values()
    reject = stack.kurative(
        "executions", "reject", "--journal", stack.journal_url, again[0], "--as", "bob", "--reason", "known",
    )  # fmt: skip
    assert reject.returncode == 0, reject.stderr
    stack.wait(
        lambda: {e["id"]: e["state"] for e in stack.executions()}.get(again[0]) == "cancelled",
        "the rejected execution is cancelled",
    )
    rejected = stack.kurative_json("executions", "show", again[0])
    assert [(a["decision"], a["who"]) for a in rejected["approvals"]] == [("rejected", "bob")]
    assert rejected["steps"] == []
    assert not stack.kube.get(f"{CORE}/nodes/{resolved_node}")["spec"].get("unschedulable")
    assert len(stack.executions()) == 3


@pytest.mark.parametrize("kube_cluster", ["fake"], indirect=True)
def test_a_notification_with_the_wrong_token_is_refused_and_commits_nothing(stack: Stack) -> None:
    stack.playbook("cordon", CORDON)
    stack.start(alertmanager_token="not-the-token")
    assert stack.alertmanager is not None
    stack.alertmanager.add_alert(alertname=UNHEALTHY, node="nowhere", severity="critical")
    stack.wait(
        lambda: "unexpected status code 401" in stack.alertmanager.log_tail(20000),
        "Alertmanager sees the 401",
        within=30,
    )
    assert stack.query("SELECT count(*) FROM alerts") == [(0,)]
    assert stack.executions() == []


@pytest.mark.parametrize("kube_cluster", ["fake"], indirect=True)
def test_prometheus_posting_its_alert_list_directly_starts_one_execution(stack: Stack) -> None:
    # kurative serves /api/v2/alerts, the list Prometheus sends to an Alertmanager: Prometheus can
    # point at it directly (resending every second here), with the bearer token from a file
    stack.kube.deployment("web", replicas=1)
    stack.playbook("scale-up", SCALE_UP)
    stack.start(alertmanager_token=None)
    assert stack.serve is not None
    with start_prometheus(
        rules=rule(stack.kube.namespace), alertmanagers=[stack.serve.url], alertmanager_token=TOKEN
    ):

        def finished() -> list[dict[str, Any]]:
            found = stack.executions()
            return found if found and all(e["state"] in {"succeeded", "failed"} for e in found) else []

        (execution,) = stack.wait(finished, "the alert list Prometheus posts becomes an execution")
        assert execution["state"] == "succeeded", execution["error"]
        fingerprint = execution["alert_fingerprint"]
        stack.wait(lambda: inbox_count(stack, fingerprint) >= 3, "Prometheus resends the alert")
        assert [e["id"] for e in stack.executions()] == [execution["id"]]
        assert stack.query("SELECT DISTINCT source FROM alerts") == [("prometheus",)]
    deployment = stack.kube.get(stack.kube.ns_path("deployments", "web", group=APPS))
    assert deployment["spec"]["replicas"] == 3
    (hook,) = stack.sink.requests
    assert hook.idempotency_key == f"{execution['id']}/notify"


@pytest.mark.parametrize("kube_cluster", ["fake"], indirect=True)
def test_an_alert_prometheus_resolves_cancels_its_execution_awaiting_approval(stack: Stack) -> None:
    # Prometheus's own list has no status: a resolved alert is one whose endsAt has passed
    node = f"e2e-c-{stack.kube.namespace.rsplit('-', 1)[-1]}"
    stack.kube.node(node)
    stack.playbook("cordon", CORDON)
    stack.start(alertmanager_token=None)
    assert stack.serve is not None

    def rules(end: int, phase: str) -> str:
        """The alert fires from the first evaluation until ``end`` (a Unix time), resolved after."""
        return textwrap.dedent(
            f"""\
            groups:
              - name: e2e
                interval: 1s
                rules:
                  - alert: {UNHEALTHY}
                    expr: vector(1) and on() vector(time()) < {end}
                    labels: {{severity: critical, node: {node}}}
                    annotations: {{phase: {phase}}}
            """
        )

    firing = rules(int(time.time()) + 3600, "firing")
    with start_prometheus(rules=firing, alertmanagers=[stack.serve.url], alertmanager_token=TOKEN) as prom:
        (waiting,) = stack.wait(
            lambda: [e for e in stack.executions() if e["state"] == "awaiting_approval"],
            "the firing alert waits for approval",
        )
        ended = int(time.time()) - 1  # the alert resolves once Prometheus evaluates the new rule
        prom.reload_rules(rules(ended, "ending"), applied='"phase": "ending"')
        stack.wait(
            lambda: [e for e in stack.executions() if e["state"] == "cancelled"],
            "the resolved alert cancels it",
        )
    assert [(e["id"], e["state"]) for e in stack.executions()] == [(waiting["id"], "cancelled")]
    statuses = {s for (s,) in stack.query("SELECT status FROM alerts")}
    assert statuses == {"firing", "resolved"}
    assert not stack.kube.get(f"{CORE}/nodes/{node}")["spec"].get("unschedulable")
