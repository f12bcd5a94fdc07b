"""PostgreSQL primitives for the mail index: mailboxes, messages, flags, expunged memory,
usage, subscriptions, metadata, \\Recent marks, in-transaction blobs.

Rows only; the rules are in `store/mail.py`. Part of `PgTx` (`store/postgres/backend.py`).

Invariants:
- `bump` is an ``UPDATE mailboxes … RETURNING``: its row lock is held until commit, so per
  mailbox, UID/modseq allocation order equals commit order on any number of nodes.
- `lock_mailboxes` locks rows in ascending id order, `adjust_usage` accounts in ascending id
  order (the global lock order of this backend, which keeps deadlocks rare; the rest retry).
- `messages(..., for_share=True)` takes ``FOR SHARE`` on the rows, so a concurrent expunge
  cannot free a blob a copy is about to reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from mailhouse.store.api import AlreadyExists, Mailbox, MessageRecord, NotFound, Usage, emailid_for_blob
from mailhouse.store.postgres.engine import Conn, Row

MSG_COLS = "mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved, emailid"
MB_COLS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"


def message_row(r: Row) -> MessageRecord:
    return MessageRecord(
        mailbox_id=int(r[0]),
        uid=int(r[1]),
        modseq=int(r[2]),
        flags=frozenset(r[3]),
        internaldate=float(r[4]),
        size=int(r[5]),
        blob_key=str(r[6]),
        saved=float(r[7]),
        emailid=str(r[8]) or emailid_for_blob(str(r[6])),
    )


def mailbox_row(r: Row) -> Mailbox:
    return Mailbox(int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6])


class MailTx:
    c: Conn
    db_blobs: bool  # blobs live in the `blobs` table (not S3)

    # ---------------------------------------------------------------- mailboxes
    async def next_uidvalidity(self, floor: int) -> int:
        # the counter row lock orders concurrent creations on all nodes
        return int(
            await self.c.fetchval(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1) ON CONFLICT (name) DO UPDATE"
                " SET value = greatest(excluded.value, counters.value + 1) RETURNING value",
                floor,
            )
        )

    async def insert_mailbox(
        self, account_id: int, name: str, uidvalidity: int, special_use: str | None
    ) -> int:
        try:
            mid = await self.c.fetchval(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " VALUES ($1,$2,$3,1,1,$4) RETURNING id",
                account_id,
                name,
                uidvalidity,
                special_use,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"mailbox {name} already exists") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"account {account_id} does not exist") from None
        return int(mid)

    async def mailbox(self, account_id: int, name: str) -> Mailbox | None:
        r = await self.c.fetchrow(
            f"SELECT {MB_COLS} FROM mailboxes WHERE account_id=$1 AND name=$2", account_id, name
        )
        return mailbox_row(r) if r else None

    async def mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        r = await self.c.fetchrow(f"SELECT {MB_COLS} FROM mailboxes WHERE id=$1", mailbox_id)
        return mailbox_row(r) if r else None

    async def mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self.c.fetch(
            f"SELECT {MB_COLS} FROM mailboxes WHERE account_id=$1 ORDER BY name", account_id
        )
        return [mailbox_row(r) for r in rows]

    async def mailbox_ids(self, account_id: int) -> list[int]:
        return [
            int(r[0]) for r in await self.c.fetch("SELECT id FROM mailboxes WHERE account_id=$1", account_id)
        ]

    async def rename_mailbox(self, mailbox_id: int, name: str) -> Mailbox | None:
        try:
            r = await self.c.fetchrow(
                f"UPDATE mailboxes SET name=$1 WHERE id=$2 RETURNING {MB_COLS}", name, mailbox_id
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return mailbox_row(r) if r else None

    async def delete_mailbox(self, mailbox_id: int) -> tuple[int, list[tuple[str, int]]] | None:
        acc = await self.c.fetchval("SELECT account_id FROM mailboxes WHERE id=$1 FOR UPDATE", mailbox_id)
        if acc is None:
            return None
        rows = await self.c.fetch(
            "DELETE FROM messages WHERE mailbox_id=$1 RETURNING blob_key, size", mailbox_id
        )
        await self.c.execute("DELETE FROM expunged WHERE mailbox_id=$1", mailbox_id)
        await self.c.execute("DELETE FROM mailboxes WHERE id=$1", mailbox_id)
        return int(acc), [(str(r[0]), int(r[1])) for r in rows]

    async def subscriptions(self, account_id: int) -> list[str]:
        rows = await self.c.fetch(
            "SELECT name FROM subscriptions WHERE account_id=$1 ORDER BY name", account_id
        )
        return [str(r[0]) for r in rows]

    async def set_subscription(self, account_id: int, name: str, subscribed: bool) -> bool:
        if subscribed:
            st = await self.c.execute(
                "INSERT INTO subscriptions VALUES ($1,$2) ON CONFLICT DO NOTHING", account_id, name
            )
        else:
            st = await self.c.execute(
                "DELETE FROM subscriptions WHERE account_id=$1 AND name=$2", account_id, name
            )
        return not st.endswith(" 0")

    async def metadata(self, account_id: int, mailbox: str, key: str) -> str | None:
        v = await self.c.fetchval(
            "SELECT value FROM metadata WHERE account_id=$1 AND mailbox=$2 AND key=$3",
            account_id,
            mailbox,
            key,
        )
        return None if v is None else str(v)

    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> bool:
        if value is None:
            st = await self.c.execute(
                "DELETE FROM metadata WHERE account_id=$1 AND mailbox=$2 AND key=$3", account_id, mailbox, key
            )
        else:
            st = await self.c.execute(
                "INSERT INTO metadata VALUES ($1,$2,$3,$4) ON CONFLICT (account_id, mailbox, key)"
                " DO UPDATE SET value=excluded.value",
                account_id,
                mailbox,
                key,
                value,
            )
        return not st.endswith(" 0")

    async def acl(self, mailbox_id: int) -> list[tuple[str, str]]:
        rows = await self.c.fetch(
            "SELECT identifier, rights FROM acl WHERE mailbox_id=$1 ORDER BY identifier", mailbox_id
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def set_acl(self, mailbox_id: int, identifier: str, rights: str | None) -> bool:
        if rights is None:
            st = await self.c.execute(
                "DELETE FROM acl WHERE mailbox_id=$1 AND identifier=$2", mailbox_id, identifier
            )
        else:
            st = await self.c.execute(
                "INSERT INTO acl VALUES ($1,$2,$3) ON CONFLICT (mailbox_id, identifier)"
                " DO UPDATE SET rights=excluded.rights",
                mailbox_id,
                identifier,
                rights,
            )
        return not st.endswith(" 0")

    async def acl_for(self, identifiers: Sequence[str]) -> list[tuple[int, str, str]]:
        rows = await self.c.fetch(
            "SELECT mailbox_id, identifier, rights FROM acl WHERE identifier = ANY($1::text[])",
            list(identifiers),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def drop_acl(
        self, mailbox_ids: Sequence[int], identifier: str | None, account_id: int | None
    ) -> None:
        await self.c.execute("DELETE FROM acl WHERE mailbox_id = ANY($1::bigint[])", list(mailbox_ids))
        await self.c.execute("DELETE FROM seen WHERE mailbox_id = ANY($1::bigint[])", list(mailbox_ids))
        if identifier is not None:
            await self.c.execute("DELETE FROM acl WHERE identifier=$1", identifier)
        if account_id is not None:
            await self.c.execute("DELETE FROM seen WHERE account_id=$1", account_id)

    async def seen_uids(self, mailbox_id: int, account_id: int) -> list[int]:
        rows = await self.c.fetch(
            "SELECT uid FROM seen WHERE mailbox_id=$1 AND account_id=$2", mailbox_id, account_id
        )
        return [int(r[0]) for r in rows]

    async def set_seen(self, mailbox_id: int, account_id: int, uids: Sequence[int], seen: bool) -> None:
        if seen:
            await self.c.execute(
                "INSERT INTO seen SELECT $1, $2, u FROM unnest($3::bigint[]) AS u ON CONFLICT DO NOTHING",
                mailbox_id,
                account_id,
                list(uids),
            )
        else:
            await self.c.execute(
                "DELETE FROM seen WHERE mailbox_id=$1 AND account_id=$2 AND uid = ANY($3::bigint[])",
                mailbox_id,
                account_id,
                list(uids),
            )

    # ---------------------------------------------------------------- messages
    async def lock_mailboxes(self, ids: Iterable[int]) -> None:
        wanted = sorted(set(ids))
        if wanted:
            await self.c.execute(
                "SELECT id FROM mailboxes WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", wanted
            )

    async def bump(self, mailbox_id: int, n_uids: int) -> tuple[int, int, int]:
        r = await self.c.fetchrow(
            "UPDATE mailboxes SET uidnext=uidnext+$2, highestmodseq=highestmodseq+1 WHERE id=$1"
            " RETURNING account_id, uidnext-$2, highestmodseq",
            mailbox_id,
            n_uids,
        )
        if r is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return int(r[0]), int(r[1]), int(r[2])

    async def raise_uidnext(self, mailbox_id: int, uid: int) -> None:
        await self.c.execute(
            "UPDATE mailboxes SET uidnext=GREATEST(uidnext, $2) WHERE id=$1", mailbox_id, uid
        )

    async def set_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> None:
        await self.c.execute("UPDATE mailboxes SET uidvalidity=$2 WHERE id=$1", mailbox_id, uidvalidity)

    async def message_by_delivery_key(self, mailbox_id: int, key: str) -> MessageRecord | None:
        r = await self.c.fetchrow(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=$1 AND delivery_key=$2", mailbox_id, key
        )
        return message_row(r) if r is not None else None

    async def messages(
        self, mailbox_id: int, uids: Sequence[int], *, for_share: bool = False
    ) -> list[MessageRecord]:
        rows = await self.c.fetch(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=$1 AND uid = ANY($2::bigint[])"
            + (" FOR SHARE" if for_share else ""),
            mailbox_id,
            list(uids),
        )
        return [message_row(r) for r in rows]

    async def all_messages(self, mailbox_id: int) -> list[MessageRecord]:
        rows = await self.c.fetch(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=$1 ORDER BY uid", mailbox_id
        )
        return [message_row(r) for r in rows]

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        rows = await self.c.fetch(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=$1 AND modseq>$2 ORDER BY uid",
            mailbox_id,
            modseq,
        )
        return [message_row(r) for r in rows]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        rows = await self.c.fetch(
            "SELECT uid FROM expunged WHERE mailbox_id=$1 AND modseq>$2", mailbox_id, modseq
        )
        return [int(r[0]) for r in rows]  # the index on (mailbox_id, modseq) finds them

    async def insert_messages(self, rows: Sequence[tuple[MessageRecord, str | None]]) -> None:
        args = [
            (
                m.mailbox_id,
                m.uid,
                m.modseq,
                sorted(m.flags),
                m.internaldate,
                m.size,
                m.blob_key,
                m.saved,
                m.emailid or emailid_for_blob(m.blob_key),
                dk,
            )
            for m, dk in rows
        ]
        sql = f"INSERT INTO messages({MSG_COLS}, delivery_key) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
        if len(args) == 1:
            await self.c.execute(sql, *args[0])
        elif args:
            await self.c.executemany(sql, args)

    async def set_flags(
        self, mailbox_id: int, changes: Sequence[tuple[int, frozenset[str]]], modseq: int
    ) -> None:
        await self.c.executemany(
            "UPDATE messages SET flags=$1, modseq=$2 WHERE mailbox_id=$3 AND uid=$4",
            [(sorted(new), modseq, mailbox_id, uid) for uid, new in changes],
        )

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[tuple[int, str, int]]:
        rows = await self.c.fetch(
            "DELETE FROM messages WHERE mailbox_id=$1 AND uid = ANY($2::bigint[]) RETURNING uid, blob_key, size",
            mailbox_id,
            list(uids),
        )
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def remember_expunged(self, mailbox_id: int, uids: Sequence[int], modseq: int) -> None:
        await self.c.execute(
            "INSERT INTO expunged(mailbox_id, uid, modseq) SELECT $1, u, $3 FROM unnest($2::bigint[]) AS u"
            " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq=excluded.modseq",
            mailbox_id,
            list(uids),
            modseq,
        )

    async def adjust_usage(self, deltas: dict[int, tuple[int, int]]) -> None:
        for acc in sorted(deltas):  # ascending account ids: the lock order
            n, size = deltas[acc]
            if n or size:
                await self.c.execute(
                    "UPDATE accounts SET used_messages=used_messages+$1, used_bytes=used_bytes+$2 WHERE id=$3",
                    n,
                    size,
                    acc,
                )

    async def usage(self, account_id: int) -> Usage | None:
        r = await self.c.fetchrow("SELECT used_bytes, used_messages FROM accounts WHERE id=$1", account_id)
        return Usage(int(r[0]), int(r[1])) if r is not None else None

    async def unreferenced(self, keys: Iterable[str]) -> list[str]:
        uniq = sorted(set(keys))
        if not uniq:
            return []
        rows = await self.c.fetch(
            "SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_key=k)"
            " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_key=k)",
            uniq,
        )
        return [str(r[0]) for r in rows]

    async def put_blob(self, key: str, data: bytes) -> None:
        await self.c.execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, data)

    async def delete_blobs(self, keys: Sequence[str]) -> None:
        if keys and self.db_blobs:  # S3 blobs go after commit (Backend.delete_external_blobs)
            await self.c.execute("DELETE FROM blobs WHERE key = ANY($1::text[])", list(keys))

    async def raise_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
        # one statement under the row lock of INSERT ... ON CONFLICT: SET reads the old row
        v = await self.c.fetchval(
            "INSERT INTO recent(mailbox_id, uidvalidity, uid, prev) VALUES ($1,$2,$3,0)"
            " ON CONFLICT (mailbox_id) DO UPDATE SET"
            " prev = CASE WHEN recent.uidvalidity = excluded.uidvalidity THEN recent.uid ELSE 0 END,"
            " uid = CASE WHEN recent.uidvalidity = excluded.uidvalidity"
            " THEN GREATEST(recent.uid, excluded.uid) ELSE excluded.uid END,"
            " uidvalidity = excluded.uidvalidity"
            " RETURNING prev",
            mailbox_id,
            uidvalidity,
            up_to_uid,
        )
        return int(v or 0)

    async def recent(self, mailbox_id: int) -> tuple[int, int] | None:
        r = await self.c.fetchrow("SELECT uidvalidity, uid FROM recent WHERE mailbox_id=$1", mailbox_id)
        return (int(r[0]), int(r[1])) if r is not None else None
