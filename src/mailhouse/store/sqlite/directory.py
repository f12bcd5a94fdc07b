"""SQLite primitives for the directory: domains, accounts, aliases, DKIM keys, shared secrets.

Rows only; the rules (what may be removed, the special mailboxes of a new account) are in
`store/directory.py`. Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from mailhouse.store.api import Account, Alias, AlreadyExists, DkimKey, Domain, ScramKeys

ACC_COLS = (
    "id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
    " scram_salt, scram_iter, scram_stored, scram_server, created"
)


def account_row(r: Sequence[Any]) -> Account:
    scram = ScramKeys(r[7], r[8], r[9], r[10]) if r[7] is not None else None
    return Account(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), scram, r[11])


def scram_cols(scram: ScramKeys | None) -> tuple[Any, Any, Any, Any]:
    if scram is None:
        return (None, None, None, None)
    return (scram.salt, scram.iterations, scram.stored_key, scram.server_key)


class DirectoryTx:
    c: sqlite3.Connection

    async def directory_generation(self) -> int:
        row = self.c.execute("SELECT value FROM meta WHERE key='dirgen'").fetchone()
        return int(row[0]) if row else 0

    async def insert_domain(self, name: str, created: float) -> Domain:
        try:
            cur = self.c.execute("INSERT INTO domains(name, created) VALUES (?,?)", (name, created))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"domain {name} already exists") from None
        return Domain(int(cur.lastrowid or 0), name, created)

    async def domain(self, name: str) -> Domain | None:
        row = self.c.execute("SELECT id, name, created FROM domains WHERE name=?", (name,)).fetchone()
        return Domain(*row) if row else None

    async def domain_id(self, name: str, *, lock: bool = False, for_update: bool = False) -> int | None:
        row = self.c.execute(
            "SELECT id FROM domains WHERE name=?", (name,)
        ).fetchone()  # writer is serialised
        return int(row[0]) if row else None

    async def domains(self) -> list[Domain]:
        return [Domain(*r) for r in self.c.execute("SELECT id, name, created FROM domains ORDER BY name")]

    async def count_accounts(self, domain_id: int) -> int:
        return int(
            self.c.execute("SELECT count(*) FROM accounts WHERE domain_id=?", (domain_id,)).fetchone()[0]
        )

    async def delete_domain(self, domain_id: int, name: str) -> None:
        self.c.execute("DELETE FROM aliases WHERE source LIKE ?", (f"%@{name}",))
        self.c.execute("DELETE FROM dkim_keys WHERE domain=?", (name,))
        self.c.execute("DELETE FROM domains WHERE id=?", (domain_id,))

    async def insert_account(
        self,
        address: str,
        domain_id: int,
        password_hash: str,
        quota_bytes: int,
        quota_messages: int,
        is_admin: bool,
        scram: ScramKeys | None,
        created: float,
    ) -> int:
        try:
            cur = self.c.execute(
                "INSERT INTO accounts(address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    address,
                    domain_id,
                    password_hash,
                    quota_bytes,
                    quota_messages,
                    int(is_admin),
                    *scram_cols(scram),
                    created,
                ),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"account {address} already exists") from None
        return int(cur.lastrowid or 0)

    async def account(self, address: str) -> Account | None:
        row = self.c.execute(f"SELECT {ACC_COLS} FROM accounts WHERE address=?", (address,)).fetchone()
        return account_row(row) if row else None

    async def account_by_id(self, account_id: int) -> Account | None:
        row = self.c.execute(f"SELECT {ACC_COLS} FROM accounts WHERE id=?", (account_id,)).fetchone()
        return account_row(row) if row else None

    async def accounts(self, domain: str | None) -> list[Account]:
        if domain:
            rows = self.c.execute(
                f"SELECT {ACC_COLS} FROM accounts WHERE address LIKE ? ORDER BY address", (f"%@{domain}",)
            ).fetchall()
        else:
            rows = self.c.execute(f"SELECT {ACC_COLS} FROM accounts ORDER BY address").fetchall()
        return [account_row(r) for r in rows]

    async def account_id(self, address: str) -> int | None:
        row = self.c.execute("SELECT id FROM accounts WHERE address=?", (address,)).fetchone()
        return int(row[0]) if row else None

    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> bool:
        cur = self.c.execute(
            "UPDATE accounts SET password_hash=?, scram_salt=?, scram_iter=?, scram_stored=?, scram_server=?"
            " WHERE address=?",
            (password_hash, *scram_cols(scram), address),
        )
        return cur.rowcount > 0

    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> bool:
        cur = self.c.execute(
            "UPDATE accounts SET quota_bytes=?, quota_messages=? WHERE address=?",
            (quota_bytes, quota_messages, address),
        )
        return cur.rowcount > 0

    async def delete_account(self, account_id: int, mailbox_ids: Sequence[int]) -> list[str]:
        c, acc = self.c, account_id
        sub = "SELECT id FROM mailboxes WHERE account_id=?"
        keys = [
            str(r[0])
            for r in c.execute(f"SELECT DISTINCT blob_key FROM messages WHERE mailbox_id IN ({sub})", (acc,))
        ]
        c.execute(f"DELETE FROM messages WHERE mailbox_id IN ({sub})", (acc,))
        c.execute(f"DELETE FROM expunged WHERE mailbox_id IN ({sub})", (acc,))
        c.execute("DELETE FROM mailboxes WHERE account_id=?", (acc,))
        c.execute("DELETE FROM subscriptions WHERE account_id=?", (acc,))
        c.execute("DELETE FROM metadata WHERE account_id=?", (acc,))
        c.execute("DELETE FROM accounts WHERE id=?", (acc,))
        return keys

    async def insert_alias(self, source: str, destination: str) -> Alias:
        try:
            cur = self.c.execute(
                "INSERT INTO aliases(source, destination) VALUES (?,?)", (source, destination)
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"alias {source} → {destination} already exists") from None
        return Alias(int(cur.lastrowid or 0), source, destination)

    async def aliases(self, domain: str | None) -> list[Alias]:
        if domain:
            rows = self.c.execute(
                "SELECT id, source, destination FROM aliases WHERE source LIKE ? ORDER BY source, destination",
                (f"%@{domain}",),
            ).fetchall()
        else:
            rows = self.c.execute(
                "SELECT id, source, destination FROM aliases ORDER BY source, destination"
            ).fetchall()
        return [Alias(*r) for r in rows]

    async def aliases_for(self, source: str) -> list[Alias]:
        rows = self.c.execute(
            "SELECT id, source, destination FROM aliases WHERE source=? ORDER BY id", (source,)
        )
        return [Alias(*r) for r in rows.fetchall()]

    async def delete_alias(self, source: str, destination: str | None) -> int:
        if destination is None:
            cur = self.c.execute("DELETE FROM aliases WHERE source=?", (source,))
        else:
            cur = self.c.execute(
                "DELETE FROM aliases WHERE source=? AND destination=?", (source, destination)
            )
        return cur.rowcount

    async def upsert_dkim_key(self, key: DkimKey) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO dkim_keys VALUES (?,?,?,?,?)",
            (key.domain, key.selector, key.algorithm, key.private_key, key.public_record),
        )

    async def dkim_keys(self, domain: str) -> list[DkimKey]:
        rows = self.c.execute(
            "SELECT domain, selector, algorithm, private_key, public_record FROM dkim_keys WHERE domain=?"
            " ORDER BY algorithm DESC",
            (domain,),
        ).fetchall()
        return [DkimKey(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    async def shared_secret(self, name: str, candidate: str) -> str:
        key = "secret:" + name  # the meta table holds the store's own key/values
        self.c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, candidate))
        return str(self.c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])
