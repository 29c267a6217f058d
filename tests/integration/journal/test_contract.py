"""The journal contract: the same behaviour on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kurative.errors import (
    ExecutionNotFound,
    JournalConflict,
    JournalError,
    LeaseLost,
    RecordRejected,
    SchemaVersionError,
)
from kurative.journal import (
    AlertStatus,
    CreationStatus,
    Decision,
    ExecutionFilter,
    ExecutionState,
    Journal,
    LimitRequest,
    PlaybookVersion,
    StepFinish,
    StepStart,
    StepStatus,
    open_journal,
)

from .helpers import alert, eventually, new_execution, raw_sql, request, running

# -- schema -----------------------------------------------------------------------------------------


async def test_migrate_is_idempotent_and_reports_versions(journal_url: str) -> None:
    first = await open_journal(journal_url, migrate=True)
    status = await first.schema_status()
    await first.close()
    assert status.current == status.latest >= 1
    again = await open_journal(journal_url, migrate=True)
    try:
        assert (await again.migrate()).applied == ()
    finally:
        await again.close()


async def test_unmigrated_journal_is_refused_with_the_command_to_run(journal_url: str) -> None:
    with pytest.raises(SchemaVersionError, match="kurative migrate --journal"):
        await open_journal(journal_url)


async def test_newer_schema_is_refused(journal: Journal, journal_url: str) -> None:
    raw_sql(journal_url, "INSERT INTO schema_version (version, name) VALUES (999, 'future')")
    with pytest.raises(SchemaVersionError, match="newer than version"):
        await open_journal(journal_url)
    with pytest.raises(SchemaVersionError, match="newer than version"):
        await open_journal(journal_url, migrate=True)


# -- alert inbox ------------------------------------------------------------------------------------


async def test_committed_alerts_read_back_exactly(journal: Journal) -> None:
    sent = [alert("fp-1"), alert("fp-2", status="resolved", pod="p-2")]
    ids = await journal.commit_alerts(sent)
    assert len(set(ids)) == 2
    for alert_id, original in zip(ids, sent, strict=True):
        stored = await journal.get_alert(alert_id)
        assert stored.fingerprint == original.fingerprint
        assert stored.status is AlertStatus(original.status)
        assert dict(stored.labels) == dict(original.labels)
        assert dict(stored.payload) == dict(original.payload)
        assert stored.source == "alertmanager"
        assert not stored.sanitized
        assert stored.received_at <= await journal.now()
    assert await journal.commit_alerts([]) == ()
    with pytest.raises(ExecutionNotFound):
        await journal.get_alert("no-such-alert")


async def test_concurrent_commits_all_land(journal: Journal) -> None:
    batches = await asyncio.gather(
        *(journal.commit_alerts([alert(f"fp-{i}-{j}") for j in range(i % 3 + 1)]) for i in range(40))
    )
    ids = [alert_id for batch in batches for alert_id in batch]
    assert len(ids) == len(set(ids)) == sum(i % 3 + 1 for i in range(40))
    for i, batch in enumerate(batches):
        stored = [await journal.get_alert(alert_id) for alert_id in batch]
        assert [s.fingerprint for s in stored] == [f"fp-{i}-{j}" for j in range(i % 3 + 1)]


# -- ruleset versions -------------------------------------------------------------------------------


async def test_playbook_versions_are_kept_and_changed_content_is_a_conflict(journal: Journal) -> None:
    v1 = PlaybookVersion("restart", 1, "sha256:aaa", "apiVersion: kurative/v1\n")
    v2 = PlaybookVersion("restart", 2, "sha256:bbb", "apiVersion: kurative/v1\n# v2\n")
    assert await journal.record_playbooks([v1, v2]) == ()
    assert await journal.record_playbooks([v1]) == ()
    changed = PlaybookVersion("restart", 2, "sha256:ccc", "something else")
    (conflict,) = await journal.record_playbooks([changed])
    assert (conflict.name, conflict.version, conflict.known_hash, conflict.new_hash) == (
        "restart",
        2,
        "sha256:bbb",
        "sha256:ccc",
    )
    assert await journal.get_playbook("restart", 2, "sha256:bbb") == v2
    with pytest.raises(ExecutionNotFound):
        await journal.get_playbook("restart", 2, "sha256:ccc")


# -- creating executions ----------------------------------------------------------------------------


async def test_create_dedupes_by_key_for_the_whole_episode(journal: Journal) -> None:
    (first,) = await journal.commit_alerts([alert()])
    (resent,) = await journal.commit_alerts([alert()])
    (created,) = await journal.create_executions(first, [request(key="shop/pod-1@06:00")])
    (again,) = await journal.create_executions(resent, [request(key="shop/pod-1@06:00")])
    (other,) = await journal.create_executions(resent, [request(key="shop/pod-1@07:00")])
    assert created.status is CreationStatus.CREATED
    assert again.status is CreationStatus.DEDUPLICATED
    assert again.execution_id == created.execution_id
    assert other.status is CreationStatus.CREATED
    assert other.execution_id != created.execution_id
    detail = await journal.get_execution(created.execution_id or "")
    assert detail.execution.state is ExecutionState.PENDING
    assert detail.execution.alert_id == first
    assert detail.execution.alert_fingerprint == "fp-1"
    assert (detail.execution.playbook_name, detail.execution.playbook_version) == ("restart", 1)
    assert detail.execution.playbook_hash == "sha256:restart1"
    assert detail.execution.attempt == 0


async def test_dedupe_key_frees_up_after_its_window(journal: Journal) -> None:
    window = 3.0  # the second request must come within it, even on a loaded machine
    (alert_id,) = await journal.commit_alerts([alert()])
    (first,) = await journal.create_executions(alert_id, [request(window=window)])
    (second,) = await journal.create_executions(alert_id, [request(window=window)])
    assert (first.status, second.status) == (CreationStatus.CREATED, CreationStatus.DEDUPLICATED)

    async def created_again() -> str | None:
        (outcome,) = await journal.create_executions(alert_id, [request(window=window)])
        return outcome.execution_id if outcome.status is CreationStatus.CREATED else None

    assert await eventually(created_again) != first.execution_id


async def test_no_dedupe_key_means_every_match_runs(journal: Journal) -> None:
    (alert_id,) = await journal.commit_alerts([alert()])
    outcomes = await journal.create_executions(alert_id, [request(key=None), request(key=None)])
    assert [o.status for o in outcomes] == [CreationStatus.CREATED, CreationStatus.CREATED]


async def test_limits_cap_executions_per_key_and_do_not_consume_the_dedupe_key(journal: Journal) -> None:
    (alert_id,) = await journal.commit_alerts([alert()])
    shop = LimitRequest("shop", 2, 3600.0, "labels.namespace")
    outcomes = [
        (await journal.create_executions(alert_id, [request(key=f"pod-{i}", limits=(shop,))]))[0]
        for i in range(3)
    ]
    assert [o.status for o in outcomes] == [
        CreationStatus.CREATED,
        CreationStatus.CREATED,
        CreationStatus.RATE_LIMITED,
    ]
    assert outcomes[2].limit == shop
    assert outcomes[2].execution_id is None
    # another value of the key, another limit whose key renders the same, another playbook: own budgets
    billing = LimitRequest("billing", 2, 3600.0, "labels.namespace")
    team = LimitRequest("shop", 2, 3600.0, "labels.team")
    for req in (
        request(key="pod-2b", limits=(billing,)),
        request(key="pod-2c", limits=(team,)),
        request("scale", key="pod-2", limits=(shop,)),
    ):
        (outcome,) = await journal.create_executions(alert_id, [req])
        assert outcome.status is CreationStatus.CREATED, req
    # the refused request left its dedupe key free: once the budget frees, the same key runs
    short = LimitRequest("short", 1, 0.3, "labels.namespace")
    (taken,) = await journal.create_executions(alert_id, [request("drain", key="a", limits=(short,))])
    (refused,) = await journal.create_executions(alert_id, [request("drain", key="b", limits=(short,))])
    assert (taken.status, refused.status) == (CreationStatus.CREATED, CreationStatus.RATE_LIMITED)

    async def runs_later() -> bool:
        (outcome,) = await journal.create_executions(alert_id, [request("drain", key="b", limits=(short,))])
        assert outcome.status is not CreationStatus.DEDUPLICATED
        return outcome.status is CreationStatus.CREATED

    assert await eventually(runs_later)


async def test_approval_requests_wait_and_an_unknown_alert_is_refused(journal: Journal) -> None:
    (alert_id,) = await journal.commit_alerts([alert()])
    (outcome,) = await journal.create_executions(alert_id, [request(approval=True)])
    detail = await journal.get_execution(outcome.execution_id or "")
    assert detail.execution.state is ExecutionState.AWAITING_APPROVAL
    assert await journal.claim_executions("replica-a") == ()
    with pytest.raises(ExecutionNotFound):
        await journal.create_executions("no-such-alert", [request(key="x")])


async def test_a_failed_creation_leaves_nothing_half_written(journal: Journal, journal_url: str) -> None:
    # a trigger makes the database itself fail the second insert of the transaction
    if journal_url.startswith("sqlite"):
        raw_sql(
            journal_url,
            "CREATE TRIGGER refuse BEFORE INSERT ON executions WHEN NEW.playbook_name = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
        )
    else:
        raw_sql(
            journal_url,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.playbook_name = 'boom' THEN RAISE EXCEPTION 'refused by trigger'; END IF; "
            "RETURN NEW; END $$",
        )
        raw_sql(
            journal_url,
            "CREATE TRIGGER refuse BEFORE INSERT ON executions FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
    (alert_id,) = await journal.commit_alerts([alert()])
    limit = LimitRequest("shop", 1, 3600.0, "labels.namespace")
    with pytest.raises(JournalError, match="refused by trigger"):
        await journal.create_executions(
            alert_id, [request("first", key="k1", limits=(limit,)), request("boom", key="k2")]
        )
    assert (await journal.list_executions()).items == ()
    # neither the dedupe key nor the limit budget of the first request was consumed
    (outcome,) = await journal.create_executions(alert_id, [request("first", key="k1", limits=(limit,))])
    assert outcome.status is CreationStatus.CREATED


# -- claims and leases ------------------------------------------------------------------------------


async def test_claim_leases_each_execution_once(journal: Journal) -> None:
    ids = {await new_execution(journal) for _ in range(3)}
    claims = await journal.claim_executions("replica-a", limit=2, lease_seconds=30)
    more = await journal.claim_executions("replica-b", limit=5, lease_seconds=30)
    assert len(claims) == 2
    assert len(more) == 1
    assert {c.execution.id for c in claims + more} == ids
    assert await journal.claim_executions("replica-c", limit=5) == ()
    now = await journal.now()
    for claim in claims:
        assert claim.execution.state is ExecutionState.RUNNING
        assert claim.lease.owner == "replica-a"
        assert claim.lease.attempt == claim.execution.attempt == 1
        assert not claim.recovered
        assert now < claim.lease.expires_at <= now + timedelta(seconds=31)


async def test_renew_and_release(journal: Journal) -> None:
    claim = await running(journal, lease=5)
    renewed = await journal.renew_lease(claim.lease, 60)
    assert renewed.expires_at > claim.lease.expires_at
    assert not renewed.cancel_requested
    done = await journal.release_execution(renewed, ExecutionState.SUCCEEDED)
    assert done.state is ExecutionState.SUCCEEDED
    assert done.finished_at is not None
    assert done.lease_owner is None
    with pytest.raises(LeaseLost):
        await journal.renew_lease(renewed, 60)
    with pytest.raises(LeaseLost):
        await journal.release_execution(renewed, ExecutionState.FAILED)
    with pytest.raises(RecordRejected):
        await journal.release_execution(renewed, ExecutionState.RUNNING)


async def test_released_for_later_is_claimable_after_the_delay(journal: Journal) -> None:
    claim = await running(journal)
    back = await journal.release_execution(
        claim.lease, ExecutionState.PENDING, error="breaker open", delay=0.3
    )
    assert back.state is ExecutionState.PENDING
    assert back.finished_at is None
    assert await journal.claim_executions("replica-b") == ()
    (again,) = await eventually(lambda: journal.claim_executions("replica-b"))
    assert again.execution.id == claim.execution.id
    assert again.lease.attempt == 2
    assert not again.recovered


async def test_expired_lease_goes_to_the_next_claimer_and_fences_the_old_one(journal: Journal) -> None:
    claim = await running(journal, owner="replica-a", lease=0.3)
    await journal.record_step_started(claim.lease, StepStart(0, "owner", "kubernetes.resolve_owner"))
    (taken,) = await eventually(lambda: journal.claim_executions("replica-b", lease_seconds=30))
    assert taken.execution.id == claim.execution.id
    assert taken.recovered
    assert taken.previous_owner == "replica-a"
    assert taken.lease.attempt == 2
    with pytest.raises(LeaseLost):
        await journal.record_step_finished(claim.lease, StepFinish(0, "owner", StepStatus.SUCCEEDED))
    with pytest.raises(LeaseLost):
        await journal.renew_lease(claim.lease, 30)
    with pytest.raises(LeaseLost):
        await journal.release_execution(claim.lease, ExecutionState.FAILED)
    # the new holder sees the step that was started and never finished
    detail = await journal.get_execution(taken.execution.id)
    assert [(s.name, s.status, s.lease_attempt) for s in detail.steps] == [("owner", StepStatus.STARTED, 1)]
    assert detail.open_steps() == detail.steps
    await journal.record_step_started(
        taken.lease, StepStart(0, "owner", "kubernetes.resolve_owner", attempt=2)
    )
    await journal.record_step_finished(taken.lease, StepFinish(0, "owner", StepStatus.SUCCEEDED, attempt=2))
    await journal.release_execution(taken.lease, ExecutionState.SUCCEEDED)
    assert [
        (s.attempt, s.status) for s in (await journal.get_execution(taken.execution.id)).open_steps()
    ] == [
        (1, StepStatus.STARTED)  # the dead holder's attempt stays open in the record, for the audit
    ]


# -- steps ------------------------------------------------------------------------------------------


async def test_step_records_are_appended_with_timing_and_idempotency_key(journal: Journal) -> None:
    claim = await running(journal)
    lease = claim.lease
    params = {"namespace": "shop", "pod": "pod-1"}
    await journal.record_step_started(
        lease, StepStart(0, "owner", "kubernetes.resolve_owner", 1, params, "ex/0/1")
    )
    await journal.record_step_finished(
        lease, StepFinish(0, "owner", StepStatus.SUCCEEDED, 1, output={"kind": "Deployment", "name": "web"})
    )
    await journal.record_step_started(
        lease, StepStart(1, "restart", "kubernetes.rollout_restart", 1, {}, "ex/1/1")
    )
    await journal.record_step_finished(
        lease, StepFinish(1, "restart", StepStatus.FAILED, 1, error="409 conflict")
    )
    await journal.record_step_finished(
        lease, StepFinish(2, "verify", StepStatus.SKIPPED, 1, "kubernetes.wait_rollout")
    )
    await journal.record_step_finished(lease, StepFinish(3, "tell", StepStatus.DRY_RUN, 1, "http.request"))
    with pytest.raises(JournalConflict):
        await journal.record_step_started(lease, StepStart(0, "owner", "kubernetes.resolve_owner", 1))
    with pytest.raises(JournalConflict):
        await journal.record_step_finished(lease, StepFinish(0, "owner", StepStatus.FAILED, 1))
    with pytest.raises(JournalConflict):
        await journal.record_step_finished(lease, StepFinish(4, "x", StepStatus.STARTED, 1))

    detail = await journal.get_execution(claim.execution.id)
    assert detail.open_steps() == ()
    steps = detail.steps
    assert [(s.index, s.name, s.status) for s in steps] == [
        (0, "owner", StepStatus.STARTED),
        (0, "owner", StepStatus.SUCCEEDED),
        (1, "restart", StepStatus.STARTED),
        (1, "restart", StepStatus.FAILED),
        (2, "verify", StepStatus.SKIPPED),
        (3, "tell", StepStatus.DRY_RUN),
    ]
    started, finished = steps[0], steps[1]
    assert started.params == params
    assert started.idempotency_key == finished.idempotency_key == "ex/0/1"
    assert finished.action == "kubernetes.resolve_owner"
    assert finished.output == {"kind": "Deployment", "name": "web"}
    assert finished.started_at == started.started_at
    assert finished.duration is not None
    assert finished.duration >= 0
    assert steps[3].error == "409 conflict"
    assert steps[4].started_at is None
    assert steps[4].action == "kubernetes.wait_rollout"


# -- listing ----------------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_filters(journal: Journal) -> None:
    (a1,) = await journal.commit_alerts([alert("fp-a")])
    (a2,) = await journal.commit_alerts([alert("fp-b")])
    created = []
    for i in range(7):
        (o,) = await journal.create_executions(a1 if i % 2 else a2, [request(f"pb-{i % 3}", key=None)])
        created.append(o.execution_id)
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page = await journal.list_executions(limit=3, cursor=cursor)
        sizes.append(len(page.items))
        seen.extend(e.id for e in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [3, 3, 1]
    assert seen == list(reversed(created))

    by_playbook = await journal.list_executions(ExecutionFilter(playbook_name="pb-0"))
    assert [e.id for e in by_playbook.items] == [created[6], created[3], created[0]]
    by_alert = await journal.list_executions(ExecutionFilter(alert_fingerprint="fp-a"))
    assert {e.id for e in by_alert.items} == {created[i] for i in (1, 3, 5)}
    claim = (await journal.claim_executions("replica-a"))[0]
    running_only = await journal.list_executions(ExecutionFilter(states=(ExecutionState.RUNNING,)))
    assert [e.id for e in running_only.items] == [claim.execution.id]
    window = await journal.list_executions(
        ExecutionFilter(
            created_after=claim.execution.created_at,
            created_before=claim.execution.created_at + timedelta(microseconds=1),
        )
    )
    assert claim.execution.id in [e.id for e in window.items]
    with pytest.raises(RecordRejected, match="cursor"):
        await journal.list_executions(cursor="not-a-cursor")
    with pytest.raises(RecordRejected):
        await journal.list_executions(limit=0)
    with pytest.raises(ExecutionNotFound):
        await journal.get_execution("no-such-execution")


# -- approvals and cancelling ----------------------------------------------------------------------


async def test_approval_moves_to_pending_and_rejection_cancels(journal: Journal) -> None:
    approved_id = await new_execution(journal, key="a", approval=True)
    rejected_id = await new_execution(journal, key="b", approval=True)
    approval = await journal.record_approval(approved_id, Decision.APPROVED, "alice", "looks right")
    assert (approval.who, approval.decision, approval.reason) == ("alice", Decision.APPROVED, "looks right")
    await journal.record_approval(rejected_id, Decision.REJECTED, "bob", "not during the sale")
    with pytest.raises(JournalConflict, match="not awaiting approval"):
        await journal.record_approval(approved_id, Decision.REJECTED, "bob")
    with pytest.raises(ExecutionNotFound):
        await journal.record_approval("nope", Decision.APPROVED, "alice")

    approved = await journal.get_execution(approved_id)
    assert approved.execution.state is ExecutionState.PENDING
    assert [(a.who, a.decision) for a in approved.approvals] == [("alice", Decision.APPROVED)]
    rejected = await journal.get_execution(rejected_id)
    assert rejected.execution.state is ExecutionState.CANCELLED
    assert rejected.execution.finished_at is not None
    assert "bob" in (rejected.execution.error or "")
    (claim,) = await journal.claim_executions("replica-a")
    assert claim.execution.id == approved_id


async def test_cancel_pending_running_and_waiting(journal: Journal) -> None:
    claim = await running(journal)
    pending_id = await new_execution(journal, key="p")
    waiting_id = await new_execution(journal, key="w", approval=True)
    cancelled = await journal.cancel_execution(pending_id, "alice", "wrong alert")
    assert cancelled.state is ExecutionState.CANCELLED
    flagged = await journal.cancel_execution(claim.execution.id, "alice", "stop it")
    assert flagged.state is ExecutionState.RUNNING
    assert flagged.error == "cancelled by alice: stop it"  # who and why, recorded at once
    assert (await journal.renew_lease(claim.lease, 30)).cancel_requested
    with pytest.raises(JournalConflict, match="already finished"):
        await journal.cancel_execution(pending_id, "alice")
    assert await journal.cancel_awaiting_approval("fp-1", "alert resolved") == (waiting_id,)
    assert (await journal.get_execution(waiting_id)).execution.state is ExecutionState.CANCELLED
    assert await journal.cancel_awaiting_approval("fp-1", "alert resolved") == ()


async def test_a_step_start_written_after_a_cancel_request_says_so_and_the_release_keeps_who_and_why(
    journal: Journal,
) -> None:
    claim = await running(journal)
    first = await journal.record_steps(claim.lease, started=StepStart(0, "a", "log", 1, {}, None))
    assert not first.cancel_requested
    await journal.cancel_execution(claim.execution.id, "alice", "stop it")
    # the holder's lease (renewed before the request) does not know; the next start's write does
    finished = StepFinish(0, "a", StepStatus.SUCCEEDED, 1, "log", {}, None)
    second = await journal.record_steps(
        claim.lease, finished=[finished], started=StepStart(1, "b", "log", 1, {}, None)
    )
    assert second.cancel_requested
    assert second.started is not None
    alone = await journal.record_steps(
        claim.lease, finished=[StepFinish(1, "b", StepStatus.SKIPPED, 1, "log", None, "x")]
    )
    assert not alone.cancel_requested  # told only with a start
    released = await journal.release_execution(
        claim.lease, ExecutionState.CANCELLED, error="cancelled while running"
    )
    assert released.state is ExecutionState.CANCELLED
    assert released.error == "cancelled by alice: stop it"
    # any other release says what it is given
    other = await running(journal)
    done = await journal.release_execution(other.lease, ExecutionState.FAILED, error="step 'a' failed: no")
    assert done.error == "step 'a' failed: no"


@pytest.mark.parametrize("state", [ExecutionState.PENDING, ExecutionState.AWAITING_APPROVAL])
async def test_a_release_that_would_wait_cancels_an_execution_someone_asked_to_cancel(
    journal: Journal, state: ExecutionState
) -> None:
    claim = await running(journal)
    await journal.cancel_execution(claim.execution.id, "alice", "stop it")
    released = await journal.release_execution(claim.lease, state, error="breaker open", delay=60)
    assert released.state is ExecutionState.CANCELLED
    assert released.error == "cancelled by alice: stop it"
    assert released.finished_at is not None
    assert await journal.claim_executions("replica-b") == ()
    # without a request, it waits as asked
    other = await running(journal)
    assert (await journal.release_execution(other.lease, state, error="breaker open")).state is state


# -- retention --------------------------------------------------------------------------------------


async def test_prune_removes_only_finished_work_in_batches(journal: Journal) -> None:
    finished = []
    for i in range(5):
        claim = await running(journal, owner=f"r{i}")
        await journal.record_step_started(claim.lease, StepStart(0, "s", "log"))
        await journal.release_execution(claim.lease, ExecutionState.SUCCEEDED)
        finished.append(claim.execution.id)
    unfinished = [
        (await running(journal)).execution.id,
        await new_execution(journal, key="pending"),
        await new_execution(journal, key="waiting", approval=True),
    ]
    (lonely,) = await journal.commit_alerts([alert("fp-lonely")])
    (unmatched,) = await journal.commit_alerts([alert("fp-unmatched")])
    await journal.match_alerts([(lonely, [])], "ruleset-1")

    kept = await journal.prune(3600.0)
    assert kept.executions == kept.alerts == 0

    report = await journal.prune(0.0, batch=2)
    assert report.executions == 5
    assert report.alerts == 6  # the five alerts of the finished executions and the lonely one
    for execution_id in finished:
        with pytest.raises(ExecutionNotFound):
            await journal.get_execution(execution_id)
    for execution_id in unfinished:
        detail = await journal.get_execution(execution_id)
        assert not detail.execution.state.finished
        await journal.get_alert(detail.execution.alert_id)
    with pytest.raises(ExecutionNotFound):
        await journal.get_alert(lonely)
    assert (await journal.get_alert(unmatched)).id == unmatched  # not matched yet: unfinished work
    with pytest.raises(RecordRejected):
        await journal.prune(0.0, batch=0)


def _age_dedupe_keys(journal_url: str, backend: str, days: int) -> None:
    """Make every dedupe key look last seen ``days`` ago (a quiet alert: no repeat since)."""
    shift = f"{days * 86400}" if backend == "sqlite" else f"interval '{days} days'"
    raw_sql(journal_url, f"UPDATE dedupe_keys SET last_seen_at = last_seen_at - {shift}")


async def test_prune_keeps_the_dedupe_key_of_every_execution_still_in_the_journal(
    journal: Journal, journal_url: str, backend: str
) -> None:
    (alert_id,) = await journal.commit_alerts([alert()])

    async def create(key: str, *, approval: bool = False) -> str:
        (outcome,) = await journal.create_executions(alert_id, [request(key=key, approval=approval)])
        assert outcome.status is CreationStatus.CREATED
        assert outcome.execution_id is not None
        return outcome.execution_id

    held = {"waiting": await create("waiting", approval=True)}
    held["running"], held["done"] = await create("running"), await create("done")
    claims = {c.execution.id: c for c in await journal.claim_executions("replica-a", limit=10)}
    assert set(claims) == {held["running"], held["done"]}
    await journal.release_execution(claims[held["done"]].lease, ExecutionState.SUCCEEDED)
    held["pending"] = await create("pending")
    _age_dedupe_keys(journal_url, backend, days=2)

    # every key was last seen two days ago, but its execution is still in the journal (unfinished, or
    # finished within the retention): a repeat of the same episode must still be a duplicate
    report = await journal.prune(86400.0)
    assert report.dedupe_keys == 0
    for key, execution_id in held.items():
        (repeat,) = await journal.create_executions(alert_id, [request(key=key)])
        assert (repeat.status, repeat.execution_id) == (CreationStatus.DEDUPLICATED, execution_id), key

    # once its execution is pruned, a key not seen within the retention goes with it
    await journal.release_execution(claims[held["running"]].lease, ExecutionState.FAILED)
    await asyncio.sleep(0.01)
    _age_dedupe_keys(journal_url, backend, days=2)
    report = await journal.prune(0.0)
    assert (report.executions, report.dedupe_keys) == (2, 2)
    for key in ("waiting", "pending"):
        (repeat,) = await journal.create_executions(alert_id, [request(key=key)])
        assert (repeat.status, repeat.execution_id) == (CreationStatus.DEDUPLICATED, held[key]), key
    (rerun,) = await journal.create_executions(alert_id, [request(key="done")])
    assert rerun.status is CreationStatus.CREATED
