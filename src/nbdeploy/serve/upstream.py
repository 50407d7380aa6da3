"""Clients the router forwards with: one keep-alive pool per router process.

aiohttp is the default; ``HttpxUpstream`` does the same with ``httpx.AsyncClient`` so the
benchmark can compare both in one run (``python -m nbdeploy.serve.router NAME --client httpx``).
"""

from __future__ import annotations

import asyncio
from typing import Any

Headers = list[tuple[bytes, bytes]]

class UpstreamError(Exception):
    """A version server could not be reached: ``kind`` is connect, disconnect or timeout."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class AiohttpUpstream:
    """One keep-alive aiohttp session shared by every request."""

    def __init__(self, connections: int = 128, read_timeout: float = 120.0) -> None:
        self.connections, self.read_timeout = connections, read_timeout
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        self.errors = aiohttp
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=self.read_timeout),
            auto_decompress=False, skip_auto_headers=("User-Agent",),
        )

    async def request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
                      ) -> tuple[int, Headers, bytes]:
        """(status, raw headers, body) of one upstream call."""
        aiohttp = self.errors
        try:
            async with self.session.request(method, url, data=body or None, headers=headers,
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
        if self.session is not None:
            await self.session.close()


class HttpxUpstream(AiohttpUpstream):
    """The same with one ``httpx.AsyncClient`` (``--client httpx``; kept to compare in bench/)."""

    async def start(self) -> None:
        import httpx

        self.errors = httpx
        self.session = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections),
            timeout=httpx.Timeout(self.read_timeout, connect=2.0), follow_redirects=False,
        )

    async def request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
                      ) -> tuple[int, Headers, bytes]:
        """(status, raw headers, body) of one upstream call."""
        httpx = self.errors
        try:
            resp = await self.session.request(method, url, content=body or None, headers=headers)
            return resp.status_code, list(resp.headers.raw), resp.content
        except httpx.ConnectError as exc:
            raise UpstreamError("connect", str(exc)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise UpstreamError("disconnect", str(exc)) from None
        except httpx.TimeoutException as exc:
            raise UpstreamError("timeout", f"no answer within {self.read_timeout:.0f} s") from exc

    async def close(self) -> None:
        """Close the pool."""
        if self.session is not None:
            await self.session.aclose()


UPSTREAMS = {"aiohttp": AiohttpUpstream, "httpx": HttpxUpstream}

