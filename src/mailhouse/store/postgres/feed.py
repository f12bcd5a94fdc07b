"""PostgreSQL change feed: LISTEN/NOTIFY on channel `CHANNEL`.

Invariants:
- `pg_notify` runs in the same transaction as the change (`FeedTx.publish`), so a
  notification is delivered only after (and only if) the change committed, in commit order.
  Payload: ``account_id:mailbox_id:kind:modseq``.
- Each store instance (one per process) keeps one LISTEN connection and dispatches to its
  local subscribers (`store.feed.FeedHub`). If that connection is lost it is re-established
  and every subscriber gets ``Change(account_id, 0, MAILBOX, 0)``: "changes may have been
  missed; re-read".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from mailhouse.store.api import Change, ChangeKind
from mailhouse.store.feed import FeedHub
from mailhouse.store.postgres.engine import Conn

log = logging.getLogger(__name__)

CHANNEL = "mailhouse_changes"  # LISTEN/NOTIFY channel of the change feed
LISTEN_RETRY_MAX = 5.0  # seconds between attempts to re-establish a lost LISTEN connection


class FeedTx:
    c: Conn

    async def publish(self, change: Change) -> None:
        # Delivered by PostgreSQL at commit only, in commit order.
        payload = f"{change.account_id}:{change.mailbox_id}:{change.kind}:{change.modseq}"
        await self.c.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


class Listener:
    """One LISTEN connection per store instance, feeding a `FeedHub`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Conn = None
        self._lock = asyncio.Lock()
        self._reconnect: asyncio.Task[None] | None = None
        self._hub: FeedHub | None = None
        self.closing = False

    async def ensure(self, hub: FeedHub) -> None:
        self._hub = hub
        async with self._lock:
            if self.conn is not None and not self.conn.is_closed():
                return
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_lost)
            self.conn = conn

    async def close(self) -> None:
        self.closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect
            self._reconnect = None
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, _conn: Conn, _pid: int, _channel: str, payload: str) -> None:
        try:
            acc_s, mbox_s, kind, modseq_s = payload.split(":", 3)
            change = Change(int(acc_s), int(mbox_s), ChangeKind(kind), int(modseq_s))
        except ValueError:
            log.warning("store: ignoring malformed change notification %r", payload)
            return
        if self._hub is not None:
            self._hub.dispatch(change)

    def _on_lost(self, _conn: Conn) -> None:
        if self.closing:
            return
        log.warning("store: LISTEN connection lost; reconnecting")
        self.conn = None
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        delay = 0.1
        hub = self._hub
        while hub is not None and not self.closing and hub.active():
            try:
                await self.ensure(hub)
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("store: LISTEN reconnect failed: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)
                continue
            hub.missed()  # we may have missed changes while disconnected
            return
