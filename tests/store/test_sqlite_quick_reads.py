"""SQLite: small indexed reads run on the event-loop thread (``SqliteStore._read_quick``)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from mailhouse.store.api import FlagMode, NewMessage
from mailhouse.store.sqlite.backend import SqliteStore


async def test_quick_reads_run_on_the_loop_thread_and_see_every_commit(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "i.db", tmp_path / "b")
    await s.open()
    try:
        await s.add_domain("example.org")
        acc = await s.add_account("a@example.org", "x")
        mb = await s.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        seen: list[int] = []

        def where(c: sqlite3.Connection) -> int:
            seen.append(threading.get_ident())
            return int(c.execute("SELECT count(*) FROM mailboxes").fetchone()[0])

        assert await s._read_quick(where) > 0
        assert seen == [threading.get_ident()]
        for i in range(3):  # each commit is visible to the very next quick read
            (rec,) = await s.deliver(b"Subject: x\r\n\r\nx\r\n", [NewMessage(mb.id, "", 0)])
            now = await s.get_mailbox_by_id(mb.id)
            assert now is not None and now.uidnext == rec.uid + 1
            assert [r.uid for r in await s.changed_since(mb.id, now.highestmodseq - 1)] == [rec.uid]
        await s.store_flags(mb.id, [1], FlagMode.ADD, frozenset({"\\Seen"}))
        await s.expunge(mb.id, [2])
        assert await s.expunged_since(mb.id, 0) == [2]
        with_quick = s._quick
        assert with_quick is not None
        try:
            with_quick.execute("INSERT INTO meta VALUES ('x', 'y')")
            raise AssertionError("the loop-thread connection must be read-only")
        except sqlite3.OperationalError:
            pass
    finally:
        await s.close()
    assert s._quick is None


async def test_busy_quick_read_falls_back_to_a_reader_thread(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "i.db", tmp_path / "b")
    await s.open()
    try:
        threads: list[int] = []

        def fn(c: sqlite3.Connection) -> str:
            threads.append(threading.get_ident())
            if len(threads) == 1:
                raise sqlite3.OperationalError("database is locked")  # what a checkpoint can cause
            return "ok"

        assert await s._read_quick(fn) == "ok"
        assert threads[0] == threading.get_ident() and threads[1] != threading.get_ident()
    finally:
        await s.close()


async def test_expunged_since_reads_only_newer_expunges_through_the_modseq_index(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "i.db", tmp_path / "b")
    await s.open()
    try:
        await s.add_domain("example.org")
        acc = await s.add_account("a@example.org", "x")
        mb = await s.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        for _ in range(6):
            await s.deliver(b"Subject: x\r\n\r\nx\r\n", [NewMessage(mb.id, "", 0)])
        await s.expunge(mb.id, [5, 1])
        mark = (await s.get_mailbox_by_id(mb.id)).highestmodseq  # type: ignore[union-attr]
        await s.expunge(mb.id, [4])
        await s.expunge(mb.id, [2])
        assert await s.expunged_since(mb.id, 0) == [1, 2, 4, 5]  # in UID order
        assert await s.expunged_since(mb.id, mark) == [2, 4]
        db = sqlite3.connect(tmp_path / "i.db")
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT uid FROM expunged WHERE mailbox_id=? AND modseq>?", (mb.id, mark)
        ).fetchall()
        db.close()
        assert "expunged_modseq" in str(plan), plan  # not a walk over every expunged UID
    finally:
        await s.close()
