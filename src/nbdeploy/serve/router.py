"""The stable endpoint of one deployment: a small ASGI reverse proxy in front of its version servers.

Run as ``python -m nbdeploy.serve.router NAME --port P`` (``endpoint.ensure_router`` does it).
It reads the routing table from the registry (re-checked through ``PRAGMA data_version`` every
200 ms, so an unchanged registry costs one pragma), forwards each request to the version the
table picks, mirrors prediction requests to the shadow version after answering, appends every
answer to the deployment's prediction log and takes ground truth on ``POST /feedback``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import random
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from nbdeploy import config
from nbdeploy.monitor.feedback import FeedbackError, FeedbackStore
from nbdeploy.monitor.predlog import PredictionLog, PredictionLogError
from nbdeploy.serve.traffic import RoutingTable, SplitError, check_key, table_from_rows
from nbdeploy.serve.upstream import DEFAULT_CLIENT, UPSTREAMS, Headers, RawUpstream, UpstreamError

log = logging.getLogger("nbdeploy.router")

PREDICTION_ROUTES = {"/predict": "predict", "/predict_proba": "predict_proba"}
ROUTER_PATHS = ("/livez", "/readyz", "/feedback", "/_nbdeploy/routes", "/_nbdeploy/reload")
DROP_HEADERS = {
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
    b"upgrade", b"content-length", b"host", b"x-request-id", b"x-nbdeploy-version", b"date", b"server",
}
MAX_BODY = 64 * 1024 * 1024
MAX_SHADOW_INFLIGHT = 128
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
JSON = [(b"content-type", b"application/json")]


class BadRequest(Exception):
    """A request the router refuses itself (status, message, field)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field


def _rows(body: bytes) -> list[dict]:
    """The ``rows`` of a prediction request body, or [] when it has none usable."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    rows = data.get("rows") if isinstance(data, dict) else None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else []


def _error_text(data: bytes) -> str:
    """The error message of a failed answer (its JSON ``error`` field, else its start)."""
    with contextlib.suppress(ValueError):
        parsed = json.loads(data)
        if isinstance(parsed, dict) and parsed.get("error"):
            return str(parsed["error"])[:1000]
    return data[:1000].decode(errors="replace")


class Router:
    """The ASGI app: routing table, upstream pool, prediction log, feedback store."""

    def __init__(
        self, name: str, *, registry_path: Path | str | None = None, refresh_s: float = 0.2,
        client: str = DEFAULT_CLIENT,
    ) -> None:
        self.name = name
        self.registry_path = Path(registry_path or config.registry_path())
        self.refresh_s = refresh_s
        self.upstream: RawUpstream = UPSTREAMS[client]()
        self.table = RoutingTable(name)
        self.loaded_at = 0.0
        self.predlog = PredictionLog.for_deployment(name)
        self.feedback = FeedbackStore(self.predlog.directory)
        self.stats = dict.fromkeys(
            ("requests", "retries", "down", "shadow_sent", "shadow_answered", "shadow_failed",
             "shadow_skipped", "reloads", "log_errors"), 0)
        self._conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._shadow_tasks: set[asyncio.Task] = set()
        self._watcher: asyncio.Task | None = None

    # -- routing table -----------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.registry_path, timeout=2.0, isolation_level=None,
                                         check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
        return self._conn

    def reload(self, force: bool = False) -> bool:
        """Re-read the table if the registry changed (or ``force``); True if the routes changed."""
        conn = self._connection()
        (data_version,) = conn.execute("PRAGMA data_version").fetchone()
        if not force and data_version == self._data_version:
            return False
        dep = conn.execute(
            "SELECT serving_version, split_json, shadow_version, settings_json FROM deployments "
            "WHERE name = ?",
            (self.name,),
        ).fetchone()
        self._apply_settings(dep["settings_json"] if dep else None)
        rows = conn.execute(
            "SELECT version, pid, host, port, tls FROM versions WHERE name = ? AND pid IS NOT NULL",
            (self.name,),
        ).fetchall()
        self._data_version = data_version
        self.loaded_at = time.time()
        new = table_from_rows(self.name, dict(dep) if dep else None, [dict(r) for r in rows])
        if new.same_routes(self.table) and self.table.generation:
            return False
        self.table = dataclasses.replace(new, generation=self.table.generation + 1)
        self.stats["reloads"] += 1
        log.info("routes of %s, generation %d: %s", self.name, self.table.generation, self.table.to_dict())
        return True

    def _apply_settings(self, settings_json: str | None) -> None:
        """Columns marked sensitive at deploy time are hashed or dropped before logging."""
        sensitive = (json.loads(settings_json or "{}") or {}).get("sensitive") or {}
        if sensitive != self.predlog.sensitive:
            self.predlog = PredictionLog.for_deployment(self.name, sensitive=sensitive or None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                self.reload()
            except sqlite3.Error as exc:  # keep routing with the last table
                log.warning("cannot read the registry %s: %s", self.registry_path, exc)

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.upstream.start()
                    self.reload(force=True)
                    self._watcher = asyncio.create_task(self._watch())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher:
                    self._watcher.cancel()
                if self._shadow_tasks:
                    await asyncio.wait(list(self._shadow_tasks), timeout=2.0)
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request_id, key, fwd = None, None, []
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-nbdeploy-key":
                key = value.decode("latin-1")
            if name not in DROP_HEADERS:
                fwd.append((name, value))
        self.stats["requests"] += 1
        try:
            if request_id is None:
                request_id = str(uuid.uuid4())
            elif not REQUEST_ID_RE.match(request_id):
                request_id = str(uuid.uuid4())
                raise BadRequest(400, "X-Request-Id must be 1-128 letters, digits or . _ : -",
                                 "X-Request-Id")
            body = await self._body(receive)
            path, method = scope["path"], scope["method"]
            if path in ROUTER_PATHS:
                status, payload = await self._own(path, method, body)
                await self._send(send, status, JSON, json.dumps(payload).encode(), request_id,
                                 self.table.serving)
                return
            query = scope.get("query_string") or b""
            if key is None and query:
                key = (parse_qs(query.decode("latin-1")).get("key") or [None])[0]
            try:
                key = check_key(key)
            except SplitError as exc:
                raise BadRequest(400, str(exc), "X-NBDeploy-Key") from None
            target = path + ("?" + query.decode("latin-1") if query else "")
            fwd.append((b"x-request-id", request_id.encode("latin-1")))
            await self._proxy(send, method, path, target, fwd, body, key, request_id, started)
        except BadRequest as exc:
            payload = {"error": str(exc), **({"field": exc.field} if exc.field else {})}
            await self._send(send, exc.status, JSON, json.dumps(payload).encode(),
                             request_id or str(uuid.uuid4()), self.table.serving)
        except Exception as exc:  # a router bug must still answer JSON, and be in the log
            log.exception("request %s failed in the router", request_id)
            payload = {"error": f"the router of {self.name} failed: {type(exc).__name__}: {exc}; "
                       f"see its log {config.logs_dir() / (self.name + '-router.log')}"}
            with contextlib.suppress(Exception):
                await self._send(send, 502, JSON, json.dumps(payload).encode(),
                                 request_id or str(uuid.uuid4()), self.table.serving)

    async def _body(self, receive: Any) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise BadRequest(413, f"the request body is over {MAX_BODY // 2**20} MB; send fewer rows "
                                 "per request", "body")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _send(send: Any, status: int, headers: Headers, body: bytes, request_id: str,
                    version: int | None) -> None:
        out = [*headers, (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode("latin-1")),
               (b"x-nbdeploy-version", b"none" if version is None else str(version).encode())]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    # -- forwarding ------------------------------------------------------------------------
    def _down(self, version: int | None) -> tuple[int, Headers, bytes]:
        self.stats["down"] += 1
        if version is None:
            msg = (f"{self.name} has no serving version; deploy one with nbdeploy.deploy(model, "
                   f"{self.name!r}, sample) or run `nbdeploy rollback {self.name}`")
        else:
            ref = self.name if version == self.table.serving else f"{self.name}:{version}"
            msg = f"{self.name} v{version} is down; run `nbdeploy serve {ref}`"
        return 503, JSON, json.dumps({"error": msg, "version": version}).encode()

    def _pick(self, method: str, key: str | None, point: float) -> int | None:
        if method in ("GET", "HEAD") and self.table.serving is not None:
            return self.table.serving
        return self.table.choose(key, point)

    async def _call(self, method: str, target: str, headers: Headers, body: bytes,
                    key: str | None, point: float) -> tuple[int | None, int, Headers, bytes]:
        """Send to the chosen version; on a connect error re-read the table and try once more."""
        for attempt in (0, 1):
            version = self._pick(method, key, point)
            url = self.table.url(version)
            if url is not None:
                try:
                    status, rh, data = await self.upstream.request(method, url + target, headers, body)
                    return version, status, rh, data
                except UpstreamError as exc:
                    if exc.kind == "timeout":
                        msg = f"{self.name} v{version} did not answer in time ({exc})"
                        return version, 504, JSON, json.dumps({"error": msg, "version": version}).encode()
                    if attempt:
                        break
            if attempt == 0:
                self.stats["retries"] += 1
                with contextlib.suppress(sqlite3.Error):
                    self.reload(force=True)
        return (version, *self._down(version))

    async def _proxy(self, send: Any, method: str, path: str, target: str, headers: Headers,
                     body: bytes, key: str | None, request_id: str, started: float) -> None:
        point = random.random()
        version, status, rh, data = await self._call(method, target, headers, body, key, point)
        out = [(k.lower(), v) for k, v in rh if k.lower() not in DROP_HEADERS]
        endpoint = PREDICTION_ROUTES.get(path) if method == "POST" else None
        rows = _rows(body) if endpoint else []
        if endpoint and version is not None:
            latency = (time.perf_counter() - started) * 1000
            self._log(request_id, version, endpoint, rows, status, data, latency, shadow=False)
        await self._send(send, status, out, data, request_id, version)
        shadow = self.table.shadow_for(version) if endpoint and status < 500 else None
        if shadow is not None:
            if len(self._shadow_tasks) >= MAX_SHADOW_INFLIGHT:
                self.stats["shadow_skipped"] += 1
                return
            mirror = self._mirror(shadow, target, headers, body, request_id, endpoint, rows)
            task = asyncio.create_task(mirror)
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _mirror(self, version: int, target: str, headers: Headers, body: bytes,
                      request_id: str, endpoint: str, rows: list[dict]) -> None:
        """Send a copy to the shadow version and log its answer; failures are only counted."""
        self.stats["shadow_sent"] += 1
        url = self.table.url(version)
        started = time.perf_counter()
        try:
            if url is None:
                raise UpstreamError("connect", f"v{version} is not running")
            status, _, data = await self.upstream.request("POST", url + target, headers, body)
        except Exception as exc:  # a shadow must never disturb anything
            self.stats["shadow_failed"] += 1
            log.debug("shadow v%s failed: %s", version, exc)
            return
        self.stats["shadow_answered"] += 1
        latency = (time.perf_counter() - started) * 1000
        self._log(request_id, version, endpoint, rows, status, data, latency, shadow=True)

    def _log(self, request_id: str, version: int, endpoint: str, rows: list[dict], status: int,
             data: bytes, latency_ms: float, *, shadow: bool) -> None:
        """Append one answer to the prediction log; a failing log never fails the request."""
        outputs: list[Any] = []
        error = None
        if status < 400:
            try:
                parsed = json.loads(data)
                outputs = parsed if isinstance(parsed, list) else [parsed]
            except ValueError:
                error = "the model server answered with invalid JSON"
        else:
            error = _error_text(data)
        record = {"request_id": request_id, "ts": time.time(), "version": version, "inputs": rows,
                  "outputs": outputs, "latency_ms": round(latency_ms, 3), "status": status,
                  "error": error, "shadow": shadow, "endpoint": endpoint}
        try:
            self.predlog.append(record)
        except PredictionLogError as exc:  # raised once per run of failures; later ones are counted
            log.warning("%s", exc)
        except (ValueError, TypeError) as exc:
            self.stats["log_errors"] += 1
            log.warning("prediction record of %s not logged: %s", request_id, exc)

    # -- the router's own endpoints ------------------------------------------------------
    async def _own(self, path: str, method: str, body: bytes) -> tuple[int, dict]:
        allowed = "POST" if path in ("/feedback", "/_nbdeploy/reload") else "GET"
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise BadRequest(405, f"{path} takes {allowed}, not {method}", "method")
        if path == "/livez":
            return 200, {"status": "alive", "name": self.name}
        if path == "/readyz":
            return await self._ready()
        if path == "/feedback":
            return await self._feedback(body)
        if path == "/_nbdeploy/reload":
            self.reload(force=True)
        return 200, self.describe()

    def describe(self) -> dict[str, Any]:
        """The table in use, with counters: what ``/_nbdeploy/routes`` answers."""
        return {**self.table.to_dict(), "pid": os.getpid(), "loaded_at": self.loaded_at,
                "stats": {**self.stats, "shadow_inflight": len(self._shadow_tasks)},
                "log": self.predlog.stats()}

    async def _ready(self) -> tuple[int, dict]:
        version = self.table.serving if self.table.serving is not None else self.table.choose(None)
        url = self.table.url(version)
        if url is not None:
            with contextlib.suppress(UpstreamError):
                status, _, _ = await self.upstream.request("GET", url + "/readyz", [], b"")
                if status == 200:
                    return 200, {"status": "ready", "version": version}
        status, _, data = self._down(version)
        return status, json.loads(data)

    async def _feedback(self, body: bytes) -> tuple[int, dict]:
        example = '{"request_id": "<X-Request-Id of the answer>", "truth": 1, "row": 0}'
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequest(400, f"the body must be JSON like {example}", "body") from None
        if not isinstance(data, dict):
            raise BadRequest(400, f"the body must be a JSON object like {example}", "body")
        for field in ("request_id", "truth"):
            if field not in data:
                raise BadRequest(400, f"missing field '{field}'; send {example}", field)
        rid, truth, row = data["request_id"], data["truth"], data.get("row", 0)
        if not isinstance(rid, str) or not rid:
            raise BadRequest(400, "request_id must be the X-Request-Id string of an answer", "request_id")
        if truth is None or isinstance(truth, (dict, list)):
            raise BadRequest(400, "truth must be a label or a number", "truth")
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise BadRequest(400, f"row must be a whole number >= 0, got {row!r}", "row")
        try:
            await asyncio.to_thread(self.feedback.add, rid, truth, row=row, predlog=self.predlog)
        except FeedbackError as exc:
            known = bool(self.predlog.row_counts([rid]))
            raise BadRequest(404, str(exc), "row" if known else "request_id") from None
        except OSError as exc:
            raise BadRequest(503, f"cannot store feedback in {self.feedback.path}: {exc}") from None
        return 200, {"ok": True, "request_id": rid, "row": row}


def _best(module: str, fallback: str) -> str:
    return module if importlib.util.find_spec(module) else fallback


def main(argv: list[str] | None = None) -> None:
    """``python -m nbdeploy.serve.router NAME --port P``: serve one deployment's stable endpoint."""
    parser = argparse.ArgumentParser(prog="python -m nbdeploy.serve.router", description=__doc__)
    parser.add_argument("name", help="deployment name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=config.DEFAULT_HOST)
    parser.add_argument("--refresh", type=float, default=0.2, help="seconds between registry checks")
    parser.add_argument("--client", choices=sorted(UPSTREAMS), default=DEFAULT_CLIENT,
                        help="HTTP client used to forward (raw: httptools on asyncio)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    app = Router(args.name, refresh_s=args.refresh, client=args.client)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, loop=_best("uvloop", "asyncio"),
        http=_best("httptools", "h11"), access_log=False, log_level="warning", lifespan="on",
        timeout_keep_alive=65, backlog=2048, server_header=False, date_header=False,
    ))
    log.info("router for %s on http://%s:%d (pid %d)", args.name, args.host, args.port, os.getpid())
    server.run()


if __name__ == "__main__":
    main()
