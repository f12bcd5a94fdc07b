"""PostgreSQL primitives for the address book (contacts, collected recipients); the rules are in
`store/contacts.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhouse.store.backend import ContactRow, contact_row
from mailhouse.store.postgres.engine import Conn

_COLS = "uid, name, emails, notes, categories, updated"


class ContactsTx:
    c: Conn

    async def contact_rows(self, account_id: int) -> list[ContactRow]:
        rows = await self.c.fetch(f"SELECT {_COLS} FROM contacts WHERE account_id = $1", account_id)
        return [contact_row(r) for r in rows]

    async def contact_row(self, account_id: int, uid: str) -> ContactRow | None:
        r = await self.c.fetchrow(
            f"SELECT {_COLS} FROM contacts WHERE account_id = $1 AND uid = $2", account_id, uid
        )
        return None if r is None else contact_row(r)

    async def count_contacts(self, account_id: int) -> int:
        return int(await self.c.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account_id))

    async def put_contact_row(self, account_id: int, row: ContactRow) -> None:
        await self.c.execute(
            f"INSERT INTO contacts(account_id, {_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (account_id, uid) DO UPDATE SET name = EXCLUDED.name, emails = EXCLUDED.emails,"
            " notes = EXCLUDED.notes, categories = EXCLUDED.categories, updated = EXCLUDED.updated",
            account_id,
            *row,
        )

    async def delete_contact_row(self, account_id: int, uid: str) -> bool:
        st = await self.c.execute("DELETE FROM contacts WHERE account_id = $1 AND uid = $2", account_id, uid)
        return int(st.rpartition(" ")[2]) > 0

    async def add_collected(self, account_id: int, rows: Sequence[tuple[str, str]], now: float) -> None:
        await self.c.execute(  # one statement, addresses in order (rows locked in one order)
            "INSERT INTO collected_addrs(account_id, address, name, last_used, count)"
            " SELECT $1, a, n, $4, 1 FROM unnest($2::text[], $3::text[]) AS u(a, n) ORDER BY a"
            " ON CONFLICT (account_id, address) DO UPDATE SET count = collected_addrs.count + 1,"
            " last_used = greatest(collected_addrs.last_used, EXCLUDED.last_used),"
            " name = CASE WHEN EXCLUDED.name = '' THEN collected_addrs.name ELSE EXCLUDED.name END",
            account_id,
            [a for a, _ in rows],
            [n for _, n in rows],
            now,
        )

    async def collected_rows(self, account_id: int) -> list[tuple[str, str, float, int]]:
        rows = await self.c.fetch(
            "SELECT address, name, last_used, count FROM collected_addrs WHERE account_id = $1"
            " ORDER BY last_used DESC, address",
            account_id,
        )
        return [(str(r[0]), str(r[1]), float(r[2]), int(r[3])) for r in rows]

    async def trim_collected(self, account_id: int, keep: int) -> None:
        await self.c.execute(
            "DELETE FROM collected_addrs WHERE account_id = $1 AND address NOT IN (SELECT address FROM"
            " collected_addrs WHERE account_id = $1 ORDER BY last_used DESC, address LIMIT $2)",
            account_id,
            keep,
        )
