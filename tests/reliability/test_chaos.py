"""Chaos with replicas: three ``kurative serve`` processes on one PostgreSQL behind a real Alertmanager
that sends every notification to all three, thousands of alerts, and a SIGKILL of a random replica every
few seconds (each started again at once on its port). Afterwards every alert Alertmanager accepted has
exactly the executions its playbooks call for, nothing is left pending or running, no webhook took
effect twice (the sink recognises a repeat by its Idempotency-Key), every ConfigMap a playbook labels
was changed exactly once and every CronJob a playbook triggers (a stamped step: a repeat finds its Job)
has exactly one Job. The known secret values (the ingress token, the webhook URL's key, a
header token, the cluster token) occur in no log, no journal row, no API answer and not in the report.

``KURATIVE_CHAOS_ALERTS`` (default 5000), ``KURATIVE_CHAOS_SECONDS`` (the time the alerts are posted
over, default 60), ``KURATIVE_CHAOS_KILLS`` (at least this many kills, default 20) and
``KURATIVE_CHAOS_INTERVAL`` (seconds between kills, drawn from ``LOW,HIGH``, default 1.5,3.5) scale the
run; ``KURATIVE_CHAOS_SEED`` repeats the choice of victims and intervals of an earlier run (its report
names the seed).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import random
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.alertmanager import require_alertmanager
from tests.support.chaos import (
    ChangeLog,
    Chaos,
    FanoutAlertmanager,
    Replica,
    Report,
    alert_bodies,
    journal_text,
    log_summary,
    occurrences,
    query,
)
from tests.support.fakekube import fake_cluster
from tests.support.fakekube.store import BY_KIND
from tests.support.http_sink import http_sink
from tests.support.postgres import free_port, start_postgres

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.timeout(900)]

ALERTS = int(os.environ.get("KURATIVE_CHAOS_ALERTS", "5000"))
POST_SECONDS = float(os.environ.get("KURATIVE_CHAOS_SECONDS", "60"))
MIN_KILLS = int(os.environ.get("KURATIVE_CHAOS_KILLS", "20"))
LOW, HIGH = (float(x) for x in os.environ.get("KURATIVE_CHAOS_INTERVAL", "1.5,3.5").split(","))
SEED = int(os.environ.get("KURATIVE_CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
REPLICAS = 3
BATCH = 50  # alerts per POST to Alertmanager, and per Alertmanager group
CRITICAL_EVERY = 5  # every fifth alert is critical: it triggers a CronJob and pages
SINK_REFUSALS = 25  # the webhook's first answers are 503: retried, never an effect
DRAIN_TIMEOUT = 300.0

ALERTNAME = "KurativeChaos"
NAMESPACE = "chaos"
TOKEN = "chaos-ingress-t0ken-6c1f9a"
WEBHOOK_KEY = "chaos-hook-key-93be27"
PAGE_TOKEN = "chaos-page-t0ken-0d4471"

MARK = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: chaos-mark, version: 1}}
    spec:
      trigger: {{alertname: [{ALERTNAME}]}}
      approval: auto
      steps:
        - name: mark
          action: kubernetes.label
          params:
            namespace: "${{labels.namespace}}"
            kind: ConfigMap
            name: "cm-${{labels.n}}"
            labels: {{kurative-execution: "${{execution.id}}"}}
          retry: {{attempts: 10, backoff: 500ms}}
        - name: notify
          action: http.request
          params:
            method: POST
            url: {{secretRef: webhook}}
            json: {{fingerprint: "${{alert.fingerprint}}", n: "${{labels.n}}"}}
          retry: {{attempts: 10, backoff: 500ms}}
"""

PAGE = f"""\
    apiVersion: kurative/v1
    kind: Playbook
    metadata: {{name: chaos-page, version: 1}}
    spec:
      trigger: {{alertname: [{ALERTNAME}], when: "labels.severity == 'critical'"}}
      approval: auto
      steps:
        - name: trigger
          action: kubernetes.trigger_cronjob
          params: {{namespace: "${{labels.namespace}}", name: "cron-${{labels.n}}"}}
          retry: {{attempts: 10, backoff: 500ms}}
        - name: page
          action: http.request
          params:
            method: POST
            url: "${{vars.sink}}/page"
            headers: {{Authorization: {{secretRef: page-token}}}}
            json: {{fingerprint: "${{alert.fingerprint}}", n: "${{labels.n}}"}}
          retry: {{attempts: 10, backoff: 500ms}}
      vars: {{sink: "SINK"}}
"""


def replica_config(folder: Path, port: int, journal: str, kubeconfig: Path) -> Path:
    config = {
        "apiVersion": "kurative/v1",
        "kind": "Config",
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"bearerTokens": [{"secretRef": "am-token", "name": "alertmanager"}]},
        "journal": {"url": journal, "migrate": True},
        "playbooks": {"paths": [str(folder / "rules")]},
        "runner": {"lease": "5s", "pollInterval": "250ms", "shutdownTimeout": "5s"},
        "clusters": {"kubeconfig": str(kubeconfig)},
        # the webhook's refusals open its breaker: executions park and come back after 3 s
        "breakers": {"resetTimeout": "3s"},
        "secrets": {
            "am-token": {"env": "CHAOS_AM_TOKEN"},
            "webhook": {"env": "CHAOS_WEBHOOK_URL"},
            "page-token": {"env": "CHAOS_PAGE_TOKEN"},
        },
        "logging": {"format": "json", "level": "debug"},
    }
    path = folder / f"config-{port}.json"
    path.write_text(json.dumps(config))
    return path


def cronjob(name: str) -> dict[str, Any]:
    pod = {"containers": [{"name": "job", "image": "busybox"}], "restartPolicy": "Never"}
    return {
        "metadata": {"name": name},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": pod}}}},
    }


def drained(journal: str, alerts: int) -> dict[str, int]:
    """Counts that say whether everything has arrived and settled (see ``settled``)."""
    ((delivered, unmatched, open_, total),) = query(
        journal,
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM alerts GROUP BY fingerprint HAVING count(*) >= %s) d),"
        " (SELECT count(*) FROM alerts WHERE matched_at IS NULL),"
        " (SELECT count(*) FROM executions WHERE state IN ('pending', 'running', 'awaiting_approval')),"
        " (SELECT count(*) FROM executions)",
        REPLICAS,
    )
    return {"delivered": delivered, "unmatched": unmatched, "open": open_, "executions": total}


def settled(counts: dict[str, int], alerts: int) -> bool:
    # every alert reached every replica (each commits its own receipt), none waits to be matched, no
    # execution is pending, running (claimed) or waiting
    return counts["delivered"] >= alerts and counts["unmatched"] == 0 and counts["open"] == 0


def api_texts(replicas: list[Replica], ids: list[str]) -> list[tuple[str, str]]:
    """Every page of GET /api/v1/executions and every execution's detail, as the raw answers."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    texts: list[tuple[str, str]] = []
    clients = [httpx.Client(base_url=r.url, headers=headers, timeout=30) for r in replicas]
    try:
        cursor: str | None = None
        while True:
            params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            answer = clients[0].get("/api/v1/executions", params=params)
            assert answer.status_code == 200, answer.text
            texts.append(("GET /api/v1/executions", answer.text))
            cursor = answer.json()["next_cursor"]
            if not cursor:
                break
        for path in ("/api/v1/playbooks", "/api/v1/breakers", "/api/v1/alerts"):
            answer = clients[1].get(path)
            assert answer.status_code == 200, answer.text
            texts.append((f"GET {path}", answer.text))

        def detail(index: int) -> tuple[str, str]:
            answer = clients[index % len(clients)].get(f"/api/v1/executions/{ids[index]}")
            assert answer.status_code == 200, answer.text
            return "GET /api/v1/executions/{id}", answer.text

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            texts.extend(pool.map(detail, range(len(ids))))
    finally:
        for client in clients:
            client.close()
    return texts


def test_three_replicas_killed_at_random_lose_no_alert_and_repeat_no_effect(tmp_path: Path) -> None:
    began = time.monotonic()
    binaries = require_alertmanager()
    replicas: list[Replica] = []
    with contextlib.ExitStack() as stops:
        postgres = stops.enter_context(start_postgres())
        journal = postgres.create_database("chaos")
        cluster = stops.enter_context(fake_cluster())
        sink = stops.enter_context(http_sink())
        sink.answer(503, json_body={"error": "try later"}, times=SINK_REFUSALS, path="/hooks")

        store = cluster.store
        store.create(BY_KIND["Namespace"], "", {"metadata": {"name": NAMESPACE}})
        for n in range(ALERTS):
            store.create(BY_KIND["ConfigMap"], NAMESPACE, {"metadata": {"name": f"cm-{n:05d}"}, "data": {}})
        for n in range(0, ALERTS, CRITICAL_EVERY):
            store.create(BY_KIND["CronJob"], NAMESPACE, cronjob(f"cron-{n:05d}"))
        changes = ChangeLog(store)  # from here on: what the playbooks changed

        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "mark.yaml").write_text(textwrap.dedent(MARK))
        (rules / "page.yaml").write_text(textwrap.dedent(PAGE).replace("SINK", sink.url))
        kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig")
        env = {
            "CHAOS_AM_TOKEN": TOKEN,
            "CHAOS_WEBHOOK_URL": f"{sink.url}/hooks?key={WEBHOOK_KEY}",
            "CHAOS_PAGE_TOKEN": f"Token {PAGE_TOKEN}",
        }
        for i in range(REPLICAS):
            port = free_port()
            config = replica_config(tmp_path, port, journal, kubeconfig)
            replicas.append(Replica(f"r{i}", config, env, tmp_path / f"r{i}.log", port))
        stops.callback(lambda: [r.stop() for r in replicas])
        replicas[0].start()
        replicas[0].wait_ready()  # the first one migrates the empty journal
        for replica in replicas[1:]:
            replica.start()
        for replica in replicas[1:]:
            replica.wait_ready()

        am = FanoutAlertmanager(
            binaries,
            tmp_path / "alertmanager",
            webhook_url="",
            token=TOKEN,
            group_by=("alertname", "batch"),
            repeat_interval="4h",
            webhook_urls=[f"{r.url}/api/v1/alerts" for r in replicas],
        )
        am.workdir.mkdir()
        stops.callback(am.stop)
        am.start()

        posts = alert_bodies(ALERTS, batch=BATCH, alertname=ALERTNAME, critical_every=CRITICAL_EVERY)
        posting = True
        chaos = Chaos(
            replicas, min_kills=MIN_KILLS, keep_going=lambda: posting, interval=(LOW, HIGH), seed=SEED
        )
        chaos.start()
        stops.callback(chaos.finish)
        post_began = time.monotonic()
        for index, body in enumerate(posts):
            delay = post_began + index * POST_SECONDS / len(posts) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            am.post_alerts(body)
        posting = False
        post_seconds = time.monotonic() - post_began
        chaos.join(timeout=600)
        chaos.finish()
        chaos_seconds = time.monotonic() - post_began
        for replica in replicas:
            if not replica.alive():
                assert replica.process is not None
                chaos.crashes.append((replica.name, replica.process.returncode))  # died by itself
                replica.start()
            replica.wait_ready()

        drain_began = time.monotonic()
        counts = drained(journal, ALERTS)
        while not settled(counts, ALERTS):
            if time.monotonic() - drain_began > DRAIN_TIMEOUT:
                states = query(journal, "SELECT state, count(*) FROM executions GROUP BY state")
                pytest.fail(
                    f"not settled within {DRAIN_TIMEOUT:g}s after the chaos: {counts}, states {states},"
                    f" Alertmanager {am.metrics()}\n"
                    + "\n".join(f"--- {r.name}\n{r.log_tail(1500)}" for r in replicas)
                    + f"\n--- alertmanager\n{am.log_tail(1500)}"
                )
            time.sleep(1)
            counts = drained(journal, ALERTS)
        drain_seconds = time.monotonic() - drain_began

        # --- what Alertmanager accepted, and what the playbooks call for ----------------------------
        held = am.alerts()
        fingerprint = {
            a["labels"]["n"]: a["fingerprint"] for a in held if a["labels"].get("alertname") == ALERTNAME
        }
        assert len(fingerprint) == ALERTS, f"Alertmanager holds {len(fingerprint)} of {ALERTS} alerts"
        expected: set[tuple[str, str]] = set()
        for n, fp in fingerprint.items():
            expected.add((fp, "chaos-mark"))
            if int(n) % CRITICAL_EVERY == 0:
                expected.add((fp, "chaos-page"))

        executions = query(
            journal, "SELECT id, alert_fingerprint, playbook_name, state, attempt, error FROM executions"
        )
        per_call = Counter((fp, playbook) for _, fp, playbook, *_ in executions)
        lost = sorted(call for call in expected if per_call[call] == 0)
        duplicated_executions = sum(c - 1 for call, c in per_call.items() if c > 1)
        unexpected = sorted(call for call in per_call if call not in expected)
        states = Counter(state for _, _, _, state, _, _ in executions)
        needs_review = Counter(error for *_, state, _, error in executions if state == "needs_review")
        failed = Counter(error for *_, state, _, error in executions if state == "failed")
        resumed = sum(1 for *_, attempt, _ in executions if attempt > 1)
        execution_of = {(fp, playbook): eid for eid, fp, playbook, *_ in executions}

        # a step recorded started whose attempt has no final record: interrupted by a kill, then
        # recovered (its execution finished)
        ((interrupted, recovered_done, steps_total),) = query(
            journal,
            "SELECT (SELECT count(*) FROM steps s WHERE NOT s.final AND NOT EXISTS (SELECT 1 FROM steps f"
            "   WHERE f.final AND f.execution_id = s.execution_id AND f.step_index = s.step_index"
            "   AND f.attempt = s.attempt)),"
            " (SELECT count(*) FROM steps WHERE final AND output->>'recovered' = 'true'),"
            " (SELECT count(*) FROM steps)",
        )
        ((inbox_rows,),) = query(journal, "SELECT count(*) FROM alerts")

        # --- effects: the sink's requests, the fake's changes ----------------------------------------
        refused_left = SINK_REFUSALS
        effects: dict[str, dict[str, set[str]]] = {"/hooks": defaultdict(set), "/page": defaultdict(set)}
        deliveries: Counter[str] = Counter()
        keyless = 0
        cut = sink.incomplete  # their senders were killed while sending them: they did nothing
        for request in list(sink.requests):
            path = request.path.split("?", 1)[0]
            if path == "/hooks" and refused_left > 0:
                refused_left -= 1  # answered 503: no effect
                continue
            key = request.idempotency_key
            if key is None:
                keyless += 1
                continue
            deliveries[key] += 1
            effects[path][request.json()["fingerprint"]].add(key)
        http_duplicated = keyless + sum(
            len(keys) - 1 for by_fp in effects.values() for keys in by_fp.values() if len(keys) > 1
        )
        repeated_deliveries = sum(c - 1 for c in deliveries.values())
        missing_effects: list[str] = []
        for (fp, playbook), eid in execution_of.items():
            path, step = ("/hooks", "notify") if playbook == "chaos-mark" else ("/page", "page")
            if f"{eid}/{step}" not in effects[path].get(fp, set()):
                missing_effects.append(f"{playbook} {fp}")
        kube_duplicated = 0
        for n, fp in fingerprint.items():
            name = f"cm-{n}"
            changed = changes.changes[("ConfigMap", NAMESPACE, name)]
            labels = store.get(BY_KIND["ConfigMap"], NAMESPACE, name)["metadata"].get("labels") or {}
            if changed > 1:
                kube_duplicated += changed - 1
            if changed == 0 or labels.get("kurative-execution") != execution_of.get((fp, "chaos-mark")):
                missing_effects.append(f"{name} {changed} changes, labels {labels}")

        # a Job per CronJob, made by the step of the execution the journal kept (the name derives from
        # its Idempotency-Key); a second Job would be a repeated trigger
        jobs: dict[str, list[str]] = defaultdict(list)
        for job in store.items(BY_KIND["Job"], NAMESPACE):
            (owner,) = job["metadata"]["ownerReferences"]
            jobs[owner["name"]].append(job["metadata"]["name"])
        for n, fp in fingerprint.items():
            if int(n) % CRITICAL_EVERY:
                continue
            made = jobs.get(f"cron-{n}", [])
            kube_duplicated += max(0, len(made) - 1)
            eid = execution_of.get((fp, "chaos-page"), "")
            digest = hashlib.sha256(f"{eid}/trigger".encode()).hexdigest()[:8]
            if f"cron-{n}-kurative-{digest}" not in made:
                missing_effects.append(f"cron-{n}: jobs {made}")

        # --- secrets: logs, journal rows, API answers, the report ------------------------------------
        secrets = {
            "ingress token": TOKEN,
            "webhook key": WEBHOOK_KEY,
            "page token": PAGE_TOKEN,
            "cluster token": cluster.admin_token,
        }
        logs = {r.name: r.log.read_text(errors="replace") for r in replicas}
        places: list[tuple[str, str]] = [(f"log {name}", text) for name, text in logs.items()]
        places.extend((f"journal {table}", row) for table, row in journal_text(journal))
        places.extend(api_texts(replicas, [eid for eid, *_ in executions]))

        summary = log_summary(logs.values())
        report = Report(
            {
                "alerts": ALERTS,
                "seed": SEED,
                "kill_interval_s": [LOW, HIGH],
                "alerts_posted_over_s": round(post_seconds, 1),
                "posts_to_alertmanager": len(posts),
                "replicas": REPLICAS,
                "kills": len(chaos.kills),
                "kills_per_replica": dict(Counter(k.replica for k in chaos.kills)),
                "crashes": chaos.crashes,
                "replica_starts": sum(r.starts for r in replicas),
                "inbox_rows": inbox_rows,
                "alertmanager": am.metrics(),
                "expected_executions": len(expected),
                "executions": len(executions),
                "states": dict(states),
                "lost": len(lost),
                "duplicated_executions": duplicated_executions,
                "unexpected_executions": len(unexpected),
                "duplicated_effects": {"http": http_duplicated, "kubernetes": kube_duplicated},
                "missing_effects": len(missing_effects),
                "repeated_deliveries_same_key": repeated_deliveries,
                "sink_refusals_503": SINK_REFUSALS - refused_left,
                "sink_requests_cut_by_a_kill": cut,
                "steps_recorded": steps_total,
                # step attempts a kill interrupted (started, never finished by their holder): run
                # again (idempotent, or keyed webhooks) or proven done by their stamp; a step whose
                # recovering replica was killed too is decided more than once in the logs
                "recovered_steps": {
                    "total": interrupted + recovered_done,
                    "run_again": interrupted,
                    "done_by_stamp": recovered_done,
                    "decisions_logged": summary["step_recovered_verdicts"],
                },
                "executions_claimed_again": resumed,
                "needs_review": dict(needs_review),
                "failed": dict(failed),
                "chaos_s": round(chaos_seconds, 1),
                "drain_after_chaos_s": round(drain_seconds, 1),
                "logs": summary,
                "executions_taken_over": summary["events"].get("execution_started_recovered", 0),
                "wall_time_s": round(time.monotonic() - began, 1),
            }
        )
        path = tmp_path / "chaos-report.json"
        text = report.write(path)
        places.append(("report", text))
        leaks = occurrences(secrets, places)
        report.figures["secret_occurrences"] = {name: sum(found.values()) for name, found in leaks.items()}
        text = report.write(path)
        print(f"\nchaos report ({path}):\n{text}")

        assert not lost, f"{len(lost)} lost, e.g. {lost[:5]}"
        assert duplicated_executions == 0, [call for call, c in per_call.items() if c > 1][:5]
        assert not unexpected, unexpected[:5]
        assert http_duplicated == 0, report.figures["duplicated_effects"]
        assert kube_duplicated == 0, report.figures["duplicated_effects"]
        assert not missing_effects, missing_effects[:5]
        assert states == {"succeeded": len(expected)}, (dict(states), dict(needs_review), dict(failed))
        assert not chaos.crashes, chaos.crashes
        assert len(chaos.kills) >= MIN_KILLS
        assert all(not found for found in leaks.values()), leaks
        # and they were in use: the webhook got its key, the page its header, the daemon its token
        hooks = [r for r in sink.requests if r.path.startswith("/hooks")]
        assert all(r.path == f"/hooks?key={WEBHOOK_KEY}" for r in hooks), {r.path for r in hooks}
        pages = [r for r in sink.requests if r.path == "/page"]
        assert pages, "no page was sent"
        assert all(r.header("Authorization") == f"Token {PAGE_TOKEN}" for r in pages)
        assert report.figures["inbox_rows"] >= REPLICAS * ALERTS  # each replica took each alert
        assert not summary["levels"].get("error"), summary
        assert not summary["levels"].get("critical"), summary
        assert not [name for name, text in logs.items() if "Traceback" in text], summary
        assert summary["not_json"] == 0, summary  # no line cut by a kill, none glued to the next
        for replica in replicas:
            assert replica.stop() == 0, f"{replica.name} did not stop cleanly: {replica.log_tail()}"
