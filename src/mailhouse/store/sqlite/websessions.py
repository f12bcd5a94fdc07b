"""SQLite primitives for webmail sessions and per-user settings; the rules are in
`store/websessions.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3

from mailhouse.store.api import WebSession

COLS = "id_hash, account_id, csrf, created, last_seen, expires, client"


def _session(r: tuple[object, ...]) -> WebSession:
    return WebSession(
        str(r[0]), int(str(r[1])), str(r[2]), float(str(r[3])), float(str(r[4])), float(str(r[5])), str(r[6])
    )


class WebSessionsTx:
    c: sqlite3.Connection

    async def insert_web_session(self, session: WebSession) -> None:
        s = session
        self.c.execute(
            f"INSERT INTO web_sessions({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.id_hash, s.account_id, s.csrf, s.created, s.last_seen, s.expires, s.client),
        )

    async def web_session(self, id_hash: str) -> WebSession | None:
        row = self.c.execute(f"SELECT {COLS} FROM web_sessions WHERE id_hash = ?", (id_hash,)).fetchone()
        return _session(row) if row else None

    async def web_sessions(self, account_id: int) -> list[WebSession]:
        rows = self.c.execute(
            f"SELECT {COLS} FROM web_sessions WHERE account_id = ? ORDER BY created, id_hash", (account_id,)
        ).fetchall()
        return [_session(r) for r in rows]

    async def set_web_session_seen(self, id_hash: str, at: float) -> None:
        self.c.execute("UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (at, id_hash))

    async def delete_web_session(self, id_hash: str) -> bool:
        return self.c.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,)).rowcount > 0

    async def delete_web_sessions(self, account_id: int, keep: str, expired_before: float | None) -> int:
        # no expiry bound: every session (expires is never below zero)
        before = float("inf") if expired_before is None else expired_before
        q = "DELETE FROM web_sessions WHERE account_id = ? AND id_hash <> ? AND expires < ?"
        return int(self.c.execute(q, (account_id, keep, before)).rowcount)

    async def user_settings(self, account_id: int) -> list[tuple[str, str]]:
        rows = self.c.execute(
            "SELECT key, value FROM user_settings WHERE account_id = ? ORDER BY key", (account_id,)
        ).fetchall()
        return [(str(k), str(v)) for k, v in rows]

    async def set_user_setting(self, account_id: int, key: str, value: str | None) -> None:
        if value is None:
            self.c.execute("DELETE FROM user_settings WHERE account_id = ? AND key = ?", (account_id, key))
        else:
            self.c.execute(
                "INSERT OR REPLACE INTO user_settings(account_id, key, value) VALUES (?, ?, ?)",
                (account_id, key, value),
            )
