"""PostgreSQL's half of `mailhouse store copy` (`store/copy.py`): raw rows out and in.

Ids (``OVERRIDING SYSTEM VALUE``), UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, UIDs, MODSEQs and
delivery keys are written verbatim; `finish` moves the identity sequences and the UIDVALIDITY
counter past every copied value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailhouse.store.api import Account, Alias, BlobStore, Domain, Mailbox, MessageRecord
from mailhouse.store.backend import MetaRow, rows_insert, rows_select
from mailhouse.store.postgres.engine import Conn, Engine


def _scram_cols(a: Account) -> tuple[Any, Any, Any, Any]:
    s = a.scram
    return (s.salt, s.iterations, s.stored_key, s.server_key) if s else (None, None, None, None)


class PgTransfer:
    kind = "postgresql"

    def __init__(self, engine: Engine, blobs: BlobStore, db_blobs: bool) -> None:
        self.engine = engine
        self.blobs = blobs
        self.db_blobs = db_blobs

    async def _fetch(self, q: str, *args: Any) -> list[Any]:
        return list(await self.engine.pool().fetch(q, *args))

    async def uidvalidity_counter(self) -> int:
        rows = await self._fetch("SELECT value FROM counters WHERE name='uidvalidity'")
        return int(rows[0][0]) if rows else 0

    async def metadata_rows(self) -> list[MetaRow]:
        rows = await self._fetch("SELECT account_id, mailbox, key, value FROM metadata ORDER BY 1, 2, 3")
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def secret_rows(self) -> list[tuple[str, str]]:
        rows = await self._fetch("SELECT name, value FROM secrets ORDER BY 1")
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        rows = await self._fetch(
            "SELECT uid, delivery_key FROM messages WHERE mailbox_id=$1 AND delivery_key IS NOT NULL",
            mailbox_id,
        )
        return {int(r[0]): str(r[1]) for r in rows}

    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]:
        rows = await self._fetch(
            "SELECT uid, modseq FROM expunged WHERE mailbox_id=$1 ORDER BY uid", mailbox_id
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def raw_usage(self, account_id: int) -> tuple[int, int]:
        rows = await self._fetch(
            "SELECT count(*), coalesce(sum(size),0) FROM messages"
            " WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=$1)",
            account_id,
        )
        return int(rows[0][0]), int(rows[0][1])

    async def insert_directory(
        self, domains: list[Domain], accounts: list[tuple[Account, int, int]], aliases: list[Alias]
    ) -> None:
        async def fn(c: Conn) -> None:
            # OVERRIDING SYSTEM VALUE: keep the source's ids (GENERATED ALWAYS AS IDENTITY columns)
            await c.executemany(
                "INSERT INTO domains(id, name, created) OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3)",
                [(d.id, d.name, d.created) for d in domains],
            )
            await c.executemany(
                "INSERT INTO accounts(id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, used_bytes, used_messages, created)"
                " OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                [
                    (
                        a.id,
                        a.address,
                        a.domain_id,
                        a.password_hash,
                        a.quota_bytes,
                        a.quota_messages,
                        a.is_admin,
                        *_scram_cols(a),
                        used_b,
                        used_m,
                        a.created,
                    )
                    for a, used_m, used_b in accounts
                ],
            )
            await c.executemany(
                "INSERT INTO aliases(id, source, destination) OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3)",
                [(x.id, x.source, x.destination) for x in aliases],
            )

        await self.engine.transaction(fn)

    async def insert_mailbox(self, mb: Mailbox, expunged: list[tuple[int, int]]) -> None:
        async def fn(c: Conn) -> None:
            await c.execute(
                "INSERT INTO mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3,$4,$5,$6,$7)",
                mb.id,
                mb.account_id,
                mb.name,
                mb.uidvalidity,
                mb.uidnext,
                mb.highestmodseq,
                mb.special_use,
            )
            await c.executemany(
                "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES ($1,$2,$3)",
                [(mb.id, u, m) for u, m in expunged],
            )

        await self.engine.transaction(fn)

    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None:
        async def fn(c: Conn) -> None:
            await c.executemany(
                "INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved,"
                " emailid, delivery_key) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                [
                    (
                        m.mailbox_id,
                        m.uid,
                        m.modseq,
                        sorted(m.flags),
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

        await self.engine.transaction(fn)

    async def insert_metadata(self, rows: list[MetaRow]) -> None:
        async def fn(c: Conn) -> None:
            await c.executemany(
                "INSERT INTO metadata(account_id, mailbox, key, value) VALUES ($1,$2,$3,$4)", rows
            )

        await self.engine.transaction(fn)

    async def table_rows(
        self, table: str, columns: Sequence[str], account_id: int | None = None
    ) -> list[tuple[Any, ...]]:
        q = rows_select(table, columns, None if account_id is None else "$1")
        args = () if account_id is None else (account_id,)
        return [tuple(r) for r in await self._fetch(q, *args)]

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        q = rows_insert(table, columns, [f"${i + 1}" for i in range(len(columns))])

        async def fn(c: Conn) -> None:
            await c.executemany(q, rows)

        await self.engine.transaction(fn)

    async def finish(self, uidvalidity: int) -> None:
        async def fn(c: Conn) -> None:
            for table in ("domains", "accounts", "aliases", "mailboxes"):
                # move each identity past the copied ids, so new rows never collide with them
                await c.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                    " HAVING max(id) IS NOT NULL"
                )
            await c.execute(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1) ON CONFLICT (name) DO UPDATE"
                " SET value = greatest(excluded.value, counters.value)",
                uidvalidity,
            )

        await self.engine.transaction(fn)

    async def put_blob(self, key: str, data: bytes) -> str:
        if self.db_blobs:
            await self.engine.pool().execute(
                "INSERT INTO blobs(key, data) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, data
            )
            return key
        return await self.blobs.put(data)  # S3: keys are chosen by the blob store
