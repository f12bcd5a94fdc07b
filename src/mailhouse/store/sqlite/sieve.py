"""SQLite primitives for Sieve scripts; the rules are in `store/sieve.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3


class SieveTx:
    c: sqlite3.Connection

    async def sieve_script_rows(self, account_id: int) -> list[tuple[str, bool, int]]:
        rows = self.c.execute(
            "SELECT name, active, size FROM sieve_scripts WHERE account_id = ? ORDER BY name", (account_id,)
        ).fetchall()
        return [(str(r[0]), bool(r[1]), int(r[2])) for r in rows]

    async def sieve_script_content(self, account_id: int, name: str) -> str | None:
        row = self.c.execute(
            "SELECT content FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
        ).fetchone()
        return None if row is None else str(row[0])

    async def sieve_active_row(self, account_id: int) -> tuple[str, str] | None:
        row = self.c.execute(
            "SELECT name, content FROM sieve_scripts WHERE account_id = ? AND active = 1", (account_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    async def upsert_sieve_script(
        self, account_id: int, name: str, content: str, size: int, now: float
    ) -> None:
        self.c.execute(
            "INSERT INTO sieve_scripts(account_id, name, content, size, active, updated) VALUES (?, ?, ?, ?, 0, ?)"
            " ON CONFLICT(account_id, name) DO UPDATE SET content = excluded.content, size = excluded.size,"
            " updated = excluded.updated",
            (account_id, name, content, size, now),
        )

    async def set_sieve_active(self, account_id: int, name: str | None) -> None:
        self.c.execute(
            "UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1", (account_id,)
        )
        if name is not None:
            self.c.execute(
                "UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?", (account_id, name)
            )

    async def delete_sieve_script(self, account_id: int, name: str) -> bool:
        cur = self.c.execute(
            "DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
        )
        return cur.rowcount > 0

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> bool:
        cur = self.c.execute(
            "UPDATE sieve_scripts SET name = ? WHERE account_id = ? AND name = ?", (new, account_id, old)
        )
        return cur.rowcount > 0
