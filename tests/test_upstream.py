"""The router's raw HTTP/1.1 client against a real asyncio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from nbdeploy.serve import process
from nbdeploy.serve.upstream import RawUpstream, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def _serve(handler: Handler, check: Callable[[RawUpstream, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RawUpstream(read_timeout=0.5)
        await client.start()
        try:
            await check(client, f"http://127.0.0.1:{port}")
        finally:
            await client.close()
            server.close()

    asyncio.run(main())


def test_keep_alive_reuse_echo_and_headers() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            rid = next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"x-request-id"))
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n" + rid + b"\r\n"
                         + b"content-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        writer.close()

    async def check(client: RawUpstream, base: str) -> None:
        for i in range(5):
            status, headers, body = await client.request(
                "POST", f"{base}/predict?key=a", [(b"x-request-id", b"r%d" % i)], b'{"rows": [%d]}' % i)
            assert status == 201
            assert body == b'{"rows": [%d]}' % i
            assert (b"x-request-id", b"r%d" % i) in [(k.lower(), v) for k, v in headers]
        assert connections == 1  # one pooled connection served all five

    _serve(handler, check)


def test_chunked_body_is_reassembled_and_head_has_no_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head, _ = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def check(client: RawUpstream, base: str) -> None:
        assert (await client.request("GET", f"{base}/docs", [], b""))[2] == b"hello world"
        status, _, body = await client.request("HEAD", f"{base}/docs", [], b"")
        assert (status, body) == (200, b"")
        assert (await client.request("GET", f"{base}/docs", [], b""))[2] == b"hello world"

    _serve(handler, check)


def test_pooled_connection_dropped_by_the_server_is_retried_on_a_fresh_one() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        if first:  # keep-alive promised; the next request on it races the server's idle close
            await _read_request(reader)
        writer.close()

    async def check(client: RawUpstream, base: str) -> None:
        assert (await client.request("POST", f"{base}/p", [], b"{}"))[0] == 200
        assert (await client.request("POST", f"{base}/p", [], b"{}"))[0] == 200
        assert connections == 2

    _serve(handler, check)


def test_refused_dropped_and_slow_servers_raise_upstream_errors() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await _read_request(reader)
        if b"/drop" in head:
            writer.close()  # no answer at all
            return
        await asyncio.sleep(2)  # longer than the client's 0.5 s read timeout

    async def check(client: RawUpstream, base: str) -> None:
        with pytest.raises(UpstreamError) as dropped:
            await client.request("POST", f"{base}/drop", [], b"{}")
        assert dropped.value.kind == "disconnect"
        with pytest.raises(UpstreamError) as slow:
            await client.request("POST", f"{base}/slow", [], b"{}")
        assert slow.value.kind == "timeout"
        with pytest.raises(UpstreamError) as refused:
            await client.request("POST", f"http://127.0.0.1:{process.free_port()}/p", [], b"{}")
        assert refused.value.kind == "connect"

    _serve(handler, check)
