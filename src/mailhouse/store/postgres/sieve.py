"""PostgreSQL primitives for Sieve scripts; the rules are in `store/sieve.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from mailhouse.store.postgres.engine import Conn


def _count(status: str) -> int:
    return int(status.rpartition(" ")[2])


class SieveTx:
    c: Conn

    async def sieve_script_rows(self, account_id: int) -> list[tuple[str, bool, int]]:
        rows = await self.c.fetch(
            "SELECT name, active, size FROM sieve_scripts WHERE account_id = $1 ORDER BY name", account_id
        )
        return [(str(r[0]), bool(r[1]), int(r[2])) for r in rows]

    async def sieve_script_content(self, account_id: int, name: str) -> str | None:
        v = await self.c.fetchval(
            "SELECT content FROM sieve_scripts WHERE account_id = $1 AND name = $2", account_id, name
        )
        return None if v is None else str(v)

    async def sieve_active_row(self, account_id: int) -> tuple[str, str] | None:
        row = await self.c.fetchrow(
            "SELECT name, content FROM sieve_scripts WHERE account_id = $1 AND active = 1", account_id
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def upsert_sieve_script(
        self, account_id: int, name: str, content: str, size: int, now: float
    ) -> None:
        await self.c.execute(
            "INSERT INTO sieve_scripts(account_id, name, content, size, active, updated)"
            " VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (account_id, name) DO UPDATE"
            " SET content = EXCLUDED.content, size = EXCLUDED.size, updated = EXCLUDED.updated",
            account_id,
            name,
            content,
            size,
            now,
        )

    async def set_sieve_active(self, account_id: int, name: str | None) -> None:
        await self.c.execute(
            "UPDATE sieve_scripts SET active = 0 WHERE account_id = $1 AND active = 1", account_id
        )
        if name is not None:
            await self.c.execute(
                "UPDATE sieve_scripts SET active = 1 WHERE account_id = $1 AND name = $2", account_id, name
            )

    async def delete_sieve_script(self, account_id: int, name: str) -> bool:
        st = await self.c.execute(
            "DELETE FROM sieve_scripts WHERE account_id = $1 AND name = $2", account_id, name
        )
        return _count(st) > 0

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> bool:
        st = await self.c.execute(
            "UPDATE sieve_scripts SET name = $1 WHERE account_id = $2 AND name = $3", new, account_id, old
        )
        return _count(st) > 0
