"""The CLI's side of the REST API: ``--server URL --token-file F`` and one small client over httpx.

Errors come back as RFC 9457 problem documents; the client turns them into a :class:`KurativeError`
carrying the server's ``detail``, so the CLI prints what the server said (409: "execution … is
succeeded, not awaiting approval") and exits 1, as it does for the same refusal from the journal.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from kurative.errors import KurativeError, UsageError

SERVER_ENV = "KURATIVE_SERVER"
TOKEN_FILE_ENV = "KURATIVE_TOKEN_FILE"
TIMEOUT_SECONDS = 30.0
MAX_DETAIL_CHARS = 500


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server URL`` and ``--token-file F`` (defaults ``$KURATIVE_SERVER``, ``$KURATIVE_TOKEN_FILE``)."""
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get(SERVER_ENV),
        help=f"a running daemon, e.g. http://127.0.0.1:9095 (default: ${SERVER_ENV})",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        default=os.environ.get(TOKEN_FILE_ENV),
        help=f"file holding one of the daemon's bearer tokens (default: ${TOKEN_FILE_ENV})",
    )


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    if not token:
        raise UsageError(f"--token-file {path} is empty")
    return token


class ApiClient:
    """Calls the daemon's ``/api/v1``; every answer other than 2xx raises :class:`KurativeError`."""

    def __init__(self, server: str, token_file: str | None) -> None:
        if not server.startswith(("http://", "https://")):
            raise UsageError(f"--server must be an http:// or https:// URL, got {server!r}")
        token = _token(token_file)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._server = server.rstrip("/")
        self._http = httpx.Client(base_url=self._server, headers=headers, timeout=TIMEOUT_SECONDS)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def get(self, path: str, params: Any = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise KurativeError(f"cannot reach {self._server}: {exc or type(exc).__name__}") from None
        if answer.is_success:
            try:
                return answer.json()
            except ValueError:
                raise KurativeError(f"{method} {path}: the server did not answer JSON") from None
        try:
            problem = answer.json()
            detail = str(problem.get("detail") or problem.get("title"))
        except (ValueError, AttributeError):
            detail = answer.text
        raise KurativeError(f"{answer.status_code} {answer.reason_phrase}: {detail[:MAX_DETAIL_CHARS]}")
