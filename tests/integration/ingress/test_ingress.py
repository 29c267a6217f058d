"""The alert webhooks over real HTTP: 200 only after the commit, clear 4xx for bad input, 503 to retry."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from kurative.errors import ConfigError, JournalUnavailable
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import IncomingAlert
from tests.integration.ingress.conftest import StartIngress
from tests.support.debian import require_debian_tool

pytestmark = pytest.mark.timeout(120)

JSON = {"content-type": "application/json"}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "alerts"


def webhook(count: int = 1, *, status: str = "firing") -> dict[str, Any]:
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": f"web-{i}"},
            "annotations": {"summary": "Pod is crash looping."},
            "startsAt": "2026-12-01T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "",
        }
        for i in range(count)
    ]
    for alert in alerts:
        del alert["fingerprint"]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "kurative",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


async def test_an_alertmanager_webhook_is_committed_before_the_200(start_ingress: StartIngress) -> None:
    body = (EXAMPLES / "crashlooping.json").read_bytes()
    async with start_ingress() as ingress, ingress.client() as client:
        answer = await client.post("/api/v1/alerts", content=body, headers=JSON)
        assert answer.status_code == 200, answer.text
        expected = len(json.loads(body)["alerts"])
        assert answer.json() == {"received": expected}
        assert len(ingress.committed) == expected
        stored = await ingress.journal.get_alert(ingress.committed[0])
        assert stored.source == "alertmanager"
        assert stored.labels["alertname"] == "KubePodCrashLooping"


async def test_the_prometheus_list_goes_to_v2_and_each_endpoint_wants_its_own_shape(
    start_ingress: StartIngress,
) -> None:
    listing = json.loads((EXAMPLES / "prometheus-v2.json").read_text())
    async with start_ingress() as ingress, ingress.client() as client:
        answer = await client.post("/api/v2/alerts", json=listing)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": len(listing)}
        stored = await ingress.journal.get_alert(ingress.committed[0])
        assert stored.source == "prometheus"
        committed = len(ingress.committed)
        wrong_v1 = await client.post("/api/v1/alerts", json=listing)
        wrong_v2 = await client.post("/api/v2/alerts", json=webhook())
        for answer in (wrong_v1, wrong_v2):
            assert answer.status_code == 400
            assert answer.headers["content-type"] == "application/problem+json"
        assert "Alertmanager webhook" in wrong_v1.json()["detail"]
        assert "list of alerts" in wrong_v2.json()["detail"]
        assert len(ingress.committed) == committed


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": "4", "alerts": "\xff\xfe"}', "not valid JSON"),
        (json.dumps({**webhook(), "alerts": [{"labels": {"alertname": 3}}]}).encode(), "alerts[0]"),
        (json.dumps({**webhook(), "status": "burning"}).encode(), "status"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
        (b"", "not valid JSON"),
        (b"null", "payload"),
    ],
    ids=["not-json", "invalid-utf8", "label-not-string", "bad-status", "deep", "empty", "null"],
)
async def test_bad_payloads_get_a_400_naming_the_problem_and_write_nothing(
    start_ingress: StartIngress, body: bytes, detail: str
) -> None:
    async with start_ingress() as ingress, ingress.client() as client:
        answer = await client.post("/api/v1/alerts", content=body, headers=JSON)
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert problem["status"] == 400
        assert problem["title"] == "Bad Request"
        assert detail in problem["detail"]
        assert ingress.committed == []
        assert (await client.get("/healthz")).status_code == 200


async def test_a_body_over_the_limit_is_413_declared_or_streamed(start_ingress: StartIngress) -> None:
    big = json.dumps(webhook(200)).encode()
    async with start_ingress(max_body_bytes=10_000) as ingress, ingress.client() as client:
        declared = await client.post("/api/v1/alerts", content=big, headers=JSON)

        async def chunks():  # type: ignore[no-untyped-def]
            for start in range(0, len(big), 4096):
                yield big[start : start + 4096]

        streamed = await client.post("/api/v1/alerts", content=chunks(), headers=JSON)
        for answer in (declared, streamed):
            assert answer.status_code == 413
            assert "10000 bytes" in answer.json()["detail"]
        assert ingress.committed == []
        small = await client.post("/api/v1/alerts", json=webhook(1))
        assert small.status_code == 200


async def test_credentials_are_required_when_configured(start_ingress: StartIngress) -> None:
    credentials = Credentials(bearer_tokens=("s3cret-token",), basic=(("alertmanager", "pa55"),))
    basic = base64.b64encode(b"alertmanager:pa55").decode()
    wrong_basic = base64.b64encode(b"alertmanager:nope").decode()
    async with start_ingress(credentials) as ingress, ingress.client() as client:
        for headers in (
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": "Bearer"},
            {"authorization": f"Basic {wrong_basic}"},
            {"authorization": "Basic !!!not-base64"},
            {"authorization": "Digest whatever"},
        ):
            answer = await client.post("/api/v1/alerts", json=webhook(), headers=headers)
            assert answer.status_code == 401, headers
            assert "Bearer" in answer.headers["www-authenticate"]
            assert "s3cret-token" not in answer.text
        assert ingress.committed == []
        for headers in ({"authorization": "Bearer s3cret-token"}, {"authorization": f"Basic {basic}"}):
            answer = await client.post("/api/v1/alerts", json=webhook(), headers=headers)
            assert answer.status_code == 200
        # health stays open for probes
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


def test_without_credentials_only_loopback_is_allowed() -> None:
    IngressSettings(host="127.0.0.1").check()
    IngressSettings(host="::1").check()
    with pytest.raises(ConfigError, match="without credentials"):
        IngressSettings(host="0.0.0.0").check()
    IngressSettings(host="0.0.0.0", credentials=Credentials(bearer_tokens=("t",))).check()


async def test_journal_unavailable_is_503_with_retry_after(start_ingress: StartIngress) -> None:
    async def failing(records: Sequence[IncomingAlert]) -> tuple[str, ...]:
        raise JournalUnavailable("the journal at sqlite:///x cannot be reached")

    async with start_ingress(commit=failing, retry_after=7) as ingress, ingress.client() as client:
        answer = await client.post("/api/v1/alerts", json=webhook())
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "7"
        assert ingress.committed == []


async def test_readiness_reports_its_reasons(start_ingress: StartIngress) -> None:
    async with start_ingress() as ingress, ingress.client() as client:
        ingress.not_ready.append("shutting down")
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["reasons"] == ["shutting down"]
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/api/v1/alerts")).status_code == 405


async def test_a_group_of_2000_alerts_commits_in_one_post(start_ingress: StartIngress) -> None:
    body = json.dumps(webhook(2000)).encode()
    assert len(body) > 400_000
    async with start_ingress() as ingress, ingress.client() as client:
        answer = await client.post("/api/v1/alerts", content=body, headers=JSON)
        assert answer.status_code == 200
        assert answer.json() == {"received": 2000}
        assert len(set(ingress.committed)) == 2000


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_serves_https_only(start_ingress: StartIngress, tmp_path: Path) -> None:
    require_debian_tool(lambda: shutil.which("openssl"), "openssl", "openssl (to make a test certificate)")
    cert, key = _self_signed(tmp_path)
    async with start_ingress(tls_cert_file=str(cert), tls_key_file=str(key)) as ingress:
        assert ingress.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=ingress.url, verify=trusted, timeout=30) as client:
            answer = await client.post("/api/v1/alerts", json=webhook())
            assert answer.status_code == 200
        plain = ingress.url.replace("https://", "http://")
        async with httpx.AsyncClient(base_url=plain, timeout=10) as client:
            with pytest.raises(httpx.HTTPError):
                await client.post("/api/v1/alerts", json=webhook())
        assert len(ingress.committed) == 1


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_tls_connections_that_never_handshake_are_closed_at_the_read_timeout(
    start_ingress: StartIngress, tmp_path: Path
) -> None:
    """Clients that connect to the TLS listener and never send a ClientHello are closed after
    readTimeout, not after the loop's 60 s handshake timeout; then the listener serves HTTPS."""
    require_debian_tool(lambda: shutil.which("openssl"), "openssl", "openssl (to make a test certificate)")
    cert, key = _self_signed(tmp_path)
    settings = {
        "tls_cert_file": str(cert),
        "tls_key_file": str(key),
        "read_timeout": 3.0,
        "max_connections": 16,
    }
    async with start_ingress(**settings) as ingress:
        host, port = ingress.url.removeprefix("https://").rsplit(":", 1)
        opened = [await asyncio.open_connection(host, int(port)) for _ in range(26)]
        try:
            closed = await asyncio.gather(*(_closed_within(reader, 40) for reader, _ in opened))
            assert all(closed)  # at readTimeout (3 s), well before 40 s
        finally:
            for _, writer in opened:
                writer.close()
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=ingress.url, verify=trusted, timeout=30) as client:
            for _ in range(5):
                answer = await client.post("/api/v1/alerts", json=webhook())
                assert answer.status_code == 200
        assert len(ingress.committed) == 5


async def test_a_header_that_never_ends_is_cut_off(start_ingress: StartIngress) -> None:
    credentials = Credentials(bearer_tokens=("t0ken-for-tests",))
    async with start_ingress(credentials) as ingress:
        host, port = ingress.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        try:
            for _ in range(64):  # 4 MiB offered, far past the 64 KiB limit
                writer.write(b"a" * 65536)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server closed the connection on us
        closed = False
        try:
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            closed = True
        except ConnectionError:
            closed = True  # reset: cut off just as well
        except TimeoutError:
            pass  # still buffering what it is sent: the failure this test is about
        writer.close()
        assert closed
        # the answer may be lost to the reset when the server closes with unread bytes in its buffer
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
        assert ingress.committed == []
        async with ingress.client(headers={"Authorization": "Bearer t0ken-for-tests"}) as client:
            assert (await client.post("/api/v1/alerts", json=webhook())).status_code == 200


async def test_a_head_just_over_the_limit_is_answered_431(start_ingress: StartIngress) -> None:
    async with start_ingress(max_header_bytes=4096) as ingress:
        host, port = ingress.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # then the server closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert ingress.committed == []
