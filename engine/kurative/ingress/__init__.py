"""The ingress: the HTTP face of the daemon (alert webhooks, health), as an ASGI app served by uvicorn."""
