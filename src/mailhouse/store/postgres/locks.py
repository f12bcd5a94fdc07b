"""POP3 maildrop locks across nodes: PostgreSQL session-level advisory locks (RFC 1939 §8).

Several Mailhouse nodes on one database must not open the same maildrop at once
(RFC 2449 §8.1.1 ``[IN-USE]``). Each store instance (one per process) keeps one
dedicated connection, outside the pool, on which it holds
``pg_try_advisory_lock(POP3_LOCK_CLASS, <mailbox id as int4>)`` for every maildrop
one of its sessions has open, and ``pg_advisory_unlock`` at the end of the session.

Invariants
----------
* A node that dies (kill -9, crash, power loss) never leaves a maildrop locked:
  session-level advisory locks belong to the database session, which ends when its
  connection closes. A vanished host is noticed by TCP keepalive
  (``KEEPALIVE_SETTINGS``: about ``60 + 3 * 10`` s).
* Within one process the database lock would be re-entrant (same session), so the
  process keeps its own table of held mailboxes and refuses a second holder first.
* Calls on the lock connection are serialised (``_mutex``): asyncpg runs one
  query at a time per connection.
* If the lock connection itself is lost while its node lives on, its locks are gone
  on the server: the leases it held are marked ``lost`` and logged (their sessions
  keep the local exclusion; another node may open those maildrops). The next
  acquisition opens a new connection.
* Keys: class ``POP3_LOCK_CLASS`` ('POP3') and the mailbox id wrapped to a signed
  32-bit integer (the two-int4 key space, distinct from the bigint key of the
  schema migration lock). Mailbox ids 2**32 apart share a key: at worst a false
  ``[IN-USE]``, never a missed one.
* Not for connection poolers in transaction mode (pgbouncer): session locks need a
  real session. The store URL should point at PostgreSQL (or a session-mode pooler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import asyncpg

log = logging.getLogger(__name__)

#: 'POP3' as a positive int4: the advisory-lock class of POP3 maildrops.
POP3_LOCK_CLASS: Final = 0x504F5033
#: Server-side keepalive on the lock connection, so a vanished node's locks are freed.
KEEPALIVE_SETTINGS: Final = {
    "tcp_keepalives_idle": "60",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


def lock_key(mailbox_id: int) -> int:
    """The mailbox id as a signed int4 (the second key of ``pg_try_advisory_lock(int4, int4)``)."""
    return ((int(mailbox_id) + 2**31) % 2**32) - 2**31


class PgLease:
    __slots__ = ("_conn", "_owner", "lost", "mailbox_id")

    def __init__(self, owner: PgMaildropLocks, mailbox_id: int, conn: Any) -> None:
        self._owner = owner
        self.mailbox_id = mailbox_id
        self._conn = conn
        self.lost = False  # the lock connection dropped: the database no longer holds it

    async def release(self) -> None:
        await self._owner._release(self)


class PgMaildropLocks:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self._mutex = asyncio.Lock()
        self._held: dict[int, PgLease] = {}

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn, server_settings=KEEPALIVE_SETTINGS)
            conn.add_termination_listener(self._on_lost)
            self._conn = conn
        return self._conn

    def _on_lost(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        lost = [lease for lease in self._held.values() if lease._conn is conn]
        for lease in lost:
            lease.lost = True
        if lost:
            log.warning("store: POP3 lock connection lost; %d maildrop lock(s) no longer held", len(lost))

    async def try_acquire(self, mailbox_id: int) -> PgLease | None:
        if mailbox_id in self._held:
            return None  # another session of this process has it
        async with self._mutex:
            if mailbox_id in self._held:
                return None
            conn = await self._connection()
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1::int4, $2::int4)", POP3_LOCK_CLASS, lock_key(mailbox_id)
            )
            if not got:
                return None  # held by another node or process
            lease = PgLease(self, mailbox_id, conn)
            self._held[mailbox_id] = lease
            return lease

    async def _release(self, lease: PgLease) -> None:
        if self._held.get(lease.mailbox_id) is not lease:
            return  # released already
        del self._held[lease.mailbox_id]
        async with self._mutex:
            conn = lease._conn
            if lease.lost or conn is not self._conn or conn.is_closed():
                return  # the server dropped it with the connection
            try:
                await conn.fetchval(
                    "SELECT pg_advisory_unlock($1::int4, $2::int4)",
                    POP3_LOCK_CLASS,
                    lock_key(lease.mailbox_id),
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                # cannot tell whether it was freed: closing the session frees every lock on it
                log.warning("store: POP3 unlock failed; closing the lock connection")
                self._on_lost(conn)
                with contextlib.suppress(Exception):
                    conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        for lease in self._held.values():
            lease.lost = True
        self._held.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
