"""IMAP listeners: ``imap`` (port 143, STARTTLS) and ``imaps`` (port 993, implicit TLS, RFC 8314).

One asyncio adapter over the sans-IO core ``proto.imap``: :func:`listen` accepts connections
and runs an :class:`~mailhouse.imapserver.session.IMAPSession` on a :class:`Conn`, the byte
pipe that hides TLS upgrades and COMPRESS=DEFLATE (RFC 4978).

RFCs: RFC 9051 / RFC 3501 (IMAP), RFC 8314 §3.3 (implicit TLS), RFC 9051 §6.2.1 (STARTTLS),
RFC 4978 (COMPRESS=DEFLATE: raw deflate, RFC 1951, both directions, sync flush per write).

Invariants:

* STARTTLS goes through ``tls.upgrade_server_stream``: the OK is written and the handshake
  starts with no await in between, and plaintext pipelined after the command is discarded
  (together with the core's own buffer, see ``session.cmd_starttls``).
* Inflated input is produced at most :data:`MAX_INFLATE` octets per read (a deflate bomb
  costs CPU in slices, never memory); the core's line and literal limits then apply.
* Each write with compression on ends with a sync flush, so the client can decode every
  response as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from typing import TYPE_CHECKING

from mailhouse import app
from mailhouse import tls as tls_mod

from .changes import ChangeHub
from .selected import RecentClaims
from .session import TLS_HANDSHAKE_TIMEOUT, IMAPSession

if TYPE_CHECKING:
    from mailhouse.services import Services

READ_SIZE = 64 * 1024
MAX_INFLATE = 64 * 1024  # octets of inflated input produced per read


class Conn:
    """The client byte stream: plain, TLS, optionally deflate-compressed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._pending = b""  # compressed octets received before compression started

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    def is_tls(self) -> bool:
        return self.writer.get_extra_info("sslcontext") is not None

    def peer_ip(self) -> str:
        peer = self.writer.get_extra_info("peername") or ("?", 0)
        return str(peer[0])

    async def read(self) -> bytes:
        """Next input octets (inflated when compression is on); ``b""`` at EOF."""
        d = self._inflate
        if d is None:
            return await self.reader.read(READ_SIZE)
        while True:
            if d.unconsumed_tail:
                out = d.decompress(d.unconsumed_tail, MAX_INFLATE)
                if out:
                    return out
            if self._pending:
                raw, self._pending = self._pending, b""
            else:
                raw = await self.reader.read(READ_SIZE)
                if not raw:
                    return b""
            try:
                out = d.decompress(raw, MAX_INFLATE)
            except zlib.error as e:
                raise ConnectionError(f"bad deflate stream: {e}") from None
            if d.eof:
                raise ConnectionError("client ended the deflate stream")
            if out:
                return out

    async def write(self, data: bytes) -> None:
        c = self._deflate
        if c is not None:
            data = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        self.writer.write(data)
        await self.writer.drain()

    def start_compress(self, already_received: bytes) -> None:
        # RFC 4978 §3: raw DEFLATE (no zlib header), both directions
        self._inflate = zlib.decompressobj(-15)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._pending = already_received

    async def start_tls(self, reply: bytes, ctx: ssl.SSLContext, timeout: float) -> int:
        return await tls_mod.upgrade_server_stream(self.reader, self.writer, reply, ctx, timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


_hubs: dict[int, tuple[ChangeHub, RecentClaims]] = {}


def _shared(svc: Services) -> tuple[ChangeHub, RecentClaims]:
    """One change hub and one \\Recent registry per Services (shared by imap and imaps)."""
    got = _hubs.get(id(svc))
    if got is None:
        got = (ChangeHub(svc.store), RecentClaims(svc.store))
        _hubs[id(svc)] = got
    return got


async def listen(svc: Services, name: str, host: str, port: int) -> asyncio.base_events.Server:
    hub, claims = _shared(svc)
    return await app.start_listener(
        svc, host, port, lambda r, w: IMAPSession(svc, hub, claims, Conn(r, w), name).run(),
        implicit_tls=name == "imaps", read_size=READ_SIZE, handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
    )


class Server:
    """The node's IMAP server, shared by imap and imaps."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def listen(self, name: str, host: str, port: int) -> asyncio.base_events.Server:
        return await listen(self.svc, name, host, port)
