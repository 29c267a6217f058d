"""Hot reload with the daemon running: a ConfigMap's ``..data`` swap, a git-sync flip, a burst of
writes, a broken file, a deleted file and SIGHUP; every change is picked up without a restart and
executions run the version that was active when their alert was matched."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from kurative.journal import Execution
from tests.integration.daemon.conftest import Running, Setup, StartDaemon, alert_payload
from tests.integration.daemon.test_crash import Serve, ready, wait_for

pytestmark = pytest.mark.timeout(120)


def playbook(version: int, name: str = "probe", action: str = "log") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: kurative/v1
        kind: Playbook
        metadata: {{name: {name}, version: {version}}}
        spec:
          trigger: {{alertname: [Probe]}}
          approval: auto
          steps:
            - {{name: say, action: {action}, params: {{message: "version {version}"}}}}
        """
    )


def versions(running: Running) -> dict[str, int]:
    active = running.daemon.ruleset
    assert active is not None
    return {c.name: c.playbook.version for c in active.ruleset.playbooks}


async def until_versions(running: Running, expected: dict[str, int], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while versions(running) != expected:
            await asyncio.sleep(0.02)


async def run_one(running: Running, client: httpx.AsyncClient, pod: str) -> Execution:
    """Post one alert and return the execution it started, once finished."""
    seen = {e.id for e in await running.executions()}
    answer = await client.post(
        "/api/v1/alerts", json=alert_payload({"labels": {"alertname": "Probe", "pod": pod}})
    )
    assert answer.status_code == 200, answer.text
    async with asyncio.timeout(20):
        while True:
            for execution in await running.executions():
                if execution.id not in seen and execution.state.finished:
                    return execution
            await asyncio.sleep(0.05)


def configmap(folder: Path, files: dict[str, str], generation: int) -> None:
    """Write ``files`` the way the kubelet updates a ConfigMap volume: a new timestamped folder, a
    ``..data`` symlink renamed over the old one, visible symlinks into it, the old folder removed."""
    folder.mkdir(exist_ok=True)
    target = folder / f"..2026_12_01_10_{generation:02d}_00.{generation}"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    (folder / "..data_tmp").symlink_to(target.name)
    old = (folder / "..data").resolve() if (folder / "..data").exists() else None
    os.replace(folder / "..data_tmp", folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if old is not None:
        for leftover in old.iterdir():
            leftover.unlink()
        old.rmdir()


async def test_configmap_data_swap_is_picked_up(setup: Setup, start_daemon: StartDaemon) -> None:
    configmap(setup.rules, {"probe.yaml": playbook(1)}, 1)
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        assert (await run_one(running, client, "a")).playbook_version == 1
        configmap(setup.rules, {"probe.yaml": playbook(2)}, 2)
        await until_versions(running, {"probe": 2})
        assert (await run_one(running, client, "b")).playbook_version == 2


async def test_git_sync_flip_of_the_rules_path_is_picked_up(setup: Setup, start_daemon: StartDaemon) -> None:
    root = setup.folder / "git"
    first = root / "worktrees" / "aaa" / "playbooks"
    first.mkdir(parents=True)
    (first / "probe.yaml").write_text(playbook(1))
    (root / "current").symlink_to(first.parent)
    settings = setup.settings(playbooks={"paths": ["git/current/playbooks"]})
    async with start_daemon(settings, setup.env) as running, running.client() as client:
        assert versions(running) == {"probe": 1}
        second = root / "worktrees" / "bbb" / "playbooks"
        second.mkdir(parents=True)
        (second / "probe.yaml").write_text(playbook(2))
        (root / "current.tmp").symlink_to(second.parent)
        os.replace(root / "current.tmp", root / "current")  # git-sync's atomic flip
        await until_versions(running, {"probe": 2})
        assert (await run_one(running, client, "b")).playbook_version == 2
        third = root / "worktrees" / "ccc" / "playbooks"  # and again: the watch followed the flip
        third.mkdir(parents=True)
        (third / "probe.yaml").write_text(playbook(3))
        (root / "current.tmp").symlink_to(third.parent)
        os.replace(root / "current.tmp", root / "current")
        await until_versions(running, {"probe": 3})


async def test_a_burst_of_writes_ends_on_the_last_content(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.playbook("probe", playbook(1))
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        for version in range(2, 22):  # 20 writes in about 100 ms
            (setup.rules / "probe.yaml").write_text(playbook(version))
            await asyncio.sleep(0.005)
        await until_versions(running, {"probe": 21})
        await asyncio.sleep(0.5)  # nothing later moves it back
        assert versions(running) == {"probe": 21}
        assert (await run_one(running, client, "z")).playbook_version == 21


async def test_broken_and_deleted_files(setup: Setup, start_daemon: StartDaemon) -> None:
    setup.playbook("probe", playbook(1))
    setup.playbook("other", playbook(1, name="other"))
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        (setup.rules / "probe.yaml").write_text(playbook(2, action="no.such.action"))
        (setup.rules / "other.yaml").write_text(playbook(2, name="other"))
        await until_versions(running, {"probe": 1, "other": 2})  # the broken one keeps version 1
        shown = (await client.get("/api/v1/playbooks")).json()
        assert shown["reloaded"] is False
        states = {p["name"]: (p["version"], p["status"]) for p in shown["playbooks"]}
        assert states == {"probe": (1, "stale"), "other": (2, "active")}
        (error,) = [e for e in shown["errors"] if e["severity"] == "error"]
        assert error["path"].endswith("probe.yaml")
        assert error["line"] > 0
        assert error["column"] > 0
        assert error["where"] == f"{error['path']}:{error['line']}:{error['column']}"
        assert "no.such.action" in error["message"]
        execution = await run_one(running, client, "c")
        assert execution.playbook_name in {"probe", "other"}
        (setup.rules / "other.yaml").unlink()
        await until_versions(running, {"probe": 1})


async def test_alerts_wait_unmatched_until_a_missing_rules_path_appears(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    """A git-sync clone not there yet (or a mistyped path): not ready, and an alert acknowledged
    meanwhile is matched once the playbooks arrive, not against nothing."""
    assert not setup.rules.exists()
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert "no rules path exists" in answer.text
        assert str(setup.rules) not in answer.text  # /readyz needs no credentials: no paths
        posted = await client.post(
            "/api/v1/alerts", json=alert_payload({"labels": {"alertname": "Probe", "pod": "early"}})
        )
        assert posted.status_code == 200, posted.text
        await asyncio.sleep(1.0)  # the matcher was woken by the commit
        assert len(await running.journal.unmatched_alerts()) == 1
        setup.playbook("probe", playbook(1))
        (execution,) = await running.settle(1)
        assert execution.playbook_version == 1
        assert (await client.get("/readyz")).status_code == 200
        assert await running.journal.unmatched_alerts() == ()


async def test_sighup_reloads_when_watching_is_off(setup: Setup, tmp_path: Path) -> None:
    setup.playbook("probe", playbook(1))
    config = setup.config(playbooks={"paths": ["rules"], "watch": False})
    import json

    port = json.loads(config.read_text())["listen"]["port"]
    url = f"http://127.0.0.1:{port}"
    process = Serve(config, setup.env, tmp_path / "serve.log")
    process.start()
    try:
        await ready(url)
        (setup.rules / "probe.yaml").write_text(playbook(2))
        await asyncio.sleep(0.5)
        assert "version 2" not in (tmp_path / "serve.log").read_text()
        assert process.process is not None
        os.kill(process.process.pid, signal.SIGHUP)

        async def reloaded() -> bool:
            text = (tmp_path / "serve.log").read_text()
            return '"playbooks_reloaded"' in text and '"sighup"' in text and '"updated": ["probe"]' in text

        await wait_for(reloaded, within=20)
        assert process.terminate() == 0
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()


SLOW = """\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: probe, version: {version}}}
    spec:
      trigger: {{alertname: [Probe]}}
      approval: auto
      steps:
        - {{name: wait, action: sleep, params: {{duration: 1500ms}}}}
        - {{name: {last}, action: log, params: {{message: "version {version}"}}}}
"""


async def test_a_running_execution_finishes_on_the_version_it_started_with(
    setup: Setup, start_daemon: StartDaemon
) -> None:
    setup.playbook("probe", SLOW.format(version=1, last="old-last-step"))
    async with start_daemon(setup.settings(), setup.env) as running, running.client() as client:
        answer = await client.post(
            "/api/v1/alerts", json=alert_payload({"labels": {"alertname": "Probe", "pod": "slow"}})
        )
        assert answer.status_code == 200
        async with asyncio.timeout(10):  # its first step is running
            while not [e for e in await running.executions() if e.state.value == "running"]:
                await asyncio.sleep(0.02)
        setup.playbook("probe", SLOW.format(version=2, last="new-last-step"))
        await until_versions(running, {"probe": 2})
        (execution,) = await running.settle(1)
        detail = await running.journal.get_execution(execution.id)
        assert execution.playbook_version == 1
        assert [s.name for s in detail.steps if s.status.value == "succeeded"] == ["wait", "old-last-step"]
