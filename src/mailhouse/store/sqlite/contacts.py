"""SQLite primitives for the address book (contacts, collected recipients); the rules are in
`store/contacts.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailhouse.store.backend import ContactRow, contact_row

_COLS = "uid, name, emails, notes, categories, updated"


class ContactsTx:
    c: sqlite3.Connection

    async def contact_rows(self, account_id: int) -> list[ContactRow]:
        rows = self.c.execute(f"SELECT {_COLS} FROM contacts WHERE account_id = ?", (account_id,)).fetchall()
        return [contact_row(r) for r in rows]

    async def contact_row(self, account_id: int, uid: str) -> ContactRow | None:
        r = self.c.execute(
            f"SELECT {_COLS} FROM contacts WHERE account_id = ? AND uid = ?", (account_id, uid)
        ).fetchone()
        return None if r is None else contact_row(r)

    async def count_contacts(self, account_id: int) -> int:
        return int(
            self.c.execute("SELECT count(*) FROM contacts WHERE account_id = ?", (account_id,)).fetchone()[0]
        )

    async def put_contact_row(self, account_id: int, row: ContactRow) -> None:
        self.c.execute(
            f"INSERT OR REPLACE INTO contacts(account_id, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, *row),
        )

    async def delete_contact_row(self, account_id: int, uid: str) -> bool:
        cur = self.c.execute("DELETE FROM contacts WHERE account_id = ? AND uid = ?", (account_id, uid))
        return cur.rowcount > 0

    async def add_collected(self, account_id: int, rows: Sequence[tuple[str, str]], now: float) -> None:
        self.c.executemany(
            "INSERT INTO collected_addrs(account_id, address, name, last_used, count) VALUES (?, ?, ?, ?, 1)"
            " ON CONFLICT(account_id, address) DO UPDATE SET count = count + 1,"
            " last_used = max(last_used, excluded.last_used),"
            " name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END",
            [(account_id, a, n, now) for a, n in rows],
        )

    async def collected_rows(self, account_id: int) -> list[tuple[str, str, float, int]]:
        rows = self.c.execute(
            "SELECT address, name, last_used, count FROM collected_addrs WHERE account_id = ?"
            " ORDER BY last_used DESC, address",
            (account_id,),
        ).fetchall()
        return [(str(r[0]), str(r[1]), float(r[2]), int(r[3])) for r in rows]

    async def trim_collected(self, account_id: int, keep: int) -> None:
        self.c.execute(
            "DELETE FROM collected_addrs WHERE account_id = ? AND address NOT IN (SELECT address FROM"
            " collected_addrs WHERE account_id = ? ORDER BY last_used DESC, address LIMIT ?)",
            (account_id, account_id, keep),
        )
