"""SQLite primitives for the mail index: mailboxes, messages, flags, expunged memory, usage,
subscriptions, metadata, \\Recent marks, in-transaction blobs.

Rows only; the rules are in `store/mail.py`. Part of `SqliteTx` (`store/sqlite/backend.py`).
Every statement that touches many UIDs is set-based (``json_each``): a POP3 UPDATE expunges a
whole maildrop with one DELETE. Statements with RETURNING are stepped to the end (a half-read
RETURNING statement breaks the next group-committed job).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from mailhouse.store.api import AlreadyExists, Mailbox, MessageRecord, NotFound, Usage, emailid_for_blob
from mailhouse.store.sqlite.blobs import is_inline

MSG_COLS = "mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved, emailid"
MB_COLS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"

_FLAG_SETS: dict[str, frozenset[str]] = {}  # a mailbox has few distinct flag strings: share the sets
_FLAG_SETS_MAX = 4096  # bound on the interned strings (cleared when exceeded)
_NO_FLAGS: frozenset[str] = frozenset()


def flags_to_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def text_to_flags(text: str) -> frozenset[str]:
    if not text:
        return _NO_FLAGS
    got = _FLAG_SETS.get(text)
    if got is None:
        if len(_FLAG_SETS) >= _FLAG_SETS_MAX:
            _FLAG_SETS.clear()
        got = _FLAG_SETS[text] = frozenset(text.split())
    return got


def message_row(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        mailbox_id=row[0],
        uid=row[1],
        modseq=row[2],
        flags=text_to_flags(row[3]),
        internaldate=row[4],
        size=row[5],
        blob_key=row[6],
        saved=row[7],
        emailid=row[8] or emailid_for_blob(row[6]),
    )


class MailTx:
    c: sqlite3.Connection

    # ---------------------------------------------------------------- mailboxes
    async def next_uidvalidity(self, floor: int) -> int:
        row = self.c.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone()
        uv = max(floor, (int(row[0]) + 1) if row else 0)
        self.c.execute("INSERT OR REPLACE INTO meta VALUES ('uidvalidity', ?)", (str(uv),))
        return uv

    async def insert_mailbox(
        self, account_id: int, name: str, uidvalidity: int, special_use: str | None
    ) -> int:
        try:
            cur = self.c.execute(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " VALUES (?,?,?,?,?,?)",
                (account_id, name, uidvalidity, 1, 1, special_use),
            )
        except sqlite3.IntegrityError as e:
            if "FOREIGN KEY" in str(e):
                raise NotFound(f"account {account_id} does not exist") from None
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return int(cur.lastrowid or 0)

    async def mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = self.c.execute(  # UNIQUE(account_id, name)
            f"SELECT {MB_COLS} FROM mailboxes WHERE account_id=? AND name=?", (account_id, name)
        ).fetchone()
        return Mailbox(*row) if row else None

    async def mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = self.c.execute(f"SELECT {MB_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        return Mailbox(*row) if row else None

    async def mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = self.c.execute(
            f"SELECT {MB_COLS} FROM mailboxes WHERE account_id=? ORDER BY name", (account_id,)
        )
        return [Mailbox(*r) for r in rows.fetchall()]

    async def mailbox_ids(self, account_id: int) -> list[int]:
        return [
            int(r[0]) for r in self.c.execute("SELECT id FROM mailboxes WHERE account_id=?", (account_id,))
        ]

    async def rename_mailbox(self, mailbox_id: int, name: str) -> Mailbox | None:
        row = self.c.execute(f"SELECT {MB_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        if not row:
            return None
        try:
            self.c.execute("UPDATE mailboxes SET name=? WHERE id=?", (name, mailbox_id))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return Mailbox(row[0], row[1], name, row[3], row[4], row[5], row[6])

    async def delete_mailbox(self, mailbox_id: int) -> tuple[int, list[tuple[str, int]]] | None:
        c = self.c
        row = c.execute("SELECT account_id FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        if not row:
            return None
        rows = c.execute(
            "DELETE FROM messages WHERE mailbox_id=? RETURNING blob_key, size", (mailbox_id,)
        ).fetchall()
        c.execute("DELETE FROM expunged WHERE mailbox_id=?", (mailbox_id,))
        c.execute("DELETE FROM mailboxes WHERE id=?", (mailbox_id,))
        return int(row[0]), [(str(r[0]), int(r[1])) for r in rows]

    async def subscriptions(self, account_id: int) -> list[str]:
        rows = self.c.execute(
            "SELECT name FROM subscriptions WHERE account_id=? ORDER BY name", (account_id,)
        )
        return [str(r[0]) for r in rows.fetchall()]

    async def set_subscription(self, account_id: int, name: str, subscribed: bool) -> bool:
        if subscribed:
            cur = self.c.execute("INSERT OR IGNORE INTO subscriptions VALUES (?,?)", (account_id, name))
        else:
            cur = self.c.execute(
                "DELETE FROM subscriptions WHERE account_id=? AND name=?", (account_id, name)
            )
        return cur.rowcount > 0

    async def metadata(self, account_id: int, mailbox: str, key: str) -> str | None:
        row = self.c.execute(
            "SELECT value FROM metadata WHERE account_id=? AND mailbox=? AND key=?",
            (account_id, mailbox, key),
        ).fetchone()
        return str(row[0]) if row else None

    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> bool:
        if value is None:
            cur = self.c.execute(
                "DELETE FROM metadata WHERE account_id=? AND mailbox=? AND key=?", (account_id, mailbox, key)
            )
        else:
            cur = self.c.execute(
                "INSERT OR REPLACE INTO metadata VALUES (?,?,?,?)", (account_id, mailbox, key, value)
            )
        return cur.rowcount > 0

    async def acl(self, mailbox_id: int) -> list[tuple[str, str]]:
        rows = self.c.execute(
            "SELECT identifier, rights FROM acl WHERE mailbox_id=? ORDER BY identifier", (mailbox_id,)
        ).fetchall()
        return [(str(i), str(r)) for i, r in rows]

    async def set_acl(self, mailbox_id: int, identifier: str, rights: str | None) -> bool:
        if rights is None:
            cur = self.c.execute(
                "DELETE FROM acl WHERE mailbox_id=? AND identifier=?", (mailbox_id, identifier)
            )
        else:
            cur = self.c.execute(
                "INSERT OR REPLACE INTO acl VALUES (?,?,?)", (mailbox_id, identifier, rights)
            )
        return cur.rowcount > 0

    async def acl_for(self, identifiers: Sequence[str]) -> list[tuple[int, str, str]]:
        rows = self.c.execute(
            "SELECT mailbox_id, identifier, rights FROM acl WHERE identifier IN (SELECT value FROM json_each(?))",
            (json.dumps(list(identifiers)),),
        ).fetchall()
        return [(int(m), str(i), str(r)) for m, i, r in rows]

    async def drop_acl(
        self, mailbox_ids: Sequence[int], identifier: str | None, account_id: int | None
    ) -> None:
        ids = json.dumps(list(mailbox_ids))
        self.c.execute("DELETE FROM acl WHERE mailbox_id IN (SELECT value FROM json_each(?))", (ids,))
        self.c.execute("DELETE FROM seen WHERE mailbox_id IN (SELECT value FROM json_each(?))", (ids,))
        if identifier is not None:
            self.c.execute("DELETE FROM acl WHERE identifier=?", (identifier,))
        if account_id is not None:
            self.c.execute("DELETE FROM seen WHERE account_id=?", (account_id,))

    async def seen_uids(self, mailbox_id: int, account_id: int) -> list[int]:
        rows = self.c.execute(
            "SELECT uid FROM seen WHERE mailbox_id=? AND account_id=?", (mailbox_id, account_id)
        ).fetchall()
        return [int(r[0]) for r in rows]

    async def set_seen(self, mailbox_id: int, account_id: int, uids: Sequence[int], seen: bool) -> None:
        sql = (
            "INSERT OR IGNORE INTO seen SELECT ?, ?, value FROM json_each(?)"
            if seen
            else "DELETE FROM seen WHERE mailbox_id=? AND account_id=? AND uid IN (SELECT value FROM json_each(?))"
        )
        self.c.execute(sql, (mailbox_id, account_id, json.dumps(list(uids))))

    # ---------------------------------------------------------------- messages
    async def lock_mailboxes(self, ids: Iterable[int]) -> None:
        """Nothing to do: one writer per database (the writer thread and the cross-process flock)."""

    async def bump(self, mailbox_id: int, n_uids: int) -> tuple[int, int, int]:
        rows = self.c.execute(
            "UPDATE mailboxes SET uidnext=uidnext+?, highestmodseq=highestmodseq+1 WHERE id=?"
            " RETURNING account_id, uidnext-?, highestmodseq",
            (n_uids, mailbox_id, n_uids),
        ).fetchall()  # RETURNING must be stepped to the end, or the statement stays busy
        if not rows:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])

    async def raise_uidnext(self, mailbox_id: int, uid: int) -> None:
        self.c.execute("UPDATE mailboxes SET uidnext=max(uidnext, ?) WHERE id=?", (uid, mailbox_id))

    async def set_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> None:
        self.c.execute("UPDATE mailboxes SET uidvalidity=? WHERE id=?", (uidvalidity, mailbox_id))

    async def message_by_delivery_key(self, mailbox_id: int, key: str) -> MessageRecord | None:
        row = self.c.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=? AND delivery_key=?", (mailbox_id, key)
        ).fetchone()
        return message_row(row) if row else None

    async def messages(
        self, mailbox_id: int, uids: Sequence[int], *, for_share: bool = False
    ) -> list[MessageRecord]:
        if len(uids) == 1:  # the common single-message STORE/COPY: the primary key directly
            row = self.c.execute(
                f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=? AND uid=?", (mailbox_id, uids[0])
            ).fetchone()
            return [message_row(row)] if row else []
        rows = self.c.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=? AND uid IN (SELECT value FROM json_each(?))",
            (mailbox_id, json.dumps(list(uids))),
        ).fetchall()
        return [message_row(r) for r in rows]

    async def all_messages(self, mailbox_id: int) -> list[MessageRecord]:
        rows = self.c.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=? ORDER BY uid", (mailbox_id,)
        )
        return [message_row(r) for r in rows.fetchall()]

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        rows = self.c.execute(  # index messages_modseq
            f"SELECT {MSG_COLS} FROM messages WHERE mailbox_id=? AND modseq>? ORDER BY uid",
            (mailbox_id, modseq),
        ).fetchall()
        return [message_row(r) for r in rows]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        rows = self.c.execute(  # index expunged_modseq: only the newer expunges
            "SELECT uid FROM expunged WHERE mailbox_id=? AND modseq>?", (mailbox_id, modseq)
        ).fetchall()
        return [int(r[0]) for r in rows]

    async def insert_messages(self, rows: Sequence[tuple[MessageRecord, str | None]]) -> None:
        for m, dk in rows:  # one execute per row (see blobs.HybridBlobStore._delete_inline on executemany)
            self.c.execute(
                f"INSERT INTO messages({MSG_COLS}, delivery_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    m.mailbox_id,
                    m.uid,
                    m.modseq,
                    flags_to_text(m.flags),
                    m.internaldate,
                    m.size,
                    m.blob_key,
                    m.saved,
                    m.emailid or emailid_for_blob(m.blob_key),
                    dk,
                ),
            )

    async def set_flags(
        self, mailbox_id: int, changes: Sequence[tuple[int, frozenset[str]]], modseq: int
    ) -> None:
        for uid, flags in changes:
            self.c.execute(
                "UPDATE messages SET flags=?, modseq=? WHERE mailbox_id=? AND uid=?",
                (flags_to_text(flags), modseq, mailbox_id, uid),
            )

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[tuple[int, str, int]]:
        rows = self.c.execute(
            "DELETE FROM messages WHERE mailbox_id=? AND uid IN (SELECT value FROM json_each(?))"
            " RETURNING uid, blob_key, size",
            (mailbox_id, json.dumps(list(uids))),
        ).fetchall()  # stepped to the end
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def remember_expunged(self, mailbox_id: int, uids: Sequence[int], modseq: int) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO expunged SELECT ?, value, ? FROM json_each(?)",
            (mailbox_id, modseq, json.dumps(list(uids))),
        )

    async def adjust_usage(self, deltas: dict[int, tuple[int, int]]) -> None:
        for acc in sorted(deltas):
            n, size = deltas[acc]
            if n or size:
                self.c.execute(
                    "UPDATE accounts SET used_messages=used_messages+?, used_bytes=used_bytes+? WHERE id=?",
                    (n, size, acc),
                )

    async def usage(self, account_id: int) -> Usage | None:
        row = self.c.execute(
            "SELECT used_bytes, used_messages FROM accounts WHERE id=?", (account_id,)
        ).fetchone()
        return Usage(row[0], row[1]) if row else None

    async def unreferenced(self, keys: Iterable[str]) -> list[str]:
        uniq = sorted(set(keys))
        if not uniq:
            return []
        return [
            str(r[0])
            for r in self.c.execute(
                "SELECT value FROM json_each(?) WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_key=value)"
                " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_key=value)",
                (json.dumps(uniq),),
            ).fetchall()
        ]

    async def put_blob(self, key: str, data: bytes) -> None:
        self.c.execute("INSERT INTO blobs VALUES (?, ?)", (key, data))

    async def delete_blobs(self, keys: Sequence[str]) -> None:
        inline = [k for k in keys if is_inline(k)]  # files go after commit (Backend.delete_external_blobs)
        if inline:
            self.c.execute(
                "DELETE FROM blobs WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(inline),)
            )

    async def raise_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
        # one statement: the SET expressions read the old row, so ``prev`` is the old value
        rows = self.c.execute(
            "INSERT INTO recent(mailbox_id, uidvalidity, uid, prev) VALUES (?,?,?,0)"
            " ON CONFLICT(mailbox_id) DO UPDATE SET"
            " prev = CASE WHEN recent.uidvalidity = excluded.uidvalidity THEN recent.uid ELSE 0 END,"
            " uid = CASE WHEN recent.uidvalidity = excluded.uidvalidity"
            " THEN MAX(recent.uid, excluded.uid) ELSE excluded.uid END,"
            " uidvalidity = excluded.uidvalidity"
            " RETURNING prev",
            (mailbox_id, uidvalidity, up_to_uid),
        ).fetchall()  # RETURNING stepped to the end
        return int(rows[0][0]) if rows else 0

    async def recent(self, mailbox_id: int) -> tuple[int, int] | None:
        row = self.c.execute(
            "SELECT uidvalidity, uid FROM recent WHERE mailbox_id=?", (mailbox_id,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None
