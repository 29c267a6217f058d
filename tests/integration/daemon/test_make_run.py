"""``make run`` as a newcomer uses it: the daemon on examples/ with the SQLite journal in dry-run, the
curl command it prints turns the example alert into an execution, and the command it prints shows it.
No Kubernetes configuration: said once at start, Kubernetes steps fail with that message."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.postgres import free_port
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[3]


def printed(out: Path, prefix: str) -> str:
    for line in out.read_text().splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise AssertionError(f"make run printed no {prefix!r} line:\n{out.read_text()}")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def test_make_run_turns_the_example_alert_into_an_execution(tmp_path: Path) -> None:
    if shutil.which("make") is None or shutil.which("curl") is None:
        pytest.fail("make and curl are needed: install Debian's make and curl")
    port = free_port()
    journal = f"sqlite:///{tmp_path / 'kurative.db'}"
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "KURATIVE_"))}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    out = tmp_path / "make-run.log"
    command = [
        "make", "--no-print-directory", "-o", f"{venv}/bin/.installed", "run",
        f"VENV={venv}", f"LISTEN=127.0.0.1:{port}", f"JOURNAL={journal}",
    ]  # fmt: skip
    with out.open("wb") as log:
        make = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = wait_for(
            lambda: "kurative serve on " in out.read_text() and printed(out, "kurative serve on "),
            "the URL printed",
            within=60.0,
        ).split()[0]
        assert url == f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(url), "ready", within=60.0)

        send = printed(out, "Send it an alert:")
        assert "examples/alerts/crashlooping.json" in send
        answer = subprocess.run(
            shlex.split(send), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True
        )
        assert json.loads(answer.stdout) == {"received": 2}

        list_command = shlex.split(printed(out, "See what it did:"))

        def listed() -> list[dict[str, object]]:
            shown = subprocess.run(
                [*list_command, "-o", "json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            items: list[dict[str, object]] = json.loads(shown.stdout)
            return [e for e in items if e["state"] == "failed"]

        (execution,) = wait_for(listed, "the execution finished", within=60.0)
        assert execution["playbook_name"] == "restart-crashlooping-workload"
        assert execution["dry_run"] is True
        assert "no Kubernetes config" in str(execution["error"])
        table = subprocess.run(
            list_command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert "restart-crashlooping-workload" in table.stdout
        show = next(line for line in out.read_text().splitlines() if " executions show " in line)
        show_command = [str(execution["id"]) if a == "<ID>" else a for a in shlex.split(show)]
        shown = subprocess.run(
            show_command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert "kubernetes.collect_diagnostics" in shown.stdout
        assert "dry_run" in shown.stdout  # the webhook step, recorded as a dry run
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    text = out.read_text()
    assert text.count('"kubernetes_not_configured"') == 1, text
    assert "Traceback" not in text
