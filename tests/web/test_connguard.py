"""Issue 12 items 5 and 6 on the HTTP listener: a per-address connection limit and a header deadline.

Real uvicorn listener of the node (``web.server.Server``) on loopback, raw sockets from chosen
loopback source addresses. Before the change uvicorn held any number of connections from one
address, and a client that sent its request headers one byte at a time (slowloris), or nothing at
all, kept its connection for ever (``timeout_keep_alive`` only runs between requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.config import default_config
from mailhouse.services import Services, build
from mailhouse.web import server as web_server

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[int]:
    cfg = default_config(tmp_path)
    cfg.verify_inbound = False
    cfg.forwarded_allow_ips = ["127.0.0.1"]  # a reverse proxy on this host
    svc: Services = await build(cfg)
    listener = await web_server.Server(svc).listen("http", "127.0.0.1", 0)
    port = listener.server.servers[0].sockets[0].getsockname()[1]
    yield port
    listener.close()
    await asyncio.wait_for(listener.task, 15)
    await svc.outbound.pool.close()
    await svc.store.close()


async def _connect(port: int, source: str) -> Stream:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _get(c: Stream) -> bytes:
    c[1].write(b"GET /login HTTP/1.1\r\nHost: mail.example.org\r\n\r\n")
    return await asyncio.wait_for(c[0].readline(), 20)


async def test_http_per_address_limit(http: int) -> None:
    conns: list[Stream] = []
    try:
        for _ in range(64):  # HTTP_PER_IP
            conns.append(await _connect(http, "127.0.0.5"))
        over = await _connect(http, "127.0.0.5")
        conns.append(over)
        head = await asyncio.wait_for(over[0].read(), 20)  # answered and closed
        assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), head
        assert b"\r\nConnection: close\r\n" in head
        assert (await _get(conns[0])).startswith(b"HTTP/1.1 200"), "an admitted client is served"
        other = await _connect(http, "127.0.0.6")  # another address is served
        conns.append(other)
        assert (await _get(other)).startswith(b"HTTP/1.1 200")
        # a reverse proxy of [web] forwarded_allow_ips is not limited per address
        for _ in range(70):
            conns.append(await _connect(http, "127.0.0.1"))
        assert (await _get(conns[-1])).startswith(b"HTTP/1.1 200")
    finally:
        for _, w in conns:
            w.close()


async def _drip(w: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for i in range(len(data)):
        if w.is_closing():
            return
        w.write(data[i : i + 1])
        try:
            await w.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def _closed_after(r: asyncio.StreamReader, start: float, limit: float) -> tuple[float, bytes]:
    got = b""
    async with asyncio.timeout(limit):
        while chunk := await r.read(4096):
            got += chunk
    return time.monotonic() - start, got


async def test_slowloris_headers_are_cut_at_the_header_deadline(http: int) -> None:
    start = time.monotonic()
    slow = await _connect(http, "127.0.0.7")
    idle = await _connect(http, "127.0.0.7")  # connects and says nothing at all
    headers = b"GET /login HTTP/1.1\r\nHost: mail.example.org\r\n" + b"X-Pad: " + b"a" * 200
    drip = asyncio.create_task(_drip(slow[1], headers, 0.3))  # 70 s of headers, a byte every 0.3 s
    try:
        took, got = await _closed_after(slow[0], start, 25.0)
        assert 8.0 <= took <= 18.0, took  # HEADER_TIMEOUT = 10 s, though bytes keep coming
        assert got.startswith(b"HTTP/1.1 408 ") or got == b"", got
        took_idle, _ = await _closed_after(idle[0], start, 25.0)
        assert took_idle <= 18.0, took_idle
    finally:
        drip.cancel()
        slow[1].close()
        idle[1].close()


async def test_headers_in_time_then_keep_alive_still_served(http: int) -> None:
    """A normal client is not cut: two requests on one connection, 3 s apart."""
    c = await _connect(http, "127.0.0.8")
    try:
        assert (await _get(c)).startswith(b"HTTP/1.1 200")
        length = 0
        while (line := await c[0].readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await c[0].readexactly(length)
        await asyncio.sleep(3)
        assert (await _get(c)).startswith(b"HTTP/1.1 200")
    finally:
        c[1].close()
