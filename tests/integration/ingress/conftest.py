"""The ingress served by uvicorn on a real socket, over a journal of each backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.server import IngressServer, bind
from kurative.ingress.settings import Credentials, IngressSettings
from kurative.journal import IncomingAlert, Journal
from tests.integration.journal.conftest import journal, journal_url  # noqa: F401
from tests.support.postgres import postgres_server  # noqa: F401


@dataclass
class Ingress:
    url: str
    journal: Journal
    committed: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


StartIngress = Callable[..., contextlib.AbstractAsyncContextManager[Ingress]]


@pytest.fixture
def start_ingress(journal: Journal) -> StartIngress:  # noqa: F811
    @contextlib.asynccontextmanager
    async def start(
        credentials: Credentials | None = None,
        commit: Callable[[Sequence[IncomingAlert]], object] | None = None,
        **settings: object,
    ) -> AsyncIterator[Ingress]:
        config = IngressSettings(port=0, credentials=credentials or Credentials(), **settings)  # type: ignore[arg-type]
        config.check()
        sock = bind(config)
        ingress = Ingress("", journal)

        async def readiness() -> list[str]:
            return list(ingress.not_ready)

        hooks = IngressHooks(
            commit=commit or journal.commit_alerts,  # type: ignore[arg-type]
            readiness=readiness,
            committed=lambda ids, notification: ingress.committed.extend(ids),
        )
        server = IngressServer(create_app(config, hooks), config, sock)
        ingress.url = server.url
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        try:
            yield ingress
        finally:
            server.stop()
            await task

    return start
