"""What a step echoes back is scrubbed of the secrets it used, and of nothing else.

A secret URL's ordinary query values (``tenant=prod``, ``dedup=true``) were scrubbed everywhere,
mapping keys included, and ``prometheus.query``'s ``expect`` ran on that scrubbed result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from kurative.actions.base import ActionContext
from kurative.actions.registry import get_action
from kurative.actions.services import ResolvedSecrets
from kurative.adapters.secrets import EnvSecret, SecretSettings, SecretStore
from kurative.errors import ExpectationFailed

pytestmark = pytest.mark.timeout(30)

PROM_URL = "https://prom.example.com/api/v1?dedup=true&tenant=prod&key=Zq8xk2LmP0&format=json"
SERIES = [
    {"metric": {"__name__": "up", "env": "prod", "job": "api"}, "value": [1700000000, "1"]},
    {"metric": {"partial": "true", "prod": "yes"}, "value": [1700000000, "0"]},
]


def context(services: Mapping[str, Any] | None = None, **secrets: str) -> ActionContext:
    store = SecretStore(
        SecretSettings({name: EnvSecret(name.upper().replace("-", "_")) for name in secrets}),
        environ={name.upper().replace("-", "_"): value for name, value in secrets.items()},
    )
    return ActionContext("exec-1", "verify", services={"secrets": store, **(services or {})})


async def resolved(url: str) -> ResolvedSecrets:
    secrets = ResolvedSecrets(context(url=url))
    await secrets.text({"secretRef": "url"}, "url", url=True)
    return secrets


async def test_ordinary_query_values_of_a_secret_url_are_not_scrubbed() -> None:
    secrets = await resolved(PROM_URL)
    assert secrets.scrub(SERIES) == SERIES
    assert secrets.scrub("tenant prod, dedup true, format json") == "tenant prod, dedup true, format json"
    assert secrets.scrub({"prod": 1, "true": 2, "other": 3}) == {"prod": 1, "true": 2, "other": 3}
    long_label = await resolved("https://h.example.com/q?job=kube-state-metrics&key=Zq8xk2LmP0")
    assert long_label.scrub("job kube-state-metrics is down") == "job kube-state-metrics is down"


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        (PROM_URL, "Zq8xk2LmP0"),
        ("https://h.example.com/hook?tenant=prod&Token=abcd", "abcd"),
        ("https://h.example.com/hook?X-Amz-Signature=deadbeef&region=eu", "deadbeef"),
        ("https://h.example.com/hook?private_token=s3cr3tvalue&x=1", "s3cr3tvalue"),
        ("https://h.example.com/hook?id=AbCdEf0123456789xyz&x=1", "AbCdEf0123456789xyz"),  # long, random
        ("https://h.example.com/hook?sig=a%2Fb%2Bc%3Dd", "a/b+c=d"),
        # named in camelCase, or holding a credential word
        ("https://h.example.com/hook?accessKey=k3yV4lue99&x=1", "k3yV4lue99"),
        ("https://h.example.com/hook?secretKey=Zq8xk2LmP0", "Zq8xk2LmP0"),
        ("https://h.example.com/hook?apitoken=Zq8xk2LmP0", "Zq8xk2LmP0"),
        ("https://h.example.com/hook?authtoken=Zq8xk2LmP0", "Zq8xk2LmP0"),
        # long and token-like, whatever its name and letters
        ("https://h.example.com/hook?id=lowercaselettersonlytokenvalue", "lowercaselettersonlytokenvalue"),
        ("https://h.example.com/hook?pin=123456789012345678", "123456789012345678"),
    ],
)
async def test_a_credential_query_value_is_scrubbed_alone_and_as_written(url: str, hidden: str) -> None:
    secrets = await resolved(url)
    echoed = f"remote said: bad value {hidden!r} in {url.partition('?')[2]}"
    scrubbed = secrets.scrub(echoed)
    assert hidden not in scrubbed
    assert url.partition("?")[2] not in scrubbed
    assert "<secret url>" in scrubbed


async def test_mapping_keys_are_never_rewritten() -> None:
    secrets = await resolved(PROM_URL)
    assert secrets.scrub({"Zq8xk2LmP0": "Zq8xk2LmP0"}) == {"Zq8xk2LmP0": "<secret url>"}


@dataclass
class Found:
    result_type: str
    result: Any


class EchoingPrometheus:
    """Answers with series whose labels hold a query value of the secret URL, and its key."""

    async def query(self, query: str, **_: Any) -> Found:
        return Found("vector", [*SERIES, {"metric": {"leak": "Zq8xk2LmP0"}, "value": [1, "1"]}])


async def run_query(expect: str) -> Mapping[str, Any]:
    spec = get_action("prometheus.query")
    assert spec is not None
    ctx = context({"prometheus": EchoingPrometheus()}, **{"prom-url": PROM_URL})
    return await spec.run(ctx, {"query": "up", "url": {"secretRef": "prom-url"}, "expect": expect})


async def test_expect_holds_on_what_prometheus_answered_and_the_output_is_scrubbed() -> None:
    output = await run_query("[?metric.env=='prod']")
    assert output["ok"] is True
    assert output["result"][0]["metric"]["env"] == "prod"
    assert output["result"][2]["metric"]["leak"] == "<secret prom-url>"
    # on the unscrubbed result, even a label holding the credential matches; the output never shows it
    output = await run_query("[?metric.leak=='Zq8xk2LmP0']")
    assert output["ok"] is True
    assert "Zq8xk2LmP0" not in str(output)


async def test_a_failed_expect_never_shows_the_secret() -> None:
    with pytest.raises(ExpectationFailed) as caught:
        await run_query("[?metric.leak=='Zq8xk2LmP0'] | [0].metric.leak == 'other'")
    assert "Zq8xk2LmP0" not in str(caught.value)
    with pytest.raises(ExpectationFailed) as caught:
        await run_query("[?metric.leak=='Zq8xk2LmP0'] | [0].metric.nothing")
    assert "Zq8xk2LmP0" not in str(caught.value)
    assert caught.value.output is not None
    assert "Zq8xk2LmP0" not in str(caught.value.output)
