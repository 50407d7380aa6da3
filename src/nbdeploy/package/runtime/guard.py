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

MAX_ERRORS = 20  # a 400 for 10 000 bad rows lists the first few, and says how many there were
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

    def __init__(self, app: Any, api_key: str | None = None,
                 extra_paths: dict[str, Any] | None = None) -> None:
        self.app = app
        self.api_key = api_key if api_key is not None else os.environ.get("NBDEPLOY_API_KEY") or None
        self.extra_paths = extra_paths or {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if "pickle" in ctype:
            await _send_json(send, 415, {"error": "pickle payloads are refused by this endpoint; "
                                                  "send JSON (Content-Type: application/json)"})
            return
        # A body without Content-Type is read as JSON (V2 clients such as tritonclient send none);
        # any other declared type is refused.
        if scope.get("method") == "POST" and ctype and ctype != "application/json":
            await _send_json(send, 415, {"error": f"unsupported Content-Type {ctype!r}: send "
                                                  "a JSON body with 'Content-Type: application/json'"})
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
        if scope.get("path") == "/docs.json":
            await self.app(scope, receive, _Buffered(send, 200, lambda doc: complete_openapi(
                doc, api_key=bool(self.api_key), extra_paths=self.extra_paths)))
            return
        await self.app(scope, receive, _Buffered(send, 400, rewrite_validation_error))


ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
EXTRA_ANSWERS = {
    "400": "Invalid input: the message names the field",
    "415": "The body is not JSON (or is a pickle)",
    "422": "The model could not predict on these rows",
}


def complete_openapi(doc: dict[str, Any], *, api_key: bool = False,
                     extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """Declare what this guard adds to BentoML's document: bodies are required JSON, and the
    400/415/422 (and 401 with an API key) answers exist; ``extra_paths`` (the V2 routes) join."""
    doc.setdefault("paths", {}).update(extra_paths or {})
    for item in (doc.get("paths") or {}).values():
        for method, op in item.items():
            if method.lower() != "post" or not isinstance(op, dict):
                continue
            if isinstance(op.get("requestBody"), dict):
                op["requestBody"]["required"] = True
            answers = op.setdefault("responses", {})
            extra = dict(EXTRA_ANSWERS)
            if api_key:
                extra["401"] = "Missing or wrong API key"
            for code, text in extra.items():
                answers.setdefault(code, {"description": text,
                                          "content": {"application/json": {"schema": ERROR_SCHEMA}}})
    return doc


def field_path(loc: list[Any]) -> str:
    """pydantic's loc ['rows', 0, 'age'] as 'rows[0].age'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def rewrite_validation_error(payload: dict[str, Any]) -> dict[str, Any]:
    """BentoML's '1 validation error for Input' + a detail list → a message naming the field."""
    details = payload.get("detail")
    if not isinstance(details, list) or not details:
        return payload
    errors = [{"field": field_path(list(d.get("loc", []))), "message": str(d.get("msg", ""))}
              for d in details[:MAX_ERRORS] if isinstance(d, dict)]
    if not errors:
        return payload
    first = errors[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return {
        "error": f"invalid input at {first['field']}: {first['message']}{more}",
        "detail": "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        "errors": errors,
    }


class _Buffered:
    """Wraps ``send``: a JSON answer with ``status`` is buffered and passed through ``rewrite``."""

    def __init__(self, send: Any, status: int, rewrite: Any) -> None:
        self.send = send
        self.status = status
        self.rewrite = rewrite
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message.get("status") == self.status:
            self.start = message
            return
        if self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(self.chunks)
        try:
            payload = json.loads(body)
            if isinstance(payload, dict):
                body = json.dumps(self.rewrite(payload)).encode()
        except ValueError:
            pass
        headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
