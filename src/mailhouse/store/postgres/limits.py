"""PostgreSQL primitives for shared counters and marks; the rules are in `store/limits.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from mailhouse.store.api import Mark
from mailhouse.store.postgres.engine import Conn


def _count(status: str) -> int:
    return int(status.rpartition(" ")[2])


class LimitsTx:
    c: Conn

    async def lock_limit(self, key: str) -> None:
        # a transaction-scoped advisory lock on the key's hash (collisions only serialise more)
        await self.c.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", key)

    async def insert_event(self, key: str, at: float, weight: int) -> None:
        await self.c.execute("INSERT INTO limit_events(key, at, weight) VALUES ($1, $2, $3)", key, at, weight)

    async def delete_events(self, key: str, before: float) -> None:
        await self.c.execute("DELETE FROM limit_events WHERE key = $1 AND at < $2", key, before)

    async def sum_events(self, key: str, since: float) -> int:
        v = await self.c.fetchval(
            "SELECT COALESCE(SUM(weight), 0) FROM limit_events WHERE key = $1 AND at >= $2", key, since
        )
        return int(v)

    async def delete_all_events(self, key: str) -> None:
        await self.c.execute("DELETE FROM limit_events WHERE key = $1", key)

    async def upsert_mark(self, key: str, value: str, expires: float) -> None:
        await self.c.execute(
            "INSERT INTO limit_marks(key, value, expires) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires",
            key,
            value,
            expires,
        )

    async def mark(self, key: str) -> Mark | None:
        r = await self.c.fetchrow("SELECT key, value, expires FROM limit_marks WHERE key = $1", key)
        return Mark(r[0], r[1], float(r[2])) if r else None

    async def marks(self, prefix: str) -> list[Mark]:
        rows = await self.c.fetch(
            "SELECT key, value, expires FROM limit_marks WHERE left(key, $1) = $2 ORDER BY key",
            len(prefix),
            prefix,
        )
        return [Mark(r[0], r[1], float(r[2])) for r in rows]

    async def delete_mark(self, key: str) -> bool:
        return _count(await self.c.execute("DELETE FROM limit_marks WHERE key = $1", key)) > 0

    async def purge_limits(self, now: float, events_before: float) -> int:
        n = _count(await self.c.execute("DELETE FROM limit_marks WHERE expires <= $1", now))
        return n + _count(await self.c.execute("DELETE FROM limit_events WHERE at < $1", events_before))
