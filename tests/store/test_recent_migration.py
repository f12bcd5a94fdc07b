"""SQLite schema migration 4: \\Recent claims kept in the metadata table (pseudo-mailbox
"//mailhouse/recent") move to the `recent` table, so an upgrade does not make old mail recent
again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailhouse.store import open_store


async def test_recent_claims_migrate_from_metadata(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mh.db'}"
    store = open_store(url, tmp_path)
    await store.open()
    await store.add_domain("example.org")
    acc = await store.add_account("a@example.org", "hash")
    inbox = await store.get_mailbox(acc.id, "INBOX")
    assert inbox
    await store.close()
    # roll the file back to schema version 3 with a claim stored the old way
    db = sqlite3.connect(tmp_path / "mh.db")
    db.execute("DROP TABLE recent")
    db.execute("ALTER TABLE messages DROP COLUMN emailid")  # a version-3 file: no later column either
    db.execute("INSERT INTO metadata VALUES (?, '//mailhouse/recent', ?, '7')", (acc.id, str(inbox.id)))
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    store = open_store(url, tmp_path)
    await store.open()
    try:
        assert await store.recent_claimed(inbox.id, inbox.uidvalidity) == 7
        assert await store.get_metadata(acc.id, "//mailhouse/recent", str(inbox.id)) is None
        assert await store.claim_recent(inbox.id, inbox.uidvalidity, 9) == 7
    finally:
        await store.close()
