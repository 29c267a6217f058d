"""Known secret values through a whole run of ``kurative serve``; then every log line, journal row, API
answer and CLI output is scanned for them (also base64-, URL- and JSON-encoded): 0 occurrences.

The secrets: an ingress bearer token and a basic-auth password (from files), the journal URL's
password (a PostgreSQL role that must give it), a webhook URL with a key in its query (from the
environment, by secret reference), an HTTP header from the environment and one from a file. The run
has a webhook that fails twice with the secrets echoed in its 500 body and then succeeds (echoing
them again), one that always answers 500 with the request echoed back (URL, headers), retries, an
``always`` step, requests with wrong credentials, and debug logging.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.http_sink import HttpSink
from tests.support.leaks import encodings, file_texts, report, scan
from tests.support.postgres import PostgresServer, free_port, postgres_server  # noqa: F401

pytestmark = pytest.mark.timeout(180)

SECRETS = {
    "bearer-token": "ingress-bearer-7f3a9c1e5b2d",
    "basic-password": "basic-pa55word-04b1e8",
    "journal-password": "pgJ0urnal&S3cret%x",
    "webhook-key": "whk-Q8s7/d6f5+g4h3",  # written percent-encoded in the URL
    "broken-key": "brk-M1n2b3v4c5x6",
    "hook-password": "hookpw-T5r4e3w2q1",  # in the webhook's URL: httpx sends it as basic auth
    "header-env": 'hdr-env-9Zx8"Cv7\\Bn6',  # JSON escapes it: a remote's JSON echo holds another form
    "header-file": "hdr-file-K2j4h6g8f0",
}

FLAKY = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: flaky, version: 1}
spec:
  trigger: {alertname: [SecretFlaky]}
  approval: auto
  steps:
    - name: notify
      action: http.request
      params:
        url: {secretRef: webhook}
        headers: {X-Api-Key: {secretRef: header-env}, X-File-Secret: {secretRef: header-file}}
        json: {pod: "${labels.pod}"}
      retry: {attempts: 4, backoff: 200ms}
"""

BROKEN = """\
apiVersion: kurative/v1
kind: Playbook
metadata: {name: broken, version: 1}
spec:
  trigger: {alertname: [SecretBroken]}
  approval: auto
  steps:
    - name: notify
      action: http.request
      params:
        url: {secretRef: broken-webhook}
        headers: {X-Api-Key: {secretRef: header-env}}
        json: {pod: "${labels.pod}"}
      retry: {attempts: 2, backoff: 200ms}
    - name: cleanup
      action: log
      always: true
      params: {message: "after the broken hook"}
"""


def echoed_secrets() -> str:
    """What a webhook that quotes its request back says: its key, the header values it was sent."""
    sent = {name: SECRETS[name] for name in ("webhook-key", "header-env", "header-file")}
    return json.dumps(
        {
            "error": "denied",
            "you sent": sent,
            "raw": f"/hook?key={SECRETS['webhook-key']} " + " ".join(sent.values()),
        }
    )


def write_setup(folder: Path, sink: HttpSink, journal_url: str) -> tuple[Path, dict[str, str], int]:
    secrets_dir = folder / "secrets"
    secrets_dir.mkdir()
    for name in ("bearer-token", "basic-password", "header-file"):
        (secrets_dir / name).write_text(SECRETS[name] + "\n")
    rules = folder / "rules"
    rules.mkdir()
    (rules / "flaky.yaml").write_text(FLAKY)
    (rules / "broken.yaml").write_text(BROKEN)
    port = free_port()
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {
            "bearerTokens": [{"secretRef": "bearer-token", "name": "alertmanager"}],
            "basic": [{"username": "ops", "password": {"secretRef": "basic-password"}}],
        },
        "journal": {"migrate": True},
        "playbooks": {"paths": ["rules"]},
        "runner": {"lease": "3s", "pollInterval": "200ms", "shutdownTimeout": "5s"},
        "secrets": {
            "bearer-token": {"file": "secrets/bearer-token"},
            "basic-password": {"file": "secrets/basic-password"},
            "header-file": {"file": "secrets/header-file"},
            "header-env": {"env": "TEST_HEADER_SECRET"},
            "webhook": {"env": "TEST_WEBHOOK_URL"},
            "broken-webhook": {"env": "TEST_BROKEN_URL"},
        },
        "logging": {"format": "json", "level": "debug"},
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))
    env = {
        "KURATIVE_JOURNAL": journal_url,
        "TEST_HEADER_SECRET": SECRETS["header-env"],
        "TEST_WEBHOOK_URL": sink.url.replace("http://", f"http://hook:{SECRETS['hook-password']}@")
        + f"/hook?key={urllib.parse.quote(SECRETS['webhook-key'], safe='')}",
        "TEST_BROKEN_URL": f"{sink.url}/broken?key={SECRETS['broken-key']}&v=1",
    }
    return path, env, port


def dump_journal(url: str) -> Iterator[tuple[str, str]]:
    """Every row of every table of the journal's database, as text."""
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        ]
        assert tables
        for table in tables:
            rows = conn.execute(psycopg.sql.SQL("SELECT * FROM {}").format(psycopg.sql.Identifier(table)))
            for number, row in enumerate(rows.fetchall()):
                text = " | ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
                yield f"journal table {table} row {number}", text


def cli(*args: str, env: dict[str, str]) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "kurative.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    return " ".join(args[:2]), result.stdout + result.stderr


@pytest.mark.postgres
async def test_no_secret_value_appears_in_logs_journal_api_or_cli_output(
    tmp_path: Path,
    sink: HttpSink,
    postgres_server: PostgresServer,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
) -> None:
    journal_url = postgres_server.create_role(
        "kurative_secrets", SECRETS["journal-password"], "secrets_journal"
    )
    config, env, port = write_setup(tmp_path, sink, journal_url)
    sink.answer(500, echoed_secrets(), headers={"Content-Type": "application/json"}, times=2, path="/hook")
    sink.echo("/hook")  # then 200, with the whole request quoted back
    sink.echo("/broken", status=500)
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kurative.cli", "serve", "--config", str(config)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    texts: list[tuple[str, str]] = []
    bearer = {"Authorization": f"Bearer {SECRETS['bearer-token']}"}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-3000:]
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            flaky = [{"labels": {"alertname": "SecretFlaky", "pod": "p1"}}]
            broken = [{"labels": {"alertname": "SecretBroken", "pod": "p2"}}]
            answer = await client.post("/api/v2/alerts", json=flaky, headers=bearer)
            assert answer.status_code == 200, answer.text
            answer = await client.post("/api/v2/alerts", json=broken, auth=("ops", SECRETS["basic-password"]))
            assert answer.status_code == 200, answer.text
            # wrong credentials, some of them holding the real secrets in the wrong place
            wrong = [
                {"Authorization": f"Bearer {SECRETS['bearer-token']}x"},
                {"Authorization": f"Bearer x{SECRETS['bearer-token']}"},
                {"Authorization": f"Basic {SECRETS['basic-password']}"},
                {"Authorization": SECRETS["bearer-token"]},
                {"X-Api-Key": SECRETS["bearer-token"]},
            ]
            for headers in wrong:
                answer = await client.post("/api/v2/alerts", json=flaky, headers=headers)
                assert answer.status_code == 401, answer.text
                texts.append(("401 answer", answer.text + json.dumps(dict(answer.headers))))
            answer = await client.post("/api/v2/alerts", json=flaky, auth=("root", SECRETS["basic-password"]))
            assert answer.status_code == 401
            answer = await client.post("/api/v2/alerts", json=flaky, auth=("ops", SECRETS["bearer-token"]))
            assert answer.status_code == 401
            answer = await client.get(f"/api/v1/executions?token={SECRETS['bearer-token']}")
            assert answer.status_code == 401
            texts.append(("401 answer", answer.text))

            deadline = time.monotonic() + 60
            while True:
                page = (await client.get("/api/v1/executions", headers=bearer)).json()
                states = {e["playbook_name"]: e["state"] for e in page["items"]}
                if states == {"flaky": "succeeded", "broken": "failed"}:
                    break
                assert time.monotonic() < deadline, (states, log.read_text()[-3000:])
                await asyncio.sleep(0.2)
            assert len(sink.requests) == 3 + 2  # flaky: 2 failures and a success; broken: 2 attempts
            texts.append(("GET /api/v1/executions", json.dumps(page)))
            for execution in page["items"]:
                shown = await client.get(f"/api/v1/executions/{execution['id']}", headers=bearer)
                texts.append((f"GET /api/v1/executions/{execution['id']}", shown.text))
            for path in ("/api/v1/alerts", "/api/v1/playbooks", "/api/v1/breakers", "/metrics", "/readyz"):
                answer = await client.get(path, headers=bearer)
                assert answer.status_code == 200, (path, answer.text)
                texts.append((f"GET {path}", answer.text))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    broken_detail = next(t for w, t in texts if w.startswith("GET /api/v1/executions/") and '"broken"' in t)
    assert "500" in broken_detail  # the failure is there, said without the secrets the body echoed

    cli_env = {"KURATIVE_JOURNAL": journal_url}
    texts.append(cli("executions", "list", "-o", "json", env=cli_env))
    for execution in page["items"]:
        texts.append(cli("executions", "show", execution["id"], env=cli_env))
    texts.append(cli("migrate", "--status", env=cli_env))
    unreachable = journal_url.replace(f":{postgres_server.port}/", f":{free_port()}/")
    texts.append(cli("migrate", "--status", "--journal", unreachable, env={}))
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        json.dumps(
            {
                "apiVersion": "kurative/v1",
                "kind": "Config",
                "listen": {"host": "127.0.0.1", "port": free_port()},
                "journal": {"wait": "2s"},
            }
        )
    )
    rules = str(tmp_path / "rules")
    texts.append(
        cli("serve", "--config", str(quick), "--rules", rules, "--journal", unreachable, "--debug", env={})
    )
    wrong_password = journal_url.replace("S3cret", "Secret")
    texts.append(cli("executions", "list", "--journal", wrong_password, "--debug", env={}))
    assert "couldn't reach the journal" in texts[-2][1], texts[-2][1][-2000:]
    assert "password authentication failed" in texts[-1][1], texts[-1][1][-2000:]

    texts.extend(file_texts(log))
    texts.extend(dump_journal(journal_url))
    captured = capfd.readouterr()
    texts.append(("pytest captured output", captured.out + captured.err))

    secrets = {**SECRETS, "webhook-url": env["TEST_WEBHOOK_URL"], "broken-url": env["TEST_BROKEN_URL"]}
    secrets["journal-url"] = journal_url
    leaks = scan(secrets, texts)
    lines = len(log.read_text().splitlines())
    rows = sum(1 for where, _ in texts if where.startswith("journal table"))
    forms = sum(len(encodings(v)) for v in secrets.values())
    print(
        f"\nscanned {len(texts)} texts ({lines} log lines, {rows} journal rows) for {len(secrets)} "
        f"secrets in {forms} forms: {len(leaks)} occurrences"
    )
    assert not leaks, report(leaks)


@pytest.mark.parametrize("prefix", ["", "a", "ab", "user:"])
def test_the_scanner_finds_each_form_of_a_secret_and_says_where(prefix: str) -> None:
    value = 'p@ss w0rd/&="xé'
    basic = base64.b64encode(f"{prefix}{value}".encode()).decode()
    texts = [
        ("plain", f"...{value}..."),
        ("json", json.dumps({"k": value})),
        ("json-in-json", json.dumps({"line": json.dumps({"k": value})})),
        ("url", "?q=" + urllib.parse.quote(value, safe="")),
        ("basic", f"Authorization: Basic {basic}"),
        ("clean", "nothing to see here"),
    ]
    leaks = scan({"pw": value}, texts)
    assert {leak.where for leak in leaks} == {"plain", "json", "json-in-json", "url", "basic"}
    assert all(value not in str(leak) for leak in leaks)  # the report names the secret, never shows it
