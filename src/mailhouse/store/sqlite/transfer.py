"""SQLite's half of `mailhouse store copy` (`store/copy.py`): raw rows out and in.

Ids, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, UIDs, MODSEQs and delivery keys are written verbatim
(the one place where they are not assigned by the rules of `store/mail.py`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from mailhouse.store.api import Account, Alias, Domain, Mailbox, MessageRecord
from mailhouse.store.backend import MetaRow, rows_insert, rows_select
from mailhouse.store.blobfiles import FileBlobStore
from mailhouse.store.sqlite.blobs import INLINE_BLOB_MAX, HybridBlobStore
from mailhouse.store.sqlite.directory import scram_cols
from mailhouse.store.sqlite.engine import Engine
from mailhouse.store.sqlite.mail import flags_to_text


class SqliteTransfer:
    kind = "sqlite"

    def __init__(self, engine: Engine, blobs: HybridBlobStore, files: FileBlobStore) -> None:
        self.engine = engine
        self.blobs = blobs
        self.files = files

    async def uidvalidity_counter(self) -> int:
        row = await self.engine.read(
            lambda c: c.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone()
        )
        return int(row[0]) if row else 0

    async def metadata_rows(self) -> list[MetaRow]:
        rows = await self.engine.read(
            lambda c: c.execute(
                "SELECT account_id, mailbox, key, value FROM metadata ORDER BY 1, 2, 3"
            ).fetchall()
        )
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def secret_rows(self) -> list[tuple[str, str]]:
        rows = await self.engine.read(
            lambda c: c.execute(
                "SELECT substr(key, 8), value FROM meta WHERE key LIKE 'secret:%' ORDER BY 1"
            ).fetchall()
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        rows = await self.engine.read(
            lambda c: c.execute(
                "SELECT uid, delivery_key FROM messages WHERE mailbox_id=? AND delivery_key IS NOT NULL",
                (mailbox_id,),
            ).fetchall()
        )
        return {int(r[0]): str(r[1]) for r in rows}

    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]:
        rows = await self.engine.read(
            lambda c: c.execute(
                "SELECT uid, modseq FROM expunged WHERE mailbox_id=? ORDER BY uid", (mailbox_id,)
            ).fetchall()
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def raw_usage(self, account_id: int) -> tuple[int, int]:
        row = await self.engine.read(
            lambda c: c.execute(
                "SELECT coalesce(count(*),0), coalesce(sum(size),0) FROM messages"
                " WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=?)",
                (account_id,),
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    async def insert_directory(
        self, domains: list[Domain], accounts: list[tuple[Account, int, int]], aliases: list[Alias]
    ) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO domains(id, name, created) VALUES (?,?,?)",
                [(d.id, d.name, d.created) for d in domains],
            )
            c.executemany(
                "INSERT INTO accounts(id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, used_bytes, used_messages, created)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        a.id,
                        a.address,
                        a.domain_id,
                        a.password_hash,
                        a.quota_bytes,
                        a.quota_messages,
                        int(a.is_admin),
                        *scram_cols(a.scram),
                        used_b,
                        used_m,
                        a.created,
                    )
                    for a, used_m, used_b in accounts
                ],
            )
            c.executemany(
                "INSERT INTO aliases(id, source, destination) VALUES (?,?,?)",
                [(x.id, x.source, x.destination) for x in aliases],
            )

        await self.engine.write(fn)

    async def insert_mailbox(self, mb: Mailbox, expunged: list[tuple[int, int]]) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " VALUES (?,?,?,?,?,?,?)",
                (mb.id, mb.account_id, mb.name, mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use),
            )
            c.executemany(
                "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES (?,?,?)",
                [(mb.id, u, m) for u, m in expunged],
            )

        await self.engine.write(fn)

    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None:
        await self.engine.write(
            lambda c: c.executemany(
                "INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved,"
                " emailid, delivery_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.mailbox_id,
                        m.uid,
                        m.modseq,
                        flags_to_text(m.flags),
                        m.internaldate,
                        m.size,
                        m.blob_key,
                        m.saved,
                        m.emailid,  # RFC 8474 §5.1: kept although the blob key may change
                        dk,
                    )
                    for m, dk in rows
                ],
            )
        )

    async def insert_metadata(self, rows: list[MetaRow]) -> None:
        await self.engine.write(
            lambda c: c.executemany(
                "INSERT INTO metadata(account_id, mailbox, key, value) VALUES (?,?,?,?)", rows
            )
        )

    async def table_rows(
        self, table: str, columns: Sequence[str], account_id: int | None = None
    ) -> list[tuple[Any, ...]]:
        q = rows_select(table, columns, None if account_id is None else "?")
        args = () if account_id is None else (account_id,)
        return [tuple(r) for r in await self.engine.read(lambda c: c.execute(q, args).fetchall())]

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        q = rows_insert(table, columns, ["?"] * len(columns))
        await self.engine.write(lambda c: c.executemany(q, rows))

    async def finish(self, uidvalidity: int) -> None:
        await self.engine.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('uidvalidity', ?)", (str(uidvalidity),)
            )
        )

    async def put_blob(self, key: str, data: bytes) -> str:
        """Small blobs inline in the `blobs` table (key prefix "i"), large ones as files, as
        `HybridBlobStore` lays them out; the source's key is kept (prefixed "i" when inlined)."""
        if not key.isalnum():
            return await self.blobs.put(data)
        if len(data) <= INLINE_BLOB_MAX or key.startswith("i"):
            new = key if key.startswith("i") else "i" + key
            await self.engine.write(
                lambda c: c.execute("INSERT OR IGNORE INTO blobs(key, data) VALUES (?, ?)", (new, data))
            )
            return new
        if await asyncio.to_thread(self.files.path(key).exists):  # keys are unique and files immutable:
            return key  # already this blob (an incremental `mailhouse backup` of PostgreSQL)
        return await asyncio.to_thread(self.files.put_sync, data, key)
