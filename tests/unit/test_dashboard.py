"""deploy/grafana/kurative.json is a dashboard Grafana loads, and every query names metrics the daemon
exports (a renamed metric would otherwise leave a panel empty without anyone noticing)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kurative.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kurative.json"
METRIC = re.compile(r"\b(kurative_[a-z0-9_]+)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", ())]


def test_it_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs
        assert len(refs) == len(set(refs))


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_every_query_names_only_exported_metrics() -> None:
    exported = Metrics().names()
    named = {name for expr in queries() for name in METRIC.findall(expr)}
    assert named
    assert named - exported == set()


def test_it_shows_what_an_operator_watches() -> None:
    named = {name for expr in queries() for name in METRIC.findall(expr)}
    for needed in (
        "kurative_alerts_received_total",
        "kurative_alerts_rejected_total",
        "kurative_executions_total",
        "kurative_step_duration_seconds_bucket",
        "kurative_breaker_state",
        "kurative_reloads_total",
        "kurative_journal_operation_seconds_bucket",
    ):
        assert needed in named


def test_every_exported_metric_has_help_text() -> None:
    for family in Metrics().registry.collect():
        assert family.documentation.strip(), family.name
        if family.name.startswith("kurative_"):
            assert re.fullmatch(r"kurative_[a-z][a-z0-9_]*", family.name)
