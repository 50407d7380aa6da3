"""Clients the router forwards with: one keep-alive connection pool per router process.

``RawUpstream`` (the default when ``httptools`` is installed) speaks HTTP/1.1 on asyncio
protocols with httptools' parser: the version servers are local uvicorn processes, so a small
client is enough and costs far less CPU per request than a general one. ``AiohttpUpstream``
and ``HttpxUpstream`` do the same with those libraries (``--client aiohttp|httpx``), kept as a
fallback and so that bench/bench_router.py can compare them in one run.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ssl
from typing import Any
from urllib.parse import urlsplit

Headers = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """A version server could not be reached: ``kind`` is connect, disconnect or timeout."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import httptools

        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.parse_error = httptools.HttpParserError
        self.transport: Any = None
        self.waiter: asyncio.Future | None = None
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.head = self.reusable = self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(UpstreamError("disconnect", f"the server closed the connection ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.parse_error as exc:
            self.fail(UpstreamError("disconnect", f"the server answered invalid HTTP: {exc}"))
            self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head:  # a HEAD answer has no body, whatever content-length says
            self._done()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.head:
            self._done()

    def _done(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.reusable = not self.head and self.parser.should_keep_alive()
            waiter.set_result((self.parser.get_status_code(), self.headers, b"".join(self.body)))

    def fail(self, exc: Exception) -> None:
        """End the pending request with ``exc`` (no-op when none is pending)."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, data: bytes, head: bool) -> asyncio.Future:
        """Write one request; the future gives (status, headers, body)."""
        self.headers, self.body, self.head, self.reusable = [], [], head, False
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter


@functools.cache
def loopback_tls() -> ssl.SSLContext:
    """TLS for the router's hop to a version served with ``--tls-cert`` on this machine.

    The hop is encrypted; the certificate is not checked, because the router only ever
    connects to loopback (see ``traffic._loopback``) and a self-signed certificate made for
    the public name would not match 127.0.0.1. Clients check the certificate themselves."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RawUpstream:
    """Pooled HTTP/1.1 client for the local version servers."""

    def __init__(self, connections: int = 128, read_timeout: float = 120.0,
                 connect_timeout: float = 2.0) -> None:
        self.connections, self.read_timeout, self.connect_timeout = connections, read_timeout, connect_timeout
        self.idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind to the running loop."""
        self.loop = asyncio.get_running_loop()

    async def _connect(self, host: str, port: int, tls: bool = False) -> _Connection:
        assert self.loop is not None
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self.loop), host, port,
                                            ssl=loopback_tls() if tls else None),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise UpstreamError("connect", f"no connection to {host}:{port} within "
                                f"{self.connect_timeout:.0f} s") from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def _timeout(self, conn: _Connection) -> None:
        conn.fail(UpstreamError("timeout", f"no answer within {self.read_timeout:.0f} s"))

    async def request(self, method: str, url: str, headers: Headers, body: bytes
                      ) -> tuple[int, Headers, bytes]:
        """(status, raw headers, body) of one call; a stale pooled connection is retried once."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        data = b"".join([
            f"{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n".encode(),
            *(name + b": " + value + b"\r\n" for name, value in headers), b"\r\n", body,
        ])
        idle = self.idle.setdefault((host, port, tls), [])
        while True:
            conn, reused = None, False
            while idle and conn is None:
                candidate = idle.pop()
                if not candidate.closed:
                    conn, reused = candidate, True
            if conn is None:
                conn = await self._connect(host, port, tls)
            assert self.loop is not None
            timer = self.loop.call_later(self.read_timeout, self._timeout, conn)
            try:
                status, got, payload = await conn.send(data, method == "HEAD")
            except UpstreamError as exc:
                conn.transport.close()
                if reused and exc.kind == "disconnect":
                    continue  # the server closed an idle keep-alive connection: use a fresh one
                raise
            except BaseException:
                conn.transport.close()
                raise
            finally:
                timer.cancel()
            if conn.reusable and not conn.closed and len(idle) < self.connections:
                idle.append(conn)
            else:
                conn.transport.close()
            return status, got, payload

    async def close(self) -> None:
        """Close every pooled connection."""
        for conns in self.idle.values():
            for conn in conns:
                conn.transport.close()
        self.idle.clear()


def _text(headers: Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


class AiohttpUpstream(RawUpstream):
    """The same with one keep-alive ``aiohttp.ClientSession``."""

    async def start(self) -> None:
        import aiohttp

        self.errors: Any = aiohttp
        self.session: Any = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30,
                                           ssl=loopback_tls()),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                          sock_read=self.read_timeout),
            auto_decompress=False, skip_auto_headers=("User-Agent",),
        )

    async def request(self, method: str, url: str, headers: Headers, body: bytes
                      ) -> tuple[int, Headers, bytes]:
        """(status, raw headers, body) of one upstream call."""
        aiohttp = self.errors
        try:
            async with self.session.request(method, url, data=body or None, headers=_text(headers),
                                            allow_redirects=False) as resp:
                return resp.status, list(resp.raw_headers), await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError("connect", str(exc)) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise UpstreamError("disconnect", str(exc)) from None
        except asyncio.TimeoutError as exc:
            raise UpstreamError("timeout", f"no answer within {self.read_timeout:.0f} s") from exc

    async def close(self) -> None:
        """Close the pool."""
        await self.session.close()


class HttpxUpstream(AiohttpUpstream):
    """The same with one ``httpx.AsyncClient``."""

    async def start(self) -> None:
        import httpx

        self.errors = httpx
        self.session = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections),
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout), follow_redirects=False,
            verify=loopback_tls(),
        )

    async def request(self, method: str, url: str, headers: Headers, body: bytes
                      ) -> tuple[int, Headers, bytes]:
        """(status, raw headers, body) of one upstream call."""
        httpx = self.errors
        try:
            resp = await self.session.request(method, url, content=body or None, headers=_text(headers))
            return resp.status_code, list(resp.headers.raw), resp.content
        except httpx.ConnectError as exc:
            raise UpstreamError("connect", str(exc)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise UpstreamError("disconnect", str(exc)) from None
        except httpx.TimeoutException as exc:
            raise UpstreamError("timeout", f"no answer within {self.read_timeout:.0f} s") from exc

    async def close(self) -> None:
        """Close the pool."""
        await self.session.aclose()


UPSTREAMS = {"raw": RawUpstream, "aiohttp": AiohttpUpstream, "httpx": HttpxUpstream}
DEFAULT_CLIENT = "raw" if importlib.util.find_spec("httptools") else "aiohttp"
