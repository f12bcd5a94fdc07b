"""SQLite change feed: the ``changes`` table, written in the changing transaction and polled.

A commit made by this process that published a change kicks the poller (`Poller.kick`), so its
own subscribers hear of it at once (issue 13 §2: push latency); deliveries made by another worker
process are seen within `POLL_INTERVAL`. Rows older than `CHANGES_KEEP_SECONDS` are pruned by
the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from mailhouse.store.api import Change, ChangeKind
from mailhouse.store.feed import FeedHub
from mailhouse.store.sqlite.engine import Engine

POLL_INTERVAL = 0.05  # seconds between polls for other worker processes' changes (push p50 < 50 ms)
CHANGES_KEEP_SECONDS = 3600.0  # change-feed rows older than this are pruned
PRUNE_EVERY = 60.0  # seconds between prunes
POLL_BATCH = 5000  # changes read per poll
# a transaction stamps its change before it commits: one in flight when the poller restarts
# (stamped up to this long before) is still delivered
RESTART_MARGIN = 0.25


class FeedTx:
    c: sqlite3.Connection
    published: bool  # set by `publish`: the backend kicks the poller after the commit

    async def publish(self, change: Change) -> None:
        self.published = True
        self.c.execute(
            "INSERT INTO changes(account_id, mailbox_id, kind, modseq, at) VALUES (?,?,?,?,?)",
            (change.account_id, change.mailbox_id, str(change.kind), change.modseq, time.time()),
        )


class Poller:
    """Brings committed changes of every process into this one's `FeedHub`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last = 0
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        # when the poller last started after being idle: the rows it catches up on that were
        # committed before then concern no current subscriber and are skipped (issue 19: a
        # webmail page opened later was told "New mail" for mail that arrived while none was open)
        self._since = 0.0

    async def open(self) -> None:
        self.last = await self.engine.read(
            lambda c: int(c.execute("SELECT coalesce(max(id),0) FROM changes").fetchone()[0])
        )

    def close(self) -> None:
        if self._task:
            self._task.cancel()
            self._task = None

    def wake(self, hub: FeedHub) -> None:
        if self._task is None or self._task.done():
            self._since = time.time() - RESTART_MARGIN
            self._task = asyncio.get_running_loop().create_task(self._poll(hub))

    def kick(self) -> None:
        """A change this process published has committed: poll now, not at the next interval."""
        if self._kick is not None:
            self._kick.set()

    async def _poll(self, hub: FeedHub) -> None:
        last_prune = time.time()
        kick = self._kick = asyncio.Event()
        while hub.active():
            if not kick.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), POLL_INTERVAL)
            kick.clear()
            rows: list[Any] = await self.engine.read(self._after(self.last))
            for rid, acc, mbox, kind, modseq, at in rows:
                self.last = max(self.last, rid)
                if at >= self._since:
                    hub.dispatch(Change(acc, mbox, ChangeKind(kind), modseq))
            if time.time() - last_prune > PRUNE_EVERY:
                last_prune = time.time()
                await self.engine.write(self._prune(time.time() - CHANGES_KEEP_SECONDS))

    @staticmethod
    def _prune(cutoff: float) -> Callable[[sqlite3.Connection], object]:
        return lambda c: c.execute("DELETE FROM changes WHERE at < ?", (cutoff,))

    @staticmethod
    def _after(last: int) -> Any:
        return lambda c: c.execute(
            "SELECT id, account_id, mailbox_id, kind, modseq, at FROM changes WHERE id > ? ORDER BY id LIMIT ?",
            (last, POLL_BATCH),
        ).fetchall()
