"""ASGI guard shipped inside every nbdeploy bento: refuses pickle payloads and, when
``NBDEPLOY_API_KEY`` is set in the server's environment, requests without that key.

BentoML's server unpickles ``application/vnd.bentoml+pickle`` bodies (meant for trusted
service-to-service calls); a public model endpoint must never do that, so any content type
naming pickle is answered 415 before it reaches BentoML."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

OPEN_PATHS = ("/readyz", "/livez", "/healthz", "/v2/health/live", "/v2/health/ready")


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """Pure ASGI middleware: pickle refusal and API-key check (health checks stay open)."""

    def __init__(self, app: Any, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key if api_key is not None else os.environ.get("NBDEPLOY_API_KEY") or None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if "pickle" in headers.get("content-type", "").lower():
            await _send_json(send, 415, {"error": "pickle payloads are refused by this endpoint; "
                                                  "send JSON (Content-Type: application/json)"})
            return
        if self.api_key and not scope.get("path", "").startswith(OPEN_PATHS):
            given = headers.get("x-api-key") or ""
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                await _send_json(send, 401, {"error": "missing or wrong API key: send it as "
                                                      "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"},
                                 [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
