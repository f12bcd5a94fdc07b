"""PostgreSQL primitives for the mail queue (rows and leases); the rules are in `store/queue.py`.

Part of `PgTx` (`store/postgres/backend.py`). `due_entries` uses ``FOR UPDATE SKIP LOCKED``:
rows a concurrent claim on another node holds are skipped, never waited for.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from mailhouse.store.api import AlreadyExists, QueueEntry, QueueRecipient
from mailhouse.store.postgres.engine import Conn, Row

Q_COLS = (
    "id, sender, recipients, blob_key, size, created, next_attempt, attempts, ret, envid, warned,"
    " lease_owner, lease_until, extra"
)


def entry_row(r: Row) -> QueueEntry:
    return QueueEntry(
        id=r[0],
        sender=r[1],
        recipients=[QueueRecipient(**d) for d in r[2]],
        blob_key=r[3],
        size=int(r[4]),
        created=float(r[5]),
        next_attempt=float(r[6]),
        attempts=int(r[7]),
        ret=r[8],
        envid=r[9],
        warned=bool(r[10]),
        lease_owner=r[11],
        lease_until=float(r[12]),
        extra=dict(r[13]),
    )


def recipients(e: QueueEntry) -> list[dict[str, str]]:
    return [
        {
            "address": r.address,
            "status": str(r.status),
            "last_reply": r.last_reply,
            "notify": r.notify,
            "orcpt": r.orcpt,
        }
        for r in e.recipients
    ]


class QueueTx:
    c: Conn

    async def insert_queue(self, entry: QueueEntry) -> None:
        try:
            await self.c.execute(
                f"INSERT INTO queue({Q_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                entry.id,
                entry.sender,
                recipients(entry),
                entry.blob_key,
                entry.size,
                entry.created,
                entry.next_attempt,
                entry.attempts,
                entry.ret,
                entry.envid,
                entry.warned,
                entry.lease_owner,
                entry.lease_until,
                entry.extra,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"queue entry {entry.id} already exists") from None

    async def due_entries(self, now: float, limit: int) -> list[QueueEntry]:
        rows = await self.c.fetch(
            f"SELECT {Q_COLS} FROM queue WHERE next_attempt<=$1 AND lease_until<$1"
            " ORDER BY next_attempt, id LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [entry_row(r) for r in rows]

    async def lease(self, ids: Sequence[str], owner: str, until: float) -> None:
        await self.c.execute(
            "UPDATE queue SET lease_owner=$2, lease_until=$3 WHERE id = ANY($1::text[])",
            list(ids),
            owner,
            until,
        )

    async def renew_leases(self, owner: str, until: float) -> int:
        status = await self.c.execute(
            "UPDATE queue SET lease_until=$2 WHERE lease_owner=$1 AND lease_owner<>''", owner, until
        )
        return int(status.rpartition(" ")[2])

    async def release_leases(self, prefix: str, keep: str) -> int:
        status = await self.c.execute(
            "UPDATE queue SET lease_owner='', lease_until=0"
            " WHERE left(lease_owner, $2)=$1 AND left(lease_owner, $4)<>$3",
            prefix,
            len(prefix),
            keep,
            len(keep),
        )
        return int(status.rpartition(" ")[2])

    async def update_queue(self, entry: QueueEntry) -> None:
        await self.c.execute(
            "UPDATE queue SET recipients=$1, next_attempt=$2, attempts=$3, warned=$4, lease_owner='', lease_until=0,"
            " extra=$5 WHERE id=$6",
            recipients(entry),
            entry.next_attempt,
            entry.attempts,
            entry.warned,
            entry.extra,
            entry.id,
        )

    async def delete_queue(self, entry_id: str) -> str | None:
        key = await self.c.fetchval("DELETE FROM queue WHERE id=$1 RETURNING blob_key", entry_id)
        return None if key is None else str(key)

    async def queue_entry(self, entry_id: str) -> QueueEntry | None:
        r = await self.c.fetchrow(f"SELECT {Q_COLS} FROM queue WHERE id=$1", entry_id)
        return entry_row(r) if r else None

    async def queue_size(self) -> tuple[int, float | None]:
        r = await self.c.fetchrow("SELECT count(*) AS n, min(created) AS oldest FROM queue")
        return int(r["n"]), None if r["oldest"] is None else float(r["oldest"])

    async def queue_entries(self) -> list[QueueEntry]:
        return [entry_row(r) for r in await self.c.fetch(f"SELECT {Q_COLS} FROM queue ORDER BY created")]
