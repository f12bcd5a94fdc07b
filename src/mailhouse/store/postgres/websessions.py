"""PostgreSQL primitives for webmail sessions and per-user settings; the rules are in
`store/websessions.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from mailhouse.store.api import WebSession
from mailhouse.store.postgres.engine import Conn, Row

COLS = "id_hash, account_id, csrf, created, last_seen, expires, client"


def _session(r: Row) -> WebSession:
    return WebSession(r[0], int(r[1]), r[2], float(r[3]), float(r[4]), float(r[5]), r[6])


class WebSessionsTx:
    c: Conn

    async def insert_web_session(self, session: WebSession) -> None:
        s = session
        await self.c.execute(
            f"INSERT INTO web_sessions({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            s.id_hash,
            s.account_id,
            s.csrf,
            s.created,
            s.last_seen,
            s.expires,
            s.client,
        )

    async def web_session(self, id_hash: str) -> WebSession | None:
        row = await self.c.fetchrow(f"SELECT {COLS} FROM web_sessions WHERE id_hash = $1", id_hash)
        return _session(row) if row else None

    async def web_sessions(self, account_id: int) -> list[WebSession]:
        rows = await self.c.fetch(
            f"SELECT {COLS} FROM web_sessions WHERE account_id = $1 ORDER BY created, id_hash", account_id
        )
        return [_session(r) for r in rows]

    async def set_web_session_seen(self, id_hash: str, at: float) -> None:
        await self.c.execute("UPDATE web_sessions SET last_seen = $2 WHERE id_hash = $1", id_hash, at)

    async def delete_web_session(self, id_hash: str) -> bool:
        status = await self.c.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)
        return int(status.rpartition(" ")[2]) > 0

    async def delete_web_sessions(self, account_id: int, keep: str, expired_before: float | None) -> int:
        if expired_before is None:
            status = await self.c.execute(
                "DELETE FROM web_sessions WHERE account_id = $1 AND id_hash <> $2", account_id, keep
            )
        else:
            status = await self.c.execute(
                "DELETE FROM web_sessions WHERE account_id = $1 AND id_hash <> $2 AND expires < $3",
                account_id,
                keep,
                expired_before,
            )
        return int(status.rpartition(" ")[2])

    async def user_settings(self, account_id: int) -> list[tuple[str, str]]:
        rows = await self.c.fetch(
            "SELECT key, value FROM user_settings WHERE account_id = $1 ORDER BY key", account_id
        )
        return [(r[0], r[1]) for r in rows]

    async def set_user_setting(self, account_id: int, key: str, value: str | None) -> None:
        if value is None:
            await self.c.execute(
                "DELETE FROM user_settings WHERE account_id = $1 AND key = $2", account_id, key
            )
        else:
            await self.c.execute(
                "INSERT INTO user_settings(account_id, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (account_id, key) DO UPDATE SET value = EXCLUDED.value",
                account_id,
                key,
                value,
            )
