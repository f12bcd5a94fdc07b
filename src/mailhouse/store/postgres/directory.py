"""PostgreSQL primitives for the directory: domains, accounts, aliases, DKIM keys, secrets.

Rows only; the rules are in `store/directory.py`. Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from mailhouse.store.api import Account, Alias, AlreadyExists, DkimKey, Domain, ScramKeys
from mailhouse.store.postgres.engine import Conn, Row

ACC_COLS = (
    "id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
    " scram_salt, scram_iter, scram_stored, scram_server, created"
)


def account_row(r: Row) -> Account:
    scram = ScramKeys(bytes(r[7]), int(r[8]), bytes(r[9]), bytes(r[10])) if r[7] is not None else None
    return Account(
        int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5]), bool(r[6]), scram, float(r[11])
    )


def count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def suffix_pattern(domain: str) -> str:
    """An ILIKE pattern for addresses in DOMAIN (case-insensitive like SQLite's LIKE; wildcards escaped)."""
    esc = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%@{esc}"


class DirectoryTx:
    c: Conn

    async def directory_generation(self) -> int:
        v = await self.c.fetchval("SELECT value FROM counters WHERE name='dirgen'")
        return int(v or 0)

    async def insert_domain(self, name: str, created: float) -> Domain:
        try:
            did = await self.c.fetchval(
                "INSERT INTO domains(name, created) VALUES ($1,$2) RETURNING id", name, created
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"domain {name} already exists") from None
        return Domain(int(did), name, created)

    async def domain(self, name: str) -> Domain | None:
        r = await self.c.fetchrow("SELECT id, name, created FROM domains WHERE name=$1", name)
        return Domain(int(r[0]), r[1], float(r[2])) if r else None

    async def domain_id(self, name: str, *, lock: bool = False, for_update: bool = False) -> int | None:
        # FOR SHARE (adding under the domain) against FOR UPDATE (removing it): one waits for the other
        suffix = " FOR UPDATE" if for_update else " FOR SHARE" if lock else ""
        did = await self.c.fetchval(f"SELECT id FROM domains WHERE name=$1{suffix}", name)
        return None if did is None else int(did)

    async def domains(self) -> list[Domain]:
        rows = await self.c.fetch("SELECT id, name, created FROM domains ORDER BY name")
        return [Domain(int(r[0]), r[1], float(r[2])) for r in rows]

    async def count_accounts(self, domain_id: int) -> int:
        return int(await self.c.fetchval("SELECT count(*) FROM accounts WHERE domain_id=$1", domain_id))

    async def delete_domain(self, domain_id: int, name: str) -> None:
        await self.c.execute("DELETE FROM aliases WHERE source ILIKE $1", suffix_pattern(name))
        await self.c.execute("DELETE FROM dkim_keys WHERE domain=$1", name)
        await self.c.execute("DELETE FROM domains WHERE id=$1", domain_id)

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
            acc_id = await self.c.fetchval(
                "INSERT INTO accounts(address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, created)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id",
                address,
                domain_id,
                password_hash,
                quota_bytes,
                quota_messages,
                is_admin,
                scram.salt if scram else None,
                scram.iterations if scram else None,
                scram.stored_key if scram else None,
                scram.server_key if scram else None,
                created,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"account {address} already exists") from None
        return int(acc_id)

    async def account(self, address: str) -> Account | None:
        r = await self.c.fetchrow(f"SELECT {ACC_COLS} FROM accounts WHERE address=$1", address)
        return account_row(r) if r else None

    async def account_by_id(self, account_id: int) -> Account | None:
        r = await self.c.fetchrow(f"SELECT {ACC_COLS} FROM accounts WHERE id=$1", account_id)
        return account_row(r) if r else None

    async def accounts(self, domain: str | None) -> list[Account]:
        if domain:
            rows = await self.c.fetch(
                f"SELECT {ACC_COLS} FROM accounts WHERE address ILIKE $1 ORDER BY address",
                suffix_pattern(domain),
            )
        else:
            rows = await self.c.fetch(f"SELECT {ACC_COLS} FROM accounts ORDER BY address")
        return [account_row(r) for r in rows]

    async def account_id(self, address: str) -> int | None:
        v = await self.c.fetchval("SELECT id FROM accounts WHERE address=$1", address)
        return None if v is None else int(v)

    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> bool:
        status = await self.c.execute(
            "UPDATE accounts SET password_hash=$1, scram_salt=$2, scram_iter=$3, scram_stored=$4, scram_server=$5"
            " WHERE address=$6",
            password_hash,
            scram.salt if scram else None,
            scram.iterations if scram else None,
            scram.stored_key if scram else None,
            scram.server_key if scram else None,
            address,
        )
        return count(status) > 0

    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> bool:
        status = await self.c.execute(
            "UPDATE accounts SET quota_bytes=$1, quota_messages=$2 WHERE address=$3",
            quota_bytes,
            quota_messages,
            address,
        )
        return count(status) > 0

    async def delete_account(self, account_id: int, mailbox_ids: Sequence[int]) -> list[str]:
        ids = list(mailbox_ids)
        rows = await self.c.fetch(
            "DELETE FROM messages WHERE mailbox_id = ANY($1::bigint[]) RETURNING blob_key", ids
        )
        await self.c.execute("DELETE FROM expunged WHERE mailbox_id = ANY($1::bigint[])", ids)
        await self.c.execute("DELETE FROM mailboxes WHERE account_id=$1", account_id)
        await self.c.execute("DELETE FROM subscriptions WHERE account_id=$1", account_id)
        await self.c.execute("DELETE FROM metadata WHERE account_id=$1", account_id)
        await self.c.execute("DELETE FROM accounts WHERE id=$1", account_id)
        return [str(r[0]) for r in rows]

    async def insert_alias(self, source: str, destination: str) -> Alias:
        try:
            aid = await self.c.fetchval(
                "INSERT INTO aliases(source, destination) VALUES ($1,$2) RETURNING id", source, destination
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"alias {source} → {destination} already exists") from None
        return Alias(int(aid), source, destination)

    async def aliases(self, domain: str | None) -> list[Alias]:
        if domain:
            rows = await self.c.fetch(
                "SELECT id, source, destination FROM aliases WHERE source ILIKE $1 ORDER BY source, destination",
                suffix_pattern(domain),
            )
        else:
            rows = await self.c.fetch(
                "SELECT id, source, destination FROM aliases ORDER BY source, destination"
            )
        return [Alias(int(r[0]), r[1], r[2]) for r in rows]

    async def aliases_for(self, source: str) -> list[Alias]:
        rows = await self.c.fetch(
            "SELECT id, source, destination FROM aliases WHERE source=$1 ORDER BY id", source
        )
        return [Alias(int(r[0]), r[1], r[2]) for r in rows]

    async def delete_alias(self, source: str, destination: str | None) -> int:
        if destination is None:
            status = await self.c.execute("DELETE FROM aliases WHERE source=$1", source)
        else:
            status = await self.c.execute(
                "DELETE FROM aliases WHERE source=$1 AND destination=$2", source, destination
            )
        return count(status)

    async def upsert_dkim_key(self, key: DkimKey) -> None:
        await self.c.execute(
            "INSERT INTO dkim_keys VALUES ($1,$2,$3,$4,$5) ON CONFLICT (domain, selector) DO UPDATE"
            " SET algorithm=excluded.algorithm, private_key=excluded.private_key, public_record=excluded.public_record",
            key.domain,
            key.selector,
            key.algorithm,
            key.private_key,
            key.public_record,
        )

    async def dkim_keys(self, domain: str) -> list[DkimKey]:
        rows = await self.c.fetch(
            "SELECT domain, selector, algorithm, private_key, public_record FROM dkim_keys WHERE domain=$1"
            " ORDER BY algorithm DESC",
            domain,
        )
        return [DkimKey(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    async def shared_secret(self, name: str, candidate: str) -> str:
        await self.c.execute(
            "INSERT INTO secrets VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, candidate
        )
        return str(await self.c.fetchval("SELECT value FROM secrets WHERE name=$1", name))
