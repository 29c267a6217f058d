"""Answers other than 200 as RFC 9457 problem documents, the same for the webhooks and the REST API."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response


class Problem(Exception):
    """An answer other than 200, as an RFC 9457 problem document."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}

    def response(self, instance: str) -> Response:
        body = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        return JSONResponse(
            {**body, "instance": instance},
            status_code=self.status,
            headers=self.headers,
            media_type="application/problem+json",
        )
