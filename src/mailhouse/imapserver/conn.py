"""The IMAP session's byte stream: a thin view of a runtime :class:`~mailhouse.runtime.Connection`.

The session (``session.py``) reads and writes through this API only: ``read``, ``write`` (with
drain), ``start_tls(reply, ctx, timeout)`` (RFC 9051 §6.2.1: plaintext pipelined after STARTTLS is
discarded), ``start_compress(already_received)`` (RFC 4978 COMPRESS=DEFLATE, bounded inflate per
read), ``is_tls``, ``peer_ip``, ``close`` and ``compressed``. Kept in its own module so the session
and the listener (``server.py``) do not import each other.
"""

from __future__ import annotations

import ssl

from mailhouse.runtime import Connection


class Conn:
    """The client byte stream as the session sees it: plain, TLS, optionally deflate-compressed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def compressed(self) -> bool:
        return self.conn.compressed

    def is_tls(self) -> bool:
        return self.conn.tls

    def peer_ip(self) -> str:
        return self.conn.peer_ip

    async def read(self) -> bytes:
        """Next input octets (inflated when compression is on); ``b""`` at EOF."""
        return await self.conn.read()  # the session keeps its own idle deadline (wait_input)

    async def pace(self) -> None:
        """One command run: yields a loop turn every ``Limits.commands_per_turn`` (issue 12 item 1)."""
        await self.conn.pace()

    async def write(self, data: bytes) -> None:
        self.conn.write(data)
        await self.conn.drain()

    def admit_login(self, account: str) -> bool:
        """Count the login against the per-account connection limits (issue 12 item 5)."""
        return self.conn.admit_login(account) is None

    def release_login(self) -> None:
        self.conn.release_login()

    def start_compress(self, already_received: bytes) -> None:
        self.conn.start_compress(already_received)  # RFC 4978 §3

    async def start_tls(self, reply: bytes, ctx: ssl.SSLContext, timeout: float) -> int:
        return await self.conn.start_tls(reply, ctx, timeout)  # RFC 9051 §6.2.1

    async def close(self) -> None:
        await self.conn.close()
