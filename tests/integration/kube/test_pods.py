"""Pod actions over the fake and the real API server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from unittest.mock import patch

import pytest

from kurative.actions.kubernetes import Effect, KubeGuards
from kurative.adapters.kubernetes import TooManyRequestsError
from kurative.errors import GuardRefused, PermanentActionError
from tests.integration.kube.helpers import Crash, Kube, Runner, interposed
from tests.support.fakekube import FakeCluster

pytestmark = pytest.mark.kube


async def test_delete_pod_deletes_once_and_check_says_done(kube: Kube, run: Runner) -> None:
    made = kube.pod("web")
    ctx = run.context()
    params = {"namespace": kube.namespace, "pod": "web"}
    assert await run.check("delete_pod", params, ctx) is Effect.UNKNOWN  # not stamped: cannot tell

    out = await run("delete_pod", params, ctx=ctx)

    assert out == {"pod": "web", "uid": made["metadata"]["uid"], "deleted": True}
    assert not kube.exists(kube.ns_path("pods", "web"))
    assert await run.check("delete_pod", params, ctx) is Effect.DONE
    again = await run("delete_pod", params, ctx=ctx)
    assert again["deleted"] is False


async def test_delete_pod_dry_run_leaves_the_pod(kube: Kube, run: Runner) -> None:
    kube.pod("web")
    out = await run("delete_pod", {"namespace": kube.namespace, "pod": "web"}, dry_run=True)
    assert out["deleted"] is True
    pod = kube.get(kube.ns_path("pods", "web"))
    assert "kurative/step" not in (pod["metadata"].get("annotations") or {})


async def test_delete_pod_refuses_protected_namespace_and_bad_names(run: Runner) -> None:
    with pytest.raises(GuardRefused, match="kube-system is protected"):
        await run("delete_pod", {"namespace": "kube-system", "pod": "coredns"})
    with pytest.raises(PermanentActionError, match="not a valid DNS-1123 subdomain"):
        await run("delete_pod", {"namespace": "default", "pod": "Bad_Name"})
    with pytest.raises(PermanentActionError, match="pod: 42 is not of type 'string'"):
        await run("delete_pod", {"namespace": "default", "pod": 42})
    with pytest.raises(PermanentActionError, match="'grace' was unexpected"):
        await run("delete_pod", {"namespace": "default", "pod": "web", "grace": 1})


async def test_namespace_allow_and_deny_lists_refuse_changes_not_reads(kube: Kube, run: Runner) -> None:
    kube.pod("web")
    params = {"namespace": kube.namespace, "pod": "web"}
    denied = Runner(run.adapter, KubeGuards(denied_namespaces=(kube.namespace,)))
    with pytest.raises(GuardRefused, match=rf"{kube.namespace} is denied \(safety.namespaces.deny\)"):
        await denied("delete_pod", params)
    elsewhere = Runner(run.adapter, KubeGuards(allowed_namespaces=("shop",)))
    with pytest.raises(GuardRefused, match=rf"{kube.namespace} is not allowed \(safety.namespaces.allow\)"):
        await elsewhere("evict_pod", params)
    assert kube.exists(kube.ns_path("pods", "web"))
    assert (await denied("pod_logs", params))["pod"] == "web"
    allowed = Runner(run.adapter, KubeGuards(allowed_namespaces=(kube.namespace,)))
    assert (await allowed("delete_pod", params))["deleted"] is True


async def test_evict_pending_pod_and_pdb_refusal(kube: Kube, run: Runner) -> None:
    kube.pod("lonely", labels={"app": "lonely"})
    out = await run("evict_pod", {"namespace": kube.namespace, "pod": "lonely"})
    assert out["evicted"] is True
    kube.wait_for("pod gone", lambda: not kube.exists(kube.ns_path("pods", "lonely")))

    kube.guarded_pod("guarded")
    with pytest.raises(TooManyRequestsError, match="disruption budget") as caught:
        await run("evict_pod", {"namespace": kube.namespace, "pod": "guarded", "grace_period": 0})
    assert caught.value.temporary
    assert kube.exists(kube.ns_path("pods", "guarded"))


async def test_pod_logs_of_an_unscheduled_pod_are_empty(kube: Kube, run: Runner) -> None:
    kube.pod("web")
    out = await run("pod_logs", {"namespace": kube.namespace, "pod": "web", "tail_lines": 5, "since": "5m"})
    assert out == {"pod": "web", "container": "app", "logs": "", "lines": 0}
    with pytest.raises(PermanentActionError, match="has no container 'nope'"):
        await run("pod_logs", {"namespace": kube.namespace, "pod": "web", "container": "nope"})


async def test_pod_logs_tail_from_the_fake_kubelet(
    fake_kube: FakeCluster, fake_run: Runner, fake: Kube
) -> None:
    """Log content needs a kubelet: only the fake serves some (the real test server runs none)."""
    fake.pod("web")
    fake_kube.set_log(fake.namespace, "web", "app", "".join(f"line {i}\n" for i in range(10)))
    out = await fake_run("pod_logs", {"namespace": fake.namespace, "pod": "web", "tail_lines": 3})
    assert out["logs"] == "line 7\nline 8\nline 9\n"
    assert out["lines"] == 3


async def test_a_huge_log_is_never_read_whole(fake_kube: FakeCluster, fake_run: Runner, fake: Kube) -> None:
    """One 40 MiB line, from a server that ignores limitBytes: at most limitBytes of it is read."""
    fake.pod("chatty")
    fake_kube.set_log(fake.namespace, "chatty", "app", "x" * (40 * 1024 * 1024) + "\n")
    client = fake_run.adapter.client(None)
    path = fake.ns_path("pods", "chatty") + "/log"
    assert len(await client.read_text(path, query={"container": "app", "limitBytes": 4096})) == 4096
    spied: list[int] = []
    read_text = client.read_text

    async def spy(path: str, *, query: Mapping[str, Any] | None = None) -> str:
        text = await read_text(path, query=query)
        spied.append(len(text))
        return text

    with patch.object(client, "read_text", spy):
        for action in ("pod_logs", "collect_diagnostics"):
            out = await fake_run(action, {"namespace": fake.namespace, "pod": "chatty"})
            assert len(out["logs"] if action == "pod_logs" else out["logs"]["app"]) == 64 * 1024
    assert len(spied) == 2
    assert max(spied) <= 1024 * 1024
    # the connection cut short is not reused: the next request is answered as usual
    assert (await fake_run("pod_logs", {"namespace": fake.namespace, "pod": "chatty"}))["pod"] == "chatty"


async def test_collect_diagnostics_gathers_spec_status_and_events(kube: Kube, run: Runner) -> None:
    pod = kube.pod("web")
    kube.create(
        kube.ns_path("events"),
        {
            "metadata": {"name": "web.1"},
            "involvedObject": {
                "kind": "Pod",
                "name": "web",
                "namespace": kube.namespace,
                "uid": pod["metadata"]["uid"],
            },
            "reason": "BackOff",
            "message": "Back-off restarting failed container",
            "type": "Warning",
            "count": 3,
            "lastTimestamp": "2026-01-01T00:00:00Z",
            "firstTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    out = await run("collect_diagnostics", {"namespace": kube.namespace, "pod": "web"})
    assert out["pod"]["metadata"]["name"] == "web"
    assert out["pod"]["spec"]["containers"][0]["name"] == "app"
    assert [(e["reason"], e["count"]) for e in out["events"]] == [("BackOff", 3)]
    assert out["logs"] == {"app": ""}


async def test_cleanup_failed_pods_deletes_only_failed_ones(kube: Kube, run: Runner) -> None:
    for name in ("ok", "bad-1", "bad-2"):
        kube.pod(name, labels={"job": "batch"})
    for name in ("bad-1", "bad-2"):
        kube.patch(
            kube.ns_path("pods", name) + "/status", {"status": {"phase": "Failed", "reason": "Evicted"}}
        )

    dry = await run("cleanup_failed_pods", {"namespace": kube.namespace}, dry_run=True)
    assert dry == {"deleted": ["bad-1", "bad-2"], "count": 2}
    assert len(kube.pods()) == 3

    out = await run("cleanup_failed_pods", {"namespace": kube.namespace, "label_selector": "job=batch"})
    assert out == {"deleted": ["bad-1", "bad-2"], "count": 2}
    assert [p["metadata"]["name"] for p in kube.pods()] == ["ok"]


def _failed_pods(kube: Kube, count: int) -> None:
    for number in range(count):
        kube.pod(f"failed-{number}")
        kube.patch(kube.ns_path("pods", f"failed-{number}") + "/status", {"status": {"phase": "Failed"}})


async def test_cleanup_failed_pods_with_nothing_of_its_own_left_runs_again(kube: Kube, run: Runner) -> None:
    """No stamped pod left: a throttled first list (the common case) or a whole selection deleted
    before the crash; the repeat selects afresh, failed pods only, up to max (docs/operations.md)."""
    _failed_pods(kube, 4)
    params = {"namespace": kube.namespace, "max": 2}
    ctx = run.context()
    assert await run.check("cleanup_failed_pods", params, ctx) is Effect.NOT_DONE  # nothing done yet
    assert (await run("cleanup_failed_pods", params, ctx=ctx))["count"] == 2
    assert await run.check("cleanup_failed_pods", params, ctx) is Effect.NOT_DONE
    assert len(kube.pods()) == 2


async def test_cleanup_failed_pods_resumes_its_own_selection(kube: Kube, run: Runner) -> None:
    """A crash after the pods were stamped, before the first deletion: the repeat deletes those."""
    _failed_pods(kube, 4)
    params = {"namespace": kube.namespace, "max": 2}

    def die_before_delete(method: str, path: str) -> None:
        if method == "DELETE":
            raise Crash(path)

    crashing = interposed(run, die_before_delete)
    ctx = crashing.context()
    with pytest.raises(Crash):
        await crashing("cleanup_failed_pods", params, ctx=ctx)
    selected = sorted(p["metadata"]["name"] for p in kube.pods() if ctx.idempotency_key in str(p["metadata"]))
    assert selected == ["failed-0", "failed-1"]
    recovered = run.context(execution=ctx.execution_id, step=ctx.step)  # after the restart
    assert await run.check("cleanup_failed_pods", params, recovered) is Effect.NOT_DONE
    assert (await run("cleanup_failed_pods", params, ctx=recovered))["deleted"] == selected
    assert sorted(p["metadata"]["name"] for p in kube.pods()) == ["failed-2", "failed-3"]


async def test_check_sees_a_stamped_pod_whose_deletion_never_happened(kube: Kube, run: Runner) -> None:
    """A crash between the stamp and the delete: recovery must run the step again."""
    kube.pod("web")
    ctx = run.context(step="restart")
    kube.patch(
        kube.ns_path("pods", "web"), {"metadata": {"annotations": {"kurative/step": ctx.idempotency_key}}}
    )
    params = {"namespace": kube.namespace, "pod": "web"}
    assert await run.check("delete_pod", params, ctx) is Effect.NOT_DONE
    other = run.context(step="restart")  # another execution: its stamp is not there
    assert await run.check("delete_pod", params, other) is Effect.UNKNOWN
    await run("delete_pod", params, ctx=ctx)
    assert await run.check("delete_pod", params, ctx) is Effect.DONE


def _replace_pod_before(kube: Kube, method: str, suffix: str) -> tuple[list[str], Callable[[str, str], None]]:
    """A hook that, once, replaces pod ``web`` by a new pod of that name just before the request."""
    replaced: list[str] = []

    def before(verb: str, path: str) -> None:
        if verb == method and path.endswith(suffix) and not replaced:
            kube.request("DELETE", kube.ns_path("pods", "web"), gracePeriodSeconds=0)
            replaced.append(kube.pod("web")["metadata"]["uid"])

    return replaced, before


@pytest.mark.parametrize(
    ("action", "method", "suffix", "flag"),
    [
        ("delete_pod", "DELETE", "/pods/web", "deleted"),
        ("evict_pod", "POST", "/pods/web/eviction", "evicted"),
        ("delete_pod", "PATCH", "/pods/web", "deleted"),  # replaced even before the stamp
    ],
)
async def test_a_pod_replaced_meanwhile_is_done_and_its_replacement_untouched(
    kube: Kube, run: Runner, action: str, method: str, suffix: str, flag: str
) -> None:
    """The uid precondition's 409 means the pod acted on is gone: no retry may hit the new one."""
    old = kube.pod("web")["metadata"]["uid"]
    replaced, before = _replace_pod_before(kube, method, suffix)
    racing = interposed(run, before)
    ctx = racing.context()
    params = {"namespace": kube.namespace, "pod": "web"}

    out = await racing(action, params, ctx=ctx)

    assert out == {"pod": "web", "uid": old, flag: False}
    current = kube.get(kube.ns_path("pods", "web"))
    assert current["metadata"]["uid"] == replaced[0]
    assert not current["metadata"].get("deletionTimestamp")
    assert "kurative/step" not in (current["metadata"].get("annotations") or {})
    # recovery cannot tell a replacement from a pod never touched: it parks rather than deletes
    assert await run.check(action, params, ctx) is Effect.UNKNOWN
