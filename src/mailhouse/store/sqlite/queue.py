"""SQLite primitives for the mail queue (rows and leases); the rules are in `store/queue.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`). Recipients and extras are JSON text columns.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from mailhouse.store.api import AlreadyExists, QueueEntry, QueueRecipient

Q_COLS = (
    "id, sender, recipients, blob_key, size, created, next_attempt, attempts, ret, envid, warned,"
    " lease_owner, lease_until, extra"
)


def entry_row(r: Sequence[Any]) -> QueueEntry:
    rcpts = [QueueRecipient(**d) for d in json.loads(r[2])]
    return QueueEntry(
        id=r[0],
        sender=r[1],
        recipients=rcpts,
        blob_key=r[3],
        size=r[4],
        created=r[5],
        next_attempt=r[6],
        attempts=r[7],
        ret=r[8],
        envid=r[9],
        warned=bool(r[10]),
        lease_owner=r[11],
        lease_until=r[12],
        extra=json.loads(r[13]),
    )


def recipients_json(e: QueueEntry) -> str:
    return json.dumps(
        [
            {
                "address": r.address,
                "status": str(r.status),
                "last_reply": r.last_reply,
                "notify": r.notify,
                "orcpt": r.orcpt,
            }
            for r in e.recipients
        ]
    )


class QueueTx:
    c: sqlite3.Connection

    async def insert_queue(self, entry: QueueEntry) -> None:
        try:
            self.c.execute(
                f"INSERT INTO queue({Q_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.id,
                    entry.sender,
                    recipients_json(entry),
                    entry.blob_key,
                    entry.size,
                    entry.created,
                    entry.next_attempt,
                    entry.attempts,
                    entry.ret,
                    entry.envid,
                    int(entry.warned),
                    entry.lease_owner,
                    entry.lease_until,
                    json.dumps(entry.extra),
                ),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"queue entry {entry.id} already exists") from None

    async def due_entries(self, now: float, limit: int) -> list[QueueEntry]:
        rows = self.c.execute(  # the writer is serialised: nothing else is claiming
            f"SELECT {Q_COLS} FROM queue WHERE next_attempt<=? AND lease_until<? ORDER BY next_attempt, id LIMIT ?",
            (now, now, limit),
        ).fetchall()
        return [entry_row(r) for r in rows]

    async def lease(self, ids: Sequence[str], owner: str, until: float) -> None:
        self.c.execute(
            "UPDATE queue SET lease_owner=?, lease_until=? WHERE id IN (SELECT value FROM json_each(?))",
            (owner, until, json.dumps(list(ids))),
        )

    async def renew_leases(self, owner: str, until: float) -> int:
        cur = self.c.execute(
            "UPDATE queue SET lease_until=? WHERE lease_owner=? AND lease_owner<>''", (until, owner)
        )
        return cur.rowcount

    async def release_leases(self, prefix: str, keep: str) -> int:
        cur = self.c.execute(
            "UPDATE queue SET lease_owner='', lease_until=0"
            " WHERE substr(lease_owner, 1, ?)=? AND substr(lease_owner, 1, ?)<>?",
            (len(prefix), prefix, len(keep), keep),
        )
        return cur.rowcount

    async def update_queue(self, entry: QueueEntry) -> None:
        self.c.execute(
            "UPDATE queue SET recipients=?, next_attempt=?, attempts=?, warned=?, lease_owner='', lease_until=0,"
            " extra=? WHERE id=?",
            (
                recipients_json(entry),
                entry.next_attempt,
                entry.attempts,
                int(entry.warned),
                json.dumps(entry.extra),
                entry.id,
            ),
        )

    async def delete_queue(self, entry_id: str) -> str | None:
        rows = self.c.execute("DELETE FROM queue WHERE id=? RETURNING blob_key", (entry_id,)).fetchall()
        return str(rows[0][0]) if rows else None

    async def queue_entry(self, entry_id: str) -> QueueEntry | None:
        row = self.c.execute(f"SELECT {Q_COLS} FROM queue WHERE id=?", (entry_id,)).fetchone()
        return entry_row(row) if row else None

    async def queue_size(self) -> tuple[int, float | None]:
        n, oldest = self.c.execute("SELECT count(*), min(created) FROM queue").fetchone()
        return int(n), None if oldest is None else float(oldest)

    async def queue_entries(self) -> list[QueueEntry]:
        return [
            entry_row(r) for r in self.c.execute(f"SELECT {Q_COLS} FROM queue ORDER BY created").fetchall()
        ]
