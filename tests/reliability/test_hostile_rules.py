"""Hostile files dropped into the rules directory a running ``kurative serve`` watches.

Each one (an alias bomb, 100,000 levels of nesting, a huge key, a 50 MB file, a binary file, a
symlink to /dev/zero, a FIFO, a symlink loop, invalid UTF-8, a file removed while it is read) is
refused with a diagnostic naming the file, in ``GET /api/v1/playbooks`` and in the log; the daemon's
memory stays bounded (VmHWM, the peak, is printed with ``-s``); the good playbook stays in force and
matches an alert; and the reload goes on working after the file is gone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.hostile_process import TOKEN, Process, serve
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(180)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEAK_GROWTH_MIB = 100
"""What the daemon's peak RSS may grow by over all the hostile files together."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("hostile-rules")
    with serve(folder) as served:
        served.baseline_peak_kib = served.peak_rss_kib()
        yield served


def rules(daemon: Process) -> Path:
    return daemon.log.parent / "rules"


def playbooks(daemon: Process) -> dict[str, Any]:
    answer = httpx.get(f"{daemon.url}/api/v1/playbooks", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def errors_for(daemon: Process, name: str) -> list[dict[str, Any]]:
    return [e for e in playbooks(daemon)["errors"] if Path(e["path"]).name == name]


def bomb(path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    path.write_text("\n".join(lines) + "\n")


def deep(path: Path) -> None:
    path.write_text("spec: " + "[" * 100_000 + "]" * 100_000 + "\n")


def deep_mappings(path: Path) -> None:
    path.write_text("spec: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n")


def huge_key(path: Path) -> None:
    path.write_text('"' + "k" * 900_000 + '": 1\n')


def fifty_megabytes(path: Path) -> None:
    line = b"# " + b"x" * 1021 + b"\n"
    with path.open("wb") as out:
        for _ in range(50 * 1024):
            out.write(line)


def binary(path: Path) -> None:
    path.write_bytes(os.urandom(4096) + b"\0" + os.urandom(4096))


def invalid_utf8(path: Path) -> None:
    path.write_bytes(
        b"apiVersion: kurative/v1\nkind: Playbook\nmetadata: {name: \xff\xfe\xc3(, version: 1}\n"
    )


def dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def fifo(path: Path) -> None:
    os.mkfifo(path)


def loop(path: Path) -> None:
    path.symlink_to(path.name)


HOSTILE: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "bomb.yaml": (bomb, "E006"),
    "deep.yaml": (deep, "E007"),
    "deep-mappings.yaml": (deep_mappings, "E007"),
    "huge-key.yaml": (huge_key, None),
    "fifty.yaml": (fifty_megabytes, "E005"),
    "binary.yaml": (binary, "E001"),
    "invalid-utf8.yaml": (invalid_utf8, "E001"),
    "zero.yaml": (dev_zero, "E001"),
    "fifo.yaml": (fifo, "E001"),
    "loop.yaml": (loop, "E001"),
}


def succeeded(daemon: Process) -> int:
    answer = httpx.get(
        f"{daemon.url}/api/v1/executions",
        params={"playbook": "note", "state": "succeeded", "limit": 500},
        headers=AUTH,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return len(answer.json()["items"])


def assert_good_playbook_still_matches(daemon: Process, pod: str) -> None:
    served = {p["name"]: p for p in playbooks(daemon)["playbooks"]}
    assert served["note"]["status"] == "active", served
    before = succeeded(daemon)
    alert = [{"labels": {"alertname": "Hostile", "pod": pod}}]
    answer = httpx.post(f"{daemon.url}/api/v2/alerts", json=alert, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    wait_for(lambda: succeeded(daemon) > before, f"an execution of 'note' for pod {pod}")


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_refused_naming_it_and_the_daemon_is_unaffected(daemon: Process, name: str) -> None:
    make, code = HOSTILE[name]
    path = rules(daemon) / name
    before = daemon.peak_rss_kib()
    make(path)
    try:
        found = wait_for(lambda: errors_for(daemon, name), f"an error for {name} in /api/v1/playbooks")
        assert all(e["severity"] == "error" for e in found), found
        if code is not None:
            assert code in {e["code"] for e in found}, found
        wait_for(lambda: name in daemon.log_text(), f"{name} named in the log")
        logged = [json.loads(line) for line in daemon.log_text().splitlines() if name in line]
        assert any(entry["event"] == "playbook_problem" for entry in logged), logged
        assert "Traceback" not in daemon.log_text()
        assert_good_playbook_still_matches(daemon, pod=name)
        print(
            f"\n{name}: {found[0]['code']} {found[0]['message'][:80]!r}; peak RSS "
            f"{before / 1024:.1f} -> {daemon.peak_rss_kib() / 1024:.1f} MiB"
        )
    finally:
        path.unlink()
    wait_for(lambda: not errors_for(daemon, name), f"the error for {name} gone once the file is removed")
    assert daemon.peak_rss_kib() - daemon.baseline_peak_kib < PEAK_GROWTH_MIB * 1024


def test_a_file_removed_while_it_is_read_is_no_crash(daemon: Process) -> None:
    stop = threading.Event()
    big = ("# " + "y" * 1000 + "\n") * 900  # under the size limit: read and parsed in full

    def churn() -> None:
        count = 0
        while not stop.is_set():
            path = rules(daemon) / f"churn-{count % 3}.yaml"
            path.write_text(big)
            time.sleep(0.01)
            path.unlink()
            count += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        time.sleep(4)
    finally:
        stop.set()
        thread.join(10)
    wait_for(
        lambda: not [e for e in playbooks(daemon)["errors"] if "churn-" in e["path"]],
        "no error left for the removed files",
    )
    assert daemon.alive()
    log = daemon.log_text()
    assert "Traceback" not in log
    assert "reload_failed" not in log, log[-3000:]
    assert_good_playbook_still_matches(daemon, pod="churn")


def test_reload_keeps_working_after_the_hostile_files(daemon: Process) -> None:
    text = (rules(daemon) / "note.yaml").read_text()
    (rules(daemon) / "second.yaml").write_text(
        text.replace("name: note", "name: second").replace("[Hostile]", "[Second]")
    )
    wait_for(
        lambda: any(
            p["name"] == "second" and p["status"] == "active" for p in playbooks(daemon)["playbooks"]
        ),
        "the new playbook in force",
    )
    answer = httpx.post(f"{daemon.url}/api/v1/reload", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    assert not playbooks(daemon)["errors"]
    assert_good_playbook_still_matches(daemon, pod="after")
    print(
        f"\npeak RSS over every hostile file: {daemon.baseline_peak_kib / 1024:.1f} -> "
        f"{daemon.peak_rss_kib() / 1024:.1f} MiB"
    )
