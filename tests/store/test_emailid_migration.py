"""Store migration 7 (RFC 8474 §5.1 EMAILID): messages stored before it get the EMAILID a new
delivery of the same blob key would get (``store.api.emailid_for_blob``), on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from mailhouse.store import open_store
from mailhouse.store.api import NewMessage, Store, emailid_for_blob


async def _one_message(store: Store) -> tuple[int, str]:
    await store.add_domain("example.org")
    acc = await store.add_account("a@example.org", "hash")
    inbox = await store.get_mailbox(acc.id, "INBOX")
    assert inbox
    rec = (await store.deliver(b"Subject: old\r\n\r\nold\r\n", [NewMessage(inbox.id, "", 0)]))[0]
    return inbox.id, rec.blob_key


async def test_sqlite_rows_from_before_get_their_emailid(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mh.db'}"
    store = open_store(url, tmp_path)
    await store.open()
    mb, key = await _one_message(store)
    await store.close()
    db = sqlite3.connect(tmp_path / "mh.db")  # roll the file back to schema version 6
    db.execute("ALTER TABLE messages DROP COLUMN emailid")
    db.execute("PRAGMA user_version=6")
    db.commit()
    db.close()
    store = open_store(url, tmp_path)
    await store.open()
    try:
        (rec,) = await store.list_messages(mb)
        assert rec.emailid == emailid_for_blob(key) == "M" + key
    finally:
        await store.close()


async def test_postgres_rows_from_before_get_their_emailid(postgres_db_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_db_url, tmp_path)
    await store.open()
    mb, key = await _one_message(store)
    await store.close()
    conn = await asyncpg.connect(postgres_db_url)
    try:
        await conn.execute("ALTER TABLE messages DROP COLUMN emailid")
        await conn.execute(
            "DROP TABLE acl, seen, fts_docs, spam_tokens, spam_totals, spam_trained, spam_lists, reports,"
            " report_rows, report_sends, contacts, collected_addrs, web_sessions, user_settings, sieve_scripts"
        )  # a version-6 database: no later tables either
        await conn.execute("UPDATE schema_version SET version=6")
    finally:
        await conn.close()
    store = open_store(postgres_db_url, tmp_path)
    await store.open()
    try:
        (rec,) = await store.list_messages(mb)
        assert rec.emailid == emailid_for_blob(key) == "M" + key
    finally:
        await store.close()
