"""The connection runtime through real loopback sockets: flow control, stalled writers, idle
timeout, STARTTLS discarding pipelined plaintext (CVE-2011-0411), the SASL line limit, TLS
handshake timeouts, COMPRESS=DEFLATE with bounded inflate, session tracking and push mode."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mailhouse import tls as tls_mod
from mailhouse.proto import sasl
from mailhouse.runtime import Connection, Limits, WriteStalled, read_auth_line, start_listener

Session = Callable[[Connection], Awaitable[None]]
FAST = Limits(idle_timeout=5.0, write_stall_timeout=1.0, tls_handshake_timeout=1.0)


class Node:
    """A listener on a loopback port plus the session tasks it started."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)

    async def start(
        self, session: Session, limits: Limits = FAST, ssl_ctx: ssl.SSLContext | None = None
    ) -> Node:
        self.server = await start_listener(
            "127.0.0.1", 0, session, limits=lambda: limits, ssl_ctx=ssl_ctx, track=self.track
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def finished(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node()
    yield n
    if n.server is not None:
        n.server.close()
    for t in n.tasks:
        t.cancel()
    await asyncio.gather(*n.tasks, return_exceptions=True)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tls_mod.ensure_self_signed(Path(tmp_path_factory.mktemp("tls")), "localhost")
    return tls_mod.server_context(cert, key), tls_mod.client_context(verify=False)


async def test_session_is_tracked_and_sees_peer(node: Node) -> None:
    seen: list[tuple[str, bool, bytes]] = []

    async def session(conn: Connection) -> None:
        data = await conn.read()
        seen.append((conn.peer_ip, conn.tls, data))
        await conn.send(b"bye\r\n")
        await conn.close()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    w.write(b"hello\r\n")
    assert await r.read() == b"bye\r\n"
    w.close()
    await node.finished()
    assert len(node.tasks) == 1
    assert seen == [("127.0.0.1", False, b"hello\r\n")]


async def test_idle_timeout(node: Node) -> None:
    outcome: list[str] = []

    async def session(conn: Connection) -> None:
        try:
            await conn.read(timeout=0.3)
        except TimeoutError:
            outcome.append("timeout")
            await conn.send(b"421 timeout\r\n")
        await conn.close()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    t0 = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(r.read(), 5) == b"421 timeout\r\n"
    assert asyncio.get_running_loop().time() - t0 < 3
    w.close()
    await node.finished()
    assert outcome == ["timeout"]


async def test_cancelled_read_loses_no_input(node: Node) -> None:
    got: list[bytes] = []

    async def session(conn: Connection) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.read(), 0.2)  # cancelled while waiting
        got.append(await conn.read(timeout=5))
        await conn.close()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    await asyncio.sleep(0.4)
    w.write(b"after\r\n")
    await node.finished()
    assert got == [b"after\r\n"]
    w.close()


async def test_stalled_reader_bounded_then_dropped(node: Node) -> None:
    """A client that stops reading: output held by the server stays under the high-water mark
    plus one write, and the connection is aborted after the stalled-writer timeout."""
    chunk = b"x" * 65536
    limits = replace(FAST, write_high_water=64 * 1024, write_stall_timeout=0.5)
    peak = 0
    outcome: list[str] = []

    async def session(conn: Connection) -> None:
        nonlocal peak
        try:
            for _ in range(100_000):  # far more than any kernel buffers
                conn.write(chunk)
                peak = max(peak, conn.transport.get_write_buffer_size())
                await conn.drain()
        except WriteStalled:
            outcome.append("stalled")
        except ConnectionError:
            outcome.append("lost")

    await node.start(session, limits)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    await node.finished(timeout=20)
    assert outcome == ["stalled"]
    assert peak <= limits.write_high_water + len(chunk)
    w.close()


async def test_unread_input_pauses_reading(node: Node) -> None:
    """A client that sends while the session does not read fills at most max_buffered_input
    (plus one socket read) on the server; TCP pushes back on the client."""
    limits = replace(FAST, max_buffered_input=64 * 1024)
    holding: list[int] = []
    go = asyncio.Event()

    async def session(conn: Connection) -> None:
        await go.wait()
        holding.append(conn.buffered)
        total = 0
        while total < 4 * 1024 * 1024:
            data = await conn.read(timeout=5)
            if not data:
                break
            total += len(data)
        holding.append(total)
        await conn.close()

    await node.start(session, limits)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)

    async def flood() -> None:
        for _ in range(64):
            w.write(b"y" * 65536)
            await w.drain()

    sender = asyncio.ensure_future(flood())
    await asyncio.sleep(1.0)
    assert not sender.done()  # the server stopped reading, so the client blocks
    go.set()
    await asyncio.wait_for(sender, 10)
    await node.finished()
    assert holding[0] <= limits.max_buffered_input + 256 * 1024
    assert holding[1] == 4 * 1024 * 1024
    w.close()


async def test_starttls_discards_pipelined_plaintext(
    node: Node, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    result: dict[str, Any] = {}

    async def session(conn: Connection) -> None:
        first = await conn.read(timeout=5)
        assert first == b"STARTTLS\r\n"
        while conn.buffered < len(b"RCPT TO:<evil>\r\n"):  # the injected command arrived in plaintext
            await asyncio.sleep(0.01)
        result["discarded"] = await conn.start_tls(b"220 go ahead\r\n", server_ctx)
        result["tls"] = conn.tls
        result["info"] = conn.tls_info()
        result["after"] = await conn.read(timeout=5)
        await conn.send(b"250 ok\r\n")
        await conn.close()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    w.write(b"STARTTLS\r\n")
    await w.drain()
    await asyncio.sleep(0.1)
    w.write(b"RCPT TO:<evil>\r\n")  # CVE-2011-0411: pipelined before the handshake
    await w.drain()
    assert await r.readline() == b"220 go ahead\r\n"
    await w.start_tls(client_ctx, server_hostname="localhost")
    w.write(b"EHLO tls\r\n")
    assert await asyncio.wait_for(r.readline(), 5) == b"250 ok\r\n"
    w.close()
    await node.finished()
    assert result["discarded"] == len(b"RCPT TO:<evil>\r\n")
    assert result["tls"] is True
    assert result["info"] is not None and result["info"][0].startswith("TLS")
    assert result["after"] == b"EHLO tls\r\n"


async def test_starttls_handshake_timeout(
    node: Node, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _ = tls_pair
    outcome: list[str] = []

    async def session(conn: Connection) -> None:
        await conn.read(timeout=5)
        try:
            await conn.start_tls(b"220 go ahead\r\n", server_ctx, timeout=0.3)
        except (TimeoutError, ssl.SSLError, ConnectionError) as e:
            outcome.append(type(e).__name__)

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    w.write(b"STARTTLS\r\n")
    assert await r.readline() == b"220 go ahead\r\n"
    # never send a ClientHello: the server gives up and drops the connection
    assert await asyncio.wait_for(r.read(), 10) == b""
    await node.finished()
    assert len(outcome) == 1
    w.close()


async def test_implicit_tls_handshake_timeout(
    node: Node, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    opened: list[bool] = []

    async def session(conn: Connection) -> None:
        opened.append(conn.tls)
        await conn.send(b"* OK\r\n")
        await conn.close()

    await node.start(session, replace(FAST, tls_handshake_timeout=0.5), ssl_ctx=server_ctx)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)  # a mute client
    t0 = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(r.read(), 10) == b""
    assert asyncio.get_running_loop().time() - t0 < 5
    w.close()
    assert opened == []
    r, w = await asyncio.open_connection("127.0.0.1", node.port, ssl=client_ctx, server_hostname="localhost")
    assert await asyncio.wait_for(r.readline(), 5) == b"* OK\r\n"
    w.close()
    await node.finished()
    assert opened == [True]


def _line_poll(buf: bytearray) -> Callable[[], bytes | None]:
    def poll() -> bytes | None:
        i = buf.find(b"\r\n")
        if i < 0:
            return None
        line = bytes(buf[:i])
        del buf[: i + 2]
        if line == b"*":
            raise sasl.SaslCancelled()
        return line

    return poll


async def test_auth_line_loop_and_limit(node: Node) -> None:
    results: list[object] = []

    async def session(conn: Connection) -> None:
        buf = bytearray()

        async def more() -> bool:
            try:
                data = await conn.read(timeout=2)
            except TimeoutError:
                return False
            buf.extend(data)
            return bool(data)

        for _ in range(4):
            try:
                results.append(await read_auth_line(_line_poll(buf), more, max_octets=100))
            except (sasl.SaslError, ConnectionError) as e:
                results.append(type(e))
        await conn.close()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    w.write(b"dXNl")  # a line in pieces
    await w.drain()
    await asyncio.sleep(0.1)
    w.write(b"cg==\r\n" + b"A" * 200 + b"\r\n*\r\n")
    await w.drain()
    await node.finished()  # the fourth line never comes: idle timeout
    assert results == [b"dXNlcg==", sasl.SaslError, sasl.SaslCancelled, ConnectionError]
    w.close()


async def test_compress_bounded_inflate(node: Node) -> None:
    limits = replace(FAST, max_inflate=16 * 1024)
    sizes: list[int] = []
    got = bytearray()

    async def session(conn: Connection) -> None:
        first = await conn.read(timeout=5)
        cmd, _, rest = first.partition(b"\r\n")
        assert cmd == b"a COMPRESS DEFLATE"
        await conn.send(b"a OK\r\n")
        conn.start_compress(rest)
        assert conn.compressed
        while len(got) < 1024 * 1024:
            data = await conn.read(timeout=5)
            if not data:
                break
            sizes.append(len(data))
            got.extend(data)
        await conn.send(b"* BYE\r\n")
        await conn.close()

    await node.start(session, limits)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(b"\0" * (1024 * 1024)) + c.flush(zlib.Z_SYNC_FLUSH)  # ~1 KiB → 1 MiB
    w.write(b"a COMPRESS DEFLATE\r\n" + bomb[:10])  # compressed bytes pipelined with the command
    await w.drain()
    assert await r.readline() == b"a OK\r\n"
    w.write(bomb[10:])
    await w.drain()
    d = zlib.decompressobj(-15)
    out = b""
    while b"\r\n" not in out:
        raw = await asyncio.wait_for(r.read(4096), 5)
        assert raw
        out += d.decompress(raw)
    assert out == b"* BYE\r\n"
    w.close()
    await node.finished()
    assert bytes(got) == b"\0" * (1024 * 1024)
    assert max(sizes) <= limits.max_inflate


async def test_push_mode_handler(node: Node) -> None:
    events: list[object] = []
    done = asyncio.Event()

    class Handler:
        def __init__(self, conn: Connection) -> None:
            self.conn = conn

        def on_data(self, data: bytes) -> None:
            events.append(data)
            self.conn.writelines([b"+OK ", data])

        def on_eof(self) -> None:
            events.append("eof")
            self.conn.close_nowait()

        def on_lost(self, exc: Exception | None) -> None:
            events.append("lost")
            done.set()

        def on_writable(self) -> None:
            events.append("writable")

    async def session(conn: Connection) -> None:
        conn.set_handler(Handler(conn))
        await done.wait()

    await node.start(session)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    w.write(b"NOOP\r\n")
    assert await r.readline() == b"+OK NOOP\r\n"
    w.write_eof()
    assert await r.read() == b""
    w.close()
    await node.finished()
    assert events == [b"NOOP\r\n", "eof", "lost"]


async def test_read_budget_hands_out_slices_and_yields(node: Node) -> None:
    """Issue 12 item 1: a session consuming a fast stream gets at most ``read_budget`` octets per
    read and, once it has had that much without waiting, yields the loop before the next read;
    every octet arrives, in order, and flow control still pauses and resumes the client."""
    limits = replace(FAST, max_buffered_input=256 * 1024, read_budget=16 * 1024)
    sizes: list[int] = []
    turns: list[int] = []  # the other task's tick count at each read
    got = bytearray()
    ticks = 0
    go = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def session(conn: Connection) -> None:
        await go.wait()  # let a backlog build up in the buffer
        while len(got) < 2 * 1024 * 1024:
            data = await conn.read(timeout=5)
            if not data:
                break
            sizes.append(len(data))
            turns.append(ticks)
            got.extend(data)
        await conn.close()

    tick = asyncio.ensure_future(ticker())
    await node.start(session, limits)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    payload = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    w.write(payload)
    sender = asyncio.ensure_future(w.drain())
    await asyncio.sleep(0.5)
    go.set()
    await asyncio.wait_for(sender, 10)
    await node.finished()
    tick.cancel()
    assert bytes(got) == payload
    assert max(sizes) <= limits.read_budget
    # the backlog (more than one budget's worth was buffered) was read in slices with loop turns
    # in between: never two reads of the same loop turn
    assert len(sizes) >= 2 * 1024 * 1024 // limits.read_budget
    assert all(b > a for a, b in zip(turns, turns[1:], strict=False)), "reads without a loop turn between"
    w.close()


async def test_pace_yields_every_commands_per_turn(node: Node) -> None:
    """``Connection.pace`` (one per command run) gives the loop away every
    ``commands_per_turn`` commands, even when input is buffered and nothing else awaits."""
    limits = replace(FAST, commands_per_turn=4)
    seen: list[int] = []
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def session(conn: Connection) -> None:
        for _ in range(12):
            await conn.pace()
            seen.append(ticks)
        await conn.close()

    tick = asyncio.ensure_future(ticker())
    await node.start(session, limits)
    r, w = await asyncio.open_connection("127.0.0.1", node.port)
    await node.finished()
    tick.cancel()
    # the ticker ran exactly at commands 4, 8 and 12 (after each fourth command)
    changed = [i + 1 for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert changed == [4, 8, 12], seen
    w.close()
