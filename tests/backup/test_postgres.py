"""`mailhouse backup` of a PostgreSQL store: one REPEATABLE READ snapshot (writes after it are not in
the backup), copied into a SQLite index + blob files, verified, incremental, restorable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.backup import restore, snapshot
from mailhouse.store import open_store
from mailhouse.store.api import NewMessage, Store
from mailhouse.store.postgres.snapshot import open_snapshot
from mailhouse.store.sqlite.backend import SqliteStore
from tests.backup.conftest import BIG, msg


@pytest.fixture
async def pg(postgres_db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(postgres_db_url, tmp_path / "pgdata")
    await s.open()
    await s.add_domain("example.org")
    acc = await s.add_account("alice@example.org", "hash")
    inbox = await s.get_mailbox(acc.id, "INBOX")
    assert inbox is not None
    await s.append_octets(
        [
            (msg(1), NewMessage(inbox.id, "", 0, frozenset({"\\Seen", "work"}), 1_700_000_000.0)),
            (msg(2, BIG), NewMessage(inbox.id, "", 0, frozenset(), 1_700_000_100.0)),
        ]
    )
    try:
        yield s
    finally:
        await s.close()


async def _inbox(s: Store) -> list[tuple[int, frozenset[str], float, bytes]]:
    acc = await s.get_account("alice@example.org")
    assert acc is not None
    box = await s.get_mailbox(acc.id, "INBOX")
    assert box is not None
    return [
        (m.uid, m.flags, m.internaldate, await s.blobs.get(m.blob_key)) for m in await s.list_messages(box.id)
    ]


async def test_snapshot_does_not_see_later_writes(pg: Store, postgres_db_url: str, tmp_path: Path) -> None:
    before = await _inbox(pg)
    snap = await open_snapshot(postgres_db_url, tmp_path / "pgdata")
    try:
        acc = await pg.get_account("alice@example.org")
        assert acc is not None
        box = await pg.get_mailbox(acc.id, "INBOX")
        assert box is not None
        await pg.append_octets([(msg(3), NewMessage(box.id, "", 0))])
        await pg.add_account("late@example.org", "hash")
        assert await _inbox(snap) == before  # the snapshot point was before those writes
        assert await snap.get_account("late@example.org") is None
        assert len(await _inbox(pg)) == len(before) + 1
    finally:
        await snap.close()


async def test_backup_verify_incremental_restore(pg: Store, postgres_db_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    first = await snapshot.backup_postgres(postgres_db_url, tmp_path / "pgdata", dest)
    assert first.copied == 1 and first.counts["messages"] == 2
    assert snapshot.verify(dest).ok
    acc = await pg.get_account("alice@example.org")
    assert acc is not None
    box = await pg.get_mailbox(acc.id, "INBOX")
    assert box is not None
    await pg.append_octets([(msg(4, BIG), NewMessage(box.id, "", 0, frozenset({"\\Flagged"})))])
    second = await snapshot.backup_postgres(postgres_db_url, tmp_path / "pgdata", dest)
    assert (second.copied, second.kept) == (1, 1)  # only the new blob file
    assert snapshot.verify(dest).ok
    target = SqliteStore(tmp_path / "r.db", tmp_path / "r-blobs")
    await target.open()
    try:
        await restore.restore_all(dest, target)
        assert await _inbox(target) == await _inbox(pg)
        tacc = await target.get_account("alice@example.org")
        tbox = await target.get_mailbox(tacc.id, "INBOX") if tacc else None
        assert tbox is not None and tbox.uidvalidity == box.uidvalidity
    finally:
        await target.close()
