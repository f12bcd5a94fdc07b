"""SQLite primitives for shared counters and marks; the rules are in `store/limits.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3

from mailhouse.store.api import Mark


class LimitsTx:
    c: sqlite3.Connection

    async def lock_limit(self, key: str) -> None:
        return None  # the SQLite writer is one thread: transactions are serialised already

    async def insert_event(self, key: str, at: float, weight: int) -> None:
        self.c.execute("INSERT INTO limit_events(key, at, weight) VALUES (?, ?, ?)", (key, at, weight))

    async def delete_events(self, key: str, before: float) -> None:
        self.c.execute("DELETE FROM limit_events WHERE key = ? AND at < ?", (key, before))

    async def sum_events(self, key: str, since: float) -> int:
        row = self.c.execute(
            "SELECT COALESCE(SUM(weight), 0) FROM limit_events WHERE key = ? AND at >= ?", (key, since)
        ).fetchone()
        return int(row[0])

    async def delete_all_events(self, key: str) -> None:
        self.c.execute("DELETE FROM limit_events WHERE key = ?", (key,))

    async def upsert_mark(self, key: str, value: str, expires: float) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO limit_marks(key, value, expires) VALUES (?, ?, ?)", (key, value, expires)
        )

    async def mark(self, key: str) -> Mark | None:
        row = self.c.execute("SELECT key, value, expires FROM limit_marks WHERE key = ?", (key,)).fetchone()
        return Mark(row[0], row[1], float(row[2])) if row else None

    async def marks(self, prefix: str) -> list[Mark]:
        rows = self.c.execute(
            "SELECT key, value, expires FROM limit_marks WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        ).fetchall()
        return [Mark(r[0], r[1], float(r[2])) for r in rows]

    async def delete_mark(self, key: str) -> bool:
        return self.c.execute("DELETE FROM limit_marks WHERE key = ?", (key,)).rowcount > 0

    async def purge_limits(self, now: float, events_before: float) -> int:
        n = self.c.execute("DELETE FROM limit_marks WHERE expires <= ?", (now,)).rowcount
        return n + self.c.execute("DELETE FROM limit_events WHERE at < ?", (events_before,)).rowcount
