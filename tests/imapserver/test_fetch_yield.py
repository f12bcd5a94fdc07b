"""A big FETCH lets other sessions' commands run between batches of responses (issue 13 §2).

``FETCH 1:* (UID FLAGS)`` on a 1,000-message mailbox never suspended on its own (the records
are in memory, the output stays below the flush threshold), so it held the event loop, and every
other client's small command, until its last response. It now gives the loop a turn every
``fetch.YIELD_EVERY`` responses: counted here by a task that ticks on each turn it gets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailhouse.imapserver.commands import fetch
from mailhouse.imapserver.index import IndexRegistry
from mailhouse.imapserver.selected import RecentClaims, SelectedMailbox
from mailhouse.proto.imap.grammar import parse_command
from mailhouse.store.api import NewMessage
from mailhouse.store.sqlite.backend import SqliteStore


class _Session:
    """The part of ``SessionContext`` a content-free FETCH uses."""

    def __init__(self, store: SqliteStore, view: SelectedMailbox) -> None:
        self.store = store
        self.selected = view
        self.utf8 = False
        self.qresync = False
        self.condstore = False
        self.enabled: set[str] = set()
        self.out: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.out.append(data)

    async def maybe_flush(self) -> None:
        """Like the session's when the output is below ``FLUSH_AT``: no suspension."""


async def test_fetch_of_the_whole_mailbox_yields_to_other_sessions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "i.db", tmp_path / "b")
    await store.open()
    try:
        await store.add_domain("example.org")
        acc = await store.add_account("a@example.org", "x")
        mb = await store.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        n = 1000
        await store.deliver(b"Subject: hi\r\n\r\nbody\r\n", [NewMessage(mb.id, "", 0) for _ in range(n)])
        view = await SelectedMailbox.open(
            store,
            mb,
            RecentClaims(store),
            readonly=True,
            rev2=True,
            condstore=False,
            qresync=False,
            registry=IndexRegistry(store),
        )
        s = _Session(store, view)
        ticks = 0
        done = False

        async def other_session() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.ensure_future(other_session())
        await asyncio.sleep(0)  # the other session is running
        start = ticks
        cmd = parse_command([b"a FETCH 1:* (UID FLAGS)"])
        await fetch.cmd_fetch(s, cmd)  # type: ignore[arg-type]
        during = ticks - start
        done = True
        await other
        fetched = [o for o in s.out if b" FETCH (" in o]
        assert len(fetched) == n
        assert during >= 10  # at least one turn per YIELD_EVERY (64) responses
    finally:
        await store.close()
