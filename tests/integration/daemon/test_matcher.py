"""The matcher over a real journal: a key the journal cannot store costs only its own request, and the
alerts it keeps parsed for matching are let go once another replica matched them (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from kurative.alerts import parse_notification
from kurative.execution.matcher import ActiveRuleset, Matcher
from kurative.ingress.payloads import inbox_records
from kurative.journal import JournalLimits, open_journal
from kurative.linting.rulesets import load_ruleset

from .conftest import alert_payload

pytestmark = pytest.mark.timeout(60)

PLAYBOOK = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: by-key, version: 1}
spec:
  trigger: {alertname: [KeyedAlert]}
  approval: auto
  dedupe:
    key: DEDUPE
    window: 10m
  steps:
    - {name: say, action: log, params: {message: hi}}
"""


def _rules(folder: Path, key: str) -> ActiveRuleset:
    rules = folder / "rules"
    rules.mkdir()
    quoted = "'" + key.replace("'", "''") + "'"  # YAML single quotes: backslashes as they are
    (rules / "by-key.yaml").write_text(PLAYBOOK.replace("DEDUPE", quoted))
    loaded = load_ruleset([str(rules)])
    assert loaded.ruleset.playbooks, loaded.diagnostics
    return ActiveRuleset(loaded.ruleset, loaded.version)


SURROGATE_LITERAL = "join('-', [labels.pod, `\"\\ud800\"`])"  # the JSON literal "\ud800"


@pytest.mark.parametrize(
    ("pod", "key", "stored"),
    [
        ("a\x00b", "labels.pod", "a\ufffdb"),  # NUL from a label: stored as U+FFFD
        ("pod-1", SURROGATE_LITERAL, "pod-1-\ufffd"),  # a lone surrogate from a JMESPath literal
        ("p" * 3000, "join('', [labels.pod, labels.pod])", None),  # too long to store: not started
    ],
    ids=["nul", "surrogate", "too-long"],
)
async def test_a_key_the_journal_cannot_take_as_rendered_costs_only_its_own_request(
    tmp_path: Path, journal_url: str, pod: str, key: str, stored: str | None
) -> None:
    active = _rules(tmp_path, key)
    journal = await open_journal(journal_url, migrate=True)
    try:
        matcher = Matcher(journal, lambda: active, dry_run=True, poll_interval=1.0)
        alerts = [{"labels": {"alertname": "KeyedAlert", "pod": p}} for p in (pod, "ok")]
        notification = parse_notification(alert_payload(*alerts))
        ids = await journal.commit_alerts(inbox_records(notification, "alertmanager"))
        matcher.wake(ids, notification)
        assert await matcher.match_pending() == 2
        assert await journal.unmatched_alerts() == ()  # nothing left behind to block the next pass
        keys = sorted(e.dedupe_key or "" for e in (await journal.list_executions(limit=10)).items)
        ok = "ok" if key == "labels.pod" else ("ok-\ufffd" if key == SURROGATE_LITERAL else "okok")
        assert keys == sorted([ok] if stored is None else [ok, stored])
    finally:
        await journal.close()


async def test_a_request_the_journal_refuses_costs_only_itself(tmp_path: Path, journal_url: str) -> None:
    """A request the journal refuses (here: a key over a journal's smaller text limit) fails the whole
    batch's transaction: the batch is then matched without it, so that it costs neither the alert's
    other playbooks nor every alert behind it at every pass."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "by-key.yaml").write_text(PLAYBOOK.replace("DEDUPE", "labels.pod"))
    (rules / "plain.yaml").write_text(
        PLAYBOOK.replace("name: by-key", "name: plain").replace(
            "  dedupe:\n    key: DEDUPE\n    window: 10m\n", ""
        )
    )
    loaded = load_ruleset([str(rules)])
    assert len(loaded.ruleset.playbooks) == 2, loaded.diagnostics
    active = ActiveRuleset(loaded.ruleset, loaded.version)
    journal = await open_journal(journal_url, migrate=True, limits=JournalLimits(max_text_chars=80))
    try:
        matcher = Matcher(journal, lambda: active, dry_run=True, poll_interval=1.0)
        alerts = [{"labels": {"alertname": "KeyedAlert", "pod": p}} for p in ("a", "p" * 100, "b")]
        notification = parse_notification(alert_payload(*alerts))
        ids = await journal.commit_alerts(inbox_records(notification, "alertmanager"))
        matcher.wake(ids, notification)
        with structlog.testing.capture_logs() as logs:
            assert await matcher.match_pending() == 3
        assert await journal.unmatched_alerts() == ()
        started = sorted(
            (e.alert_id == ids[1], e.playbook_name) for e in (await journal.list_executions(limit=10)).items
        )
        assert started == [
            (False, "by-key"),
            (False, "by-key"),
            (False, "plain"),
            (False, "plain"),
            (True, "plain"),
        ]
        (refused,) = [line for line in logs if line["event"] == "playbook_not_started"]
        assert (refused["alert_id"], refused["playbook"]) == (ids[1], "by-key")
        assert "at most 80 characters" in refused["error"]
    finally:
        await journal.close()


async def test_alerts_another_replica_matched_are_not_kept(tmp_path: Path, journal_url: str) -> None:
    active = _rules(tmp_path, "labels.pod")
    journal = await open_journal(journal_url, migrate=True)
    try:
        mine = Matcher(journal, lambda: active, dry_run=True, poll_interval=1.0)
        other = Matcher(journal, lambda: active, dry_run=True, poll_interval=1.0)
        alerts = [{"labels": {"alertname": "KeyedAlert", "pod": f"pod-{n}"}} for n in range(3)]
        notification = parse_notification(alert_payload(*alerts))
        ids = await journal.commit_alerts(inbox_records(notification, "alertmanager"))
        mine.wake(ids, notification)
        assert await other.match_pending() == 3  # the other replica matched them all
        assert await mine.match_pending() == 0
        assert mine._fresh == {}
    finally:
        await journal.close()


@pytest.mark.parametrize(("pod", "key"), [("a\x00b", "labels.pod"), ("pod-1", SURROGATE_LITERAL)])
def test_simulate_and_test_plan_the_key_the_daemon_stores(tmp_path: Path, pod: str, key: str) -> None:
    from kurative.execution.matcher import requests_for
    from kurative.journal.inbox import inbox_record
    from kurative.journal.models import StoredAlert
    from kurative.matching.planning import plan

    active = _rules(tmp_path, key)
    alert = parse_notification(alert_payload({"labels": {"alertname": "KeyedAlert", "pod": pod}})).alerts[0]
    record = inbox_record(alert, "alertmanager")
    stored = StoredAlert(
        "id-1", alert.fingerprint, alert.status, record.labels, record.payload, "alertmanager",
        alert.starts_at, False, alert.starts_at,
    )  # fmt: skip
    (planned,) = plan(active.ruleset, alert)
    (request,) = requests_for(stored, active, dry_run=False)
    assert planned.dedupe_key == request.dedupe_key
    assert "\x00" not in planned.dedupe_key
    assert "\ud800" not in planned.dedupe_key
