"""The scale-out store: PostgreSQL (asyncpg, one pool per process) for the directory, the mail
index, the queue, the change feed and — by default — the message blobs.

Several Mailhouse nodes share one database; everything that must be unique or ordered is
decided by PostgreSQL, never by a node's memory.

Invariants:
- Every public call that changes data runs in one transaction and returns only after it
  committed (`synchronous_commit` is left at the server default, `on`): a returned call is
  on the server's WAL on stable storage (DESIGN.md §Durability).
- UID and MODSEQ allocation (RFC 9051 §2.3.1.1, RFC 7162 §3.1) is an
  `UPDATE mailboxes … RETURNING` inside the transaction that writes the rows using them.
  The row lock it takes is held until commit, so per mailbox, allocation order equals
  commit order: UIDs and modseqs stay unique and increasing under concurrent writers on
  any number of nodes, and a reader never sees modseq N+1 committed before N.
- Write transactions lock the mailbox rows they touch first, in ascending id order, then
  account rows (usage counters) in ascending id order, which keeps deadlocks rare; the few
  left (and serialization failures) are retried from the start (`MAX_TX_ATTEMPTS`).
- An `append` with a `delivery_key` already present in the mailbox is a no-op returning the
  existing record; the check runs after the mailbox row is locked, so two nodes delivering
  the same queue item at once still store one copy.
- Queue claims use `SELECT … FOR UPDATE SKIP LOCKED` and a lease (`lease_owner`,
  `lease_until`): an entry is claimed by at most one node at a time, and a dead node's
  claims are taken over once their lease has expired.
- The change feed is PostgreSQL LISTEN/NOTIFY on channel `CHANNEL`: `pg_notify` runs in the
  same transaction as the change, so a notification is delivered only after (and only if)
  the change committed. Payload: ``account_id:mailbox_id:kind:modseq``. Each store instance
  (one per process) keeps one LISTEN connection and dispatches to its local subscribers.
  If that connection is lost it is re-established and every subscriber gets a
  ``Change(account_id, 0, "mailbox", 0)`` meaning "changes may have been missed; re-read".
- Blobs live in the `blobs` table (bytea) unless the URL says ``?blobs=s3://…``. With
  in-database blobs a delivery's blob and index rows commit in one transaction, and blobs
  that an expunge/delete leaves unreferenced are deleted in the same transaction, so there
  are neither dangling keys nor orphaned blobs. Blob-referencing reads (`copy`, `move`) take
  `FOR SHARE` locks on the source rows so a concurrent expunge cannot free a blob a copy is
  about to reference.

URL: ``postgresql://user:pw@host:port/db?pool_min=1&pool_max=10&blobs=s3://bucket/prefix``;
the `pool_*` and `blobs` parameters are ours, the rest goes to asyncpg/libpq unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from mailhouse.store.api import (
    SPECIAL_MAILBOXES,
    Account,
    Alias,
    AlreadyExists,
    BlobStore,
    Change,
    DkimKey,
    Domain,
    FlagMode,
    FlagResult,
    Mailbox,
    MessageRecord,
    NewMessage,
    NotFound,
    QueueEntry,
    QueueRecipient,
    ScramKeys,
    StoreError,
    Usage,
)
from mailhouse.store.blobfiles import new_key
from mailhouse.store.crlf import to_crlf
from mailhouse.store.postgres.locks import PgLease, PgMaildropLocks
from mailhouse.store.postgres.schema import BOOTSTRAP, MIGRATION_LOCK, MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

Conn = Any  # asyncpg.Connection / pool proxy (asyncpg ships no type information)
Row = Any  # asyncpg.Record

CHANNEL = "mailhouse_changes"  # LISTEN/NOTIFY channel of the change feed
MAX_TX_ATTEMPTS = 8  # a transaction hit by deadlock/serialization failure is retried this often
POOL_MIN = 1
POOL_MAX = 10
SUBSCRIBER_QUEUE = 1000  # pending wake-ups per subscriber; more are dropped (sessions re-read state)
LISTEN_RETRY_MAX = 5.0  # seconds between attempts to re-establish a lost LISTEN connection
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)

_MSG_COLS = "mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved"
_MB_COLS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"
_ACC_COLS = (
    "id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
    " scram_salt, scram_iter, scram_stored, scram_server, created"
)
_Q_COLS = (
    "id, sender, recipients, blob_key, size, created, next_attempt, attempts, ret, envid, warned,"
    " lease_owner, lease_until, extra"
)


def _msg(r: Row) -> MessageRecord:
    return MessageRecord(
        mailbox_id=int(r[0]),
        uid=int(r[1]),
        modseq=int(r[2]),
        flags=frozenset(r[3]),
        internaldate=float(r[4]),
        size=int(r[5]),
        blob_key=str(r[6]),
        saved=float(r[7]),
    )


def _mailbox(r: Row) -> Mailbox:
    return Mailbox(int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6])


def _account(r: Row) -> Account:
    scram = ScramKeys(bytes(r[7]), int(r[8]), bytes(r[9]), bytes(r[10])) if r[7] is not None else None
    return Account(
        int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5]), bool(r[6]), scram, float(r[11])
    )


def _entry(r: Row) -> QueueEntry:
    return QueueEntry(
        id=r[0],
        sender=r[1],
        recipients=[QueueRecipient(**d) for d in r[2]],
        blob_key=r[3],
        size=int(r[4]),
        created=float(r[5]),
        next_attempt=float(r[6]),
        attempts=int(r[7]),
        ret=r[8],
        envid=r[9],
        warned=bool(r[10]),
        lease_owner=r[11],
        lease_until=float(r[12]),
        extra=dict(r[13]),
    )


def _rcpts(e: QueueEntry) -> list[dict[str, str]]:
    return [
        {
            "address": r.address,
            "status": r.status,
            "last_reply": r.last_reply,
            "notify": r.notify,
            "orcpt": r.orcpt,
        }
        for r in e.recipients
    ]


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def _suffix_pattern(domain: str) -> str:
    """An ILIKE pattern for addresses in DOMAIN (case-insensitive like SQLite's LIKE; wildcards escaped)."""
    esc = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%@{esc}"


def _sorted_flags(flags: Iterable[str]) -> list[str]:
    return sorted(flags)


async def _init_conn(conn: Conn) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split our own query parameters (pool_min, pool_max, blobs) off a postgresql:// URL.

    The DSN returned asks for ``synchronous_commit=on`` unless the URL names a level itself
    (e.g. ``remote_apply`` with synchronous standbys): a server configured with
    ``synchronous_commit=off`` must not make us acknowledge mail before it is durable.
    """
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in ("pool_min", "pool_max", "blobs"):
            ours[k] = v
        else:
            rest.append((k, v))
    if not any(k == "synchronous_commit" for k, _ in rest):
        rest.append(("synchronous_commit", "on"))  # DESIGN.md §Durability
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class PgBlobStore:
    """Blobs as rows of the `blobs` table (bytea). `put` commits before it returns.

    Keys are random and unique (`blobfiles.new_key`), never content hashes. A missing key
    raises FileNotFoundError, as the file blob store does.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def put(self, data: bytes) -> str:
        key = new_key()
        await self._store._pool_().execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, data)
        return key

    async def put_in(self, c: Conn, data: bytes) -> str:
        """Insert a blob inside the caller's transaction."""
        key = new_key()
        await c.execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, data)
        return key

    async def get(self, key: str) -> bytes:
        data = await self._store._pool_().fetchval("SELECT data FROM blobs WHERE key=$1", key)
        if data is None:
            raise FileNotFoundError(f"blob {key} does not exist")
        return bytes(data)

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._store._pool_().execute("DELETE FROM blobs WHERE key = ANY($1::text[])", list(keys))


class PostgresStore:
    """`mailhouse.store.api.Store` on PostgreSQL; see the module docstring for invariants."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = Path(data_dir)
        self._dsn, opts = split_url(url)
        self._pool_min = int(opts.get("pool_min", POOL_MIN))
        self._pool_max = int(opts.get("pool_max", POOL_MAX))
        self._pool: Any = None
        self._pg_blobs: PgBlobStore | None = None
        self.blobs: BlobStore
        blob_url = opts.get("blobs", "")
        if blob_url.startswith("s3://"):
            from mailhouse.store.postgres.blobs_s3 import S3BlobStore

            self.blobs = S3BlobStore(blob_url)
        elif blob_url in ("", "postgresql", "db"):
            self._pg_blobs = PgBlobStore(self)
            self.blobs = self._pg_blobs
        else:
            raise ValueError(f"unknown blob store {blob_url!r} (expected s3://bucket)")
        self._subscribers: dict[int, set[asyncio.Queue[Change]]] = {}
        self._listen_conn: Any = None
        self._listen_lock = asyncio.Lock()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False
        self._maildrop_locks = PgMaildropLocks(self._dsn)  # POP3 [IN-USE] across nodes (locks.py)

    async def try_lock_maildrop(self, mailbox_id: int) -> PgLease | None:
        """RFC 1939 §8 across nodes: a session-level advisory lock on a dedicated connection."""
        self._pool_()  # StoreError when the store is not open
        return await self._maildrop_locks.try_acquire(mailbox_id)

    # ---------------------------------------------------------------- plumbing
    def _pool_(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect the pool and bring the schema to the latest version (idempotent)."""
        if self._pool is not None:
            return
        self._closing = False
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self._pool_min, max_size=self._pool_max, init=_init_conn
        )
        try:
            async with self._pool.acquire() as c:
                await self._migrate(c)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    @staticmethod
    async def _migrate(c: Conn) -> None:
        async with c.transaction():
            # Serialise nodes starting at once: the lock is held until this transaction ends.
            await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await c.execute(BOOTSTRAP)
            version = await c.fetchval("SELECT max(version) FROM schema_version")
            if version is None:
                await c.execute("INSERT INTO schema_version(version) VALUES (0)")
                version = 0
            if int(version) > len(MIGRATIONS):
                log.warning(
                    "store: database schema version %d is newer than this Mailhouse knows (%d)",
                    version,
                    len(MIGRATIONS),
                )
            for i in range(int(version), len(MIGRATIONS)):
                log.info("store: migrating PostgreSQL schema to version %d", i + 1)
                await c.execute(MIGRATIONS[i])
                await c.execute("UPDATE schema_version SET version=$1", i + 1)

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect_task
            self._reconnect_task = None
        await self._maildrop_locks.close()
        if self._listen_conn is not None:
            conn, self._listen_conn = self._listen_conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run FN in one transaction on a pooled connection; retry on deadlock/serialization failure.

        FN must only touch the database (it may run more than once).
        """
        pool = self._pool_()
        for attempt in range(1, MAX_TX_ATTEMPTS + 1):
            try:
                async with pool.acquire() as c, c.transaction():
                    return await fn(c)
            except _RETRYABLE as e:
                if attempt == MAX_TX_ATTEMPTS:
                    raise
                log.debug("store: retrying transaction after %s (attempt %d)", type(e).__name__, attempt)
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
        raise AssertionError("unreachable")

    async def _fetch(self, query: str, *args: Any) -> list[Row]:
        return list(await self._pool_().fetch(query, *args))

    async def _fetchrow(self, query: str, *args: Any) -> Row | None:
        return await self._pool_().fetchrow(query, *args)

    @staticmethod
    async def _notify(c: Conn, account_id: int, mailbox_id: int, kind: str, modseq: int) -> None:
        # Delivered by PostgreSQL at commit only, in commit order.
        await c.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{account_id}:{mailbox_id}:{kind}:{modseq}")

    @staticmethod
    async def _lock_mailboxes(c: Conn, ids: Iterable[int]) -> None:
        """Lock mailbox rows in ascending id order (the global lock order of this backend)."""
        wanted = sorted(set(ids))
        if wanted:
            await c.execute(
                "SELECT id FROM mailboxes WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", wanted
            )

    @staticmethod
    async def _adjust_usage(c: Conn, deltas: dict[int, tuple[int, int]]) -> None:
        """Apply {account_id: (messages, bytes)} deltas, locking accounts in ascending id order."""
        for acc in sorted(deltas):
            n, size = deltas[acc]
            if n or size:
                await c.execute(
                    "UPDATE accounts SET used_messages=used_messages+$1, used_bytes=used_bytes+$2 WHERE id=$3",
                    n,
                    size,
                    acc,
                )

    async def _unreferenced(self, c: Conn, keys: Iterable[str]) -> list[str]:
        """Of KEYS, those no message or queue entry references; in-database blobs are deleted here."""
        uniq = sorted(set(keys))
        if not uniq:
            return []
        rows = await c.fetch(
            "SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_key=k)"
            " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_key=k)",
            uniq,
        )
        free = [str(r[0]) for r in rows]
        if free and self._pg_blobs is not None:
            await c.execute("DELETE FROM blobs WHERE key = ANY($1::text[])", free)
        return free

    async def _delete_external_blobs(self, keys: Sequence[str]) -> None:
        """After commit: free blobs kept outside PostgreSQL (in-database ones went with the transaction)."""
        if keys and self._pg_blobs is None:
            await self.blobs.delete(keys)

    # ---------------------------------------------------------------- change feed
    async def subscribe(self, account_id: int) -> AsyncIterator[Change]:
        """Changes of ACCOUNT_ID committed by any node, from the moment the first item is awaited."""
        q: asyncio.Queue[Change] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(account_id, set()).add(q)
        try:
            await self._ensure_listener()
            while True:
                yield await q.get()
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subscribers[account_id]

    async def _ensure_listener(self) -> None:
        async with self._listen_lock:
            if self._listen_conn is not None and not self._listen_conn.is_closed():
                return
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_listen_lost)
            self._listen_conn = conn

    def _on_notify(self, _conn: Conn, _pid: int, _channel: str, payload: str) -> None:
        try:
            acc_s, mbox_s, kind, modseq_s = payload.split(":", 3)
            change = Change(int(acc_s), int(mbox_s), kind, int(modseq_s))
        except ValueError:
            log.warning("store: ignoring malformed change notification %r", payload)
            return
        self._dispatch(change.account_id, change)

    def _dispatch(self, account_id: int, change: Change) -> None:
        for q in self._subscribers.get(account_id, ()):
            if not q.full():  # a full queue already holds a wake-up; sessions re-read state anyway
                q.put_nowait(change)

    def _on_listen_lost(self, _conn: Conn) -> None:
        if self._closing:
            return
        log.warning("store: LISTEN connection lost; reconnecting")
        self._listen_conn = None
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        delay = 0.1
        while not self._closing and self._subscribers:
            try:
                await self._ensure_listener()
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("store: LISTEN reconnect failed: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)
                continue
            for acc in list(self._subscribers):  # we may have missed changes while disconnected
                self._dispatch(acc, Change(acc, 0, "mailbox", 0))
            return

    # ---------------------------------------------------------------- directory
    async def directory_generation(self) -> int:
        v = await self._pool_().fetchval("SELECT value FROM counters WHERE name='dirgen'")
        return int(v or 0)

    async def add_domain(self, name: str) -> Domain:
        now = time.time()
        try:
            did = await self._pool_().fetchval(
                "INSERT INTO domains(name, created) VALUES ($1,$2) RETURNING id", name, now
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"domain {name} already exists") from None
        return Domain(int(did), name, now)

    async def get_domain(self, name: str) -> Domain | None:
        r = await self._fetchrow("SELECT id, name, created FROM domains WHERE name=$1", name)
        return Domain(int(r[0]), r[1], float(r[2])) if r else None

    async def list_domains(self) -> list[Domain]:
        rows = await self._fetch("SELECT id, name, created FROM domains ORDER BY name")
        return [Domain(int(r[0]), r[1], float(r[2])) for r in rows]

    async def remove_domain(self, name: str) -> None:
        async def fn(c: Conn) -> None:
            did = await c.fetchval("SELECT id FROM domains WHERE name=$1 FOR UPDATE", name)
            if did is None:
                raise NotFound(f"domain {name} does not exist")
            n = await c.fetchval("SELECT count(*) FROM accounts WHERE domain_id=$1", did)
            if n:
                raise AlreadyExists(f"domain {name} still has {n} account(s); remove them first")
            await c.execute("DELETE FROM aliases WHERE source ILIKE $1", _suffix_pattern(name))
            await c.execute("DELETE FROM dkim_keys WHERE domain=$1", name)
            await c.execute("DELETE FROM domains WHERE id=$1", did)

        await self._tx(fn)

    async def add_account(
        self,
        address: str,
        password_hash: str,
        *,
        quota_bytes: int = 0,
        quota_messages: int = 0,
        is_admin: bool = False,
        scram: ScramKeys | None = None,
    ) -> Account:
        domain = address.rpartition("@")[2]
        now = time.time()

        async def fn(c: Conn) -> Account:
            # FOR SHARE: a concurrent remove_domain cannot delete the domain under us.
            did = await c.fetchval("SELECT id FROM domains WHERE name=$1 FOR SHARE", domain)
            if did is None:
                raise NotFound(f"domain {domain} is not hosted here")
            try:
                acc_id = await c.fetchval(
                    "INSERT INTO accounts(address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                    " scram_salt, scram_iter, scram_stored, scram_server, created)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id",
                    address,
                    did,
                    password_hash,
                    quota_bytes,
                    quota_messages,
                    is_admin,
                    scram.salt if scram else None,
                    scram.iterations if scram else None,
                    scram.stored_key if scram else None,
                    scram.server_key if scram else None,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"account {address} already exists") from None
            for name, use in SPECIAL_MAILBOXES:
                await self._create_mailbox(c, int(acc_id), name, use)
                await c.execute(
                    "INSERT INTO subscriptions VALUES ($1,$2) ON CONFLICT DO NOTHING", acc_id, name
                )
            return Account(
                int(acc_id),
                address,
                int(did),
                password_hash,
                quota_bytes,
                quota_messages,
                is_admin,
                scram,
                now,
            )

        return await self._tx(fn)

    async def get_account(self, address: str) -> Account | None:
        r = await self._fetchrow(f"SELECT {_ACC_COLS} FROM accounts WHERE address=$1", address)
        return _account(r) if r else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        r = await self._fetchrow(f"SELECT {_ACC_COLS} FROM accounts WHERE id=$1", account_id)
        return _account(r) if r else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain:
            rows = await self._fetch(
                f"SELECT {_ACC_COLS} FROM accounts WHERE address ILIKE $1 ORDER BY address",
                _suffix_pattern(domain),
            )
        else:
            rows = await self._fetch(f"SELECT {_ACC_COLS} FROM accounts ORDER BY address")
        return [_account(r) for r in rows]

    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> None:
        status = await self._pool_().execute(
            "UPDATE accounts SET password_hash=$1, scram_salt=$2, scram_iter=$3, scram_stored=$4, scram_server=$5"
            " WHERE address=$6",
            password_hash,
            scram.salt if scram else None,
            scram.iterations if scram else None,
            scram.stored_key if scram else None,
            scram.server_key if scram else None,
            address,
        )
        if _count(status) == 0:
            raise NotFound(f"account {address} does not exist")

    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> None:
        status = await self._pool_().execute(
            "UPDATE accounts SET quota_bytes=$1, quota_messages=$2 WHERE address=$3",
            quota_bytes,
            quota_messages,
            address,
        )
        if _count(status) == 0:
            raise NotFound(f"account {address} does not exist")

    async def remove_account(self, address: str) -> None:
        async def fn(c: Conn) -> list[str]:
            acc = await c.fetchval("SELECT id FROM accounts WHERE address=$1", address)
            if acc is None:
                raise NotFound(f"account {address} does not exist")
            ids = [r[0] for r in await c.fetch("SELECT id FROM mailboxes WHERE account_id=$1", acc)]
            await self._lock_mailboxes(c, ids)
            rows = await c.fetch(
                "DELETE FROM messages WHERE mailbox_id = ANY($1::bigint[]) RETURNING blob_key", ids
            )
            await c.execute("DELETE FROM expunged WHERE mailbox_id = ANY($1::bigint[])", ids)
            await c.execute("DELETE FROM mailboxes WHERE account_id=$1", acc)
            await c.execute("DELETE FROM subscriptions WHERE account_id=$1", acc)
            await c.execute("DELETE FROM metadata WHERE account_id=$1", acc)
            await c.execute("DELETE FROM accounts WHERE id=$1", acc)
            for mid in ids:
                await self._notify(c, int(acc), int(mid), "mailbox", 0)
            return await self._unreferenced(c, (r[0] for r in rows))

        await self._delete_external_blobs(await self._tx(fn))

    async def add_alias(self, source: str, destination: str) -> Alias:
        domain = source.rpartition("@")[2]

        async def fn(c: Conn) -> Alias:
            if await c.fetchval("SELECT 1 FROM domains WHERE name=$1 FOR SHARE", domain) is None:
                raise NotFound(f"domain {domain} is not hosted here")
            try:
                aid = await c.fetchval(
                    "INSERT INTO aliases(source, destination) VALUES ($1,$2) RETURNING id",
                    source,
                    destination,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"alias {source} → {destination} already exists") from None
            return Alias(int(aid), source, destination)

        return await self._tx(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain:
            rows = await self._fetch(
                "SELECT id, source, destination FROM aliases WHERE source ILIKE $1 ORDER BY source, destination",
                _suffix_pattern(domain),
            )
        else:
            rows = await self._fetch(
                "SELECT id, source, destination FROM aliases ORDER BY source, destination"
            )
        return [Alias(int(r[0]), r[1], r[2]) for r in rows]

    async def aliases_for(self, source: str) -> list[Alias]:
        rows = await self._fetch(
            "SELECT id, source, destination FROM aliases WHERE source=$1 ORDER BY id", source
        )
        return [Alias(int(r[0]), r[1], r[2]) for r in rows]

    async def remove_alias(self, source: str, destination: str | None = None) -> None:
        if destination is None:
            status = await self._pool_().execute("DELETE FROM aliases WHERE source=$1", source)
        else:
            status = await self._pool_().execute(
                "DELETE FROM aliases WHERE source=$1 AND destination=$2", source, destination
            )
        if _count(status) == 0:
            raise NotFound(f"alias {source} does not exist")

    async def set_dkim_key(self, key: DkimKey) -> None:
        await self._pool_().execute(
            "INSERT INTO dkim_keys VALUES ($1,$2,$3,$4,$5) ON CONFLICT (domain, selector) DO UPDATE"
            " SET algorithm=excluded.algorithm, private_key=excluded.private_key, public_record=excluded.public_record",
            key.domain,
            key.selector,
            key.algorithm,
            key.private_key,
            key.public_record,
        )

    async def shared_secret(self, name: str, candidate: str) -> str:
        async def fn(c: Conn) -> str:
            await c.execute("INSERT INTO secrets VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, candidate)
            return str(await c.fetchval("SELECT value FROM secrets WHERE name=$1", name))

        return await self._tx(fn)

    async def get_dkim_keys(self, domain: str) -> list[DkimKey]:
        rows = await self._fetch(
            "SELECT domain, selector, algorithm, private_key, public_record FROM dkim_keys WHERE domain=$1"
            " ORDER BY algorithm DESC",
            domain,
        )
        return [DkimKey(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    # ---------------------------------------------------------------- mailboxes
    @staticmethod
    async def _create_mailbox(c: Conn, account_id: int, name: str, special_use: str | None) -> Mailbox:
        # RFC 9051 §2.3.1.1: a re-created mailbox must get a new UIDVALIDITY, so it is strictly
        # increasing across the whole store (time-based, bumped past the last; the counter row
        # lock orders concurrent creations on all nodes).
        uv = int(
            await c.fetchval(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1) ON CONFLICT (name) DO UPDATE"
                " SET value = greatest(excluded.value, counters.value + 1) RETURNING value",
                int(time.time()),
            )
        )
        try:
            mid = await c.fetchval(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " VALUES ($1,$2,$3,1,1,$4) RETURNING id",
                account_id,
                name,
                uv,
                special_use,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"mailbox {name} already exists") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"account {account_id} does not exist") from None
        return Mailbox(int(mid), account_id, name, uv, 1, 1, special_use)

    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox:
        async def fn(c: Conn) -> Mailbox:
            mb = await self._create_mailbox(c, account_id, name, special_use)
            await self._notify(c, account_id, mb.id, "mailbox", 0)
            return mb

        return await self._tx(fn)

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        r = await self._fetchrow(
            f"SELECT {_MB_COLS} FROM mailboxes WHERE account_id=$1 AND name=$2", account_id, name
        )
        return _mailbox(r) if r else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        r = await self._fetchrow(f"SELECT {_MB_COLS} FROM mailboxes WHERE id=$1", mailbox_id)
        return _mailbox(r) if r else None

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self._fetch(
            f"SELECT {_MB_COLS} FROM mailboxes WHERE account_id=$1 ORDER BY name", account_id
        )
        return [_mailbox(r) for r in rows]

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> Mailbox:
        async def fn(c: Conn) -> Mailbox:
            try:
                r = await c.fetchrow(
                    f"UPDATE mailboxes SET name=$1 WHERE id=$2 RETURNING {_MB_COLS}", new_name, mailbox_id
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"mailbox {new_name} already exists") from None
            if r is None:
                raise NotFound("no such mailbox")
            await self._notify(c, int(r[1]), mailbox_id, "mailbox", 0)
            return _mailbox(r)

        return await self._tx(fn)

    async def delete_mailbox(self, mailbox_id: int) -> list[str]:
        async def fn(c: Conn) -> list[str]:
            acc = await c.fetchval("SELECT account_id FROM mailboxes WHERE id=$1 FOR UPDATE", mailbox_id)
            if acc is None:
                raise NotFound("no such mailbox")
            rows = await c.fetch(
                "DELETE FROM messages WHERE mailbox_id=$1 RETURNING blob_key, size", mailbox_id
            )
            await c.execute("DELETE FROM expunged WHERE mailbox_id=$1", mailbox_id)
            await c.execute("DELETE FROM mailboxes WHERE id=$1", mailbox_id)
            await self._adjust_usage(c, {int(acc): (-len(rows), -sum(int(r[1]) for r in rows))})
            await self._notify(c, int(acc), mailbox_id, "mailbox", 0)
            return await self._unreferenced(c, (r[0] for r in rows))

        keys = await self._tx(fn)
        await self._delete_external_blobs(keys)
        return keys

    async def subscriptions(self, account_id: int) -> list[str]:
        rows = await self._fetch(
            "SELECT name FROM subscriptions WHERE account_id=$1 ORDER BY name", account_id
        )
        return [str(r[0]) for r in rows]

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        async def fn(c: Conn) -> None:
            if subscribed:
                st = await c.execute(
                    "INSERT INTO subscriptions VALUES ($1,$2) ON CONFLICT DO NOTHING", account_id, name
                )
            else:
                st = await c.execute("DELETE FROM subscriptions WHERE account_id=$1 AND name=$2", account_id, name)
            if not st.endswith(" 0"):  # change feed: NOTIFY SubscriptionChange (RFC 5465 §5.5)
                await self._notify(c, account_id, 0, "subscription", 0)

        await self._tx(fn)

    # ---------------------------------------------------------------- messages
    @staticmethod
    async def _bump(c: Conn, mailbox_id: int, uids: int = 0) -> tuple[int, int, int]:
        """Allocate `uids` UIDs and one new modseq; returns (account_id, first uid, modseq).

        The row lock taken here is held until commit (see module docstring).
        """
        r = await c.fetchrow(
            "UPDATE mailboxes SET uidnext=uidnext+$2, highestmodseq=highestmodseq+1 WHERE id=$1"
            " RETURNING account_id, uidnext-$2, highestmodseq",
            mailbox_id,
            uids,
        )
        if r is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return int(r[0]), int(r[1]), int(r[2])

    async def _append_rows(self, c: Conn, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        await self._lock_mailboxes(c, (m.mailbox_id for m in messages))
        out: list[MessageRecord] = []
        usage: dict[int, tuple[int, int]] = {}
        now = time.time()
        for m in messages:
            if m.delivery_key is not None:
                r = await c.fetchrow(
                    f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=$1 AND delivery_key=$2",
                    m.mailbox_id,
                    m.delivery_key,
                )
                if r is not None:
                    out.append(_msg(r))
                    continue
            acc, uid, modseq = await self._bump(c, m.mailbox_id, 1)
            rec = MessageRecord(
                m.mailbox_id, uid, modseq, m.flags, m.internaldate or now, m.size, m.blob_key, now
            )
            await c.execute(
                f"INSERT INTO messages({_MSG_COLS}, delivery_key) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                rec.mailbox_id,
                uid,
                modseq,
                _sorted_flags(rec.flags),
                rec.internaldate,
                rec.size,
                rec.blob_key,
                now,
                m.delivery_key,
            )
            n, size = usage.get(acc, (0, 0))
            usage[acc] = (n + 1, size + m.size)
            await self._notify(c, acc, m.mailbox_id, "append", modseq)
            out.append(rec)
        await self._adjust_usage(c, usage)
        return out

    async def append(self, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        return await self._tx(lambda c: self._append_rows(c, messages))

    async def deliver(self, blob: bytes, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        """Store BLOB and append rows pointing at it; with in-database blobs, in one transaction."""
        blob = to_crlf(blob)  # api.py invariant: stored messages use CRLF
        pg = self._pg_blobs
        if pg is None:
            key = await self.blobs.put(blob)
            return await self.append([replace(m, blob_key=key, size=len(blob)) for m in messages])

        async def fn(c: Conn) -> list[MessageRecord]:
            key = await pg.put_in(c, blob)
            recs = await self._append_rows(c, [replace(m, blob_key=key, size=len(blob)) for m in messages])
            if not any(r.blob_key == key for r in recs):  # every row was an idempotent redelivery
                await c.execute("DELETE FROM blobs WHERE key=$1", key)
            return recs

        return await self._tx(fn)

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        rows = await self._fetch(
            f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=$1 ORDER BY uid", mailbox_id
        )
        return [_msg(r) for r in rows]

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        rows = await self._fetch(
            f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=$1 AND modseq>$2 ORDER BY uid",
            mailbox_id,
            modseq,
        )
        return [_msg(r) for r in rows]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        rows = await self._fetch(
            "SELECT uid FROM expunged WHERE mailbox_id=$1 AND modseq>$2", mailbox_id, modseq
        )
        return sorted(int(r[0]) for r in rows)  # the index on (mailbox_id, modseq) finds them

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagResult:
        wanted = list(dict.fromkeys(uids))  # in request order, each once

        async def fn(c: Conn) -> FlagResult:
            await self._lock_mailboxes(c, [mailbox_id])
            rows = await c.fetch(
                f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=$1 AND uid = ANY($2::bigint[])",
                mailbox_id,
                wanted,
            )
            have = {int(r[1]): _msg(r) for r in rows}
            updated: list[MessageRecord] = []
            failed: list[int] = []
            changes: list[tuple[int, frozenset[str]]] = []
            for uid in wanted:
                rec = have.get(uid)
                if rec is None:
                    continue
                # RFC 7162 §3.1.3: UNCHANGEDSINCE fails for messages modified after it
                if unchanged_since is not None and rec.modseq > unchanged_since:
                    failed.append(uid)
                    continue
                if mode is FlagMode.ADD:
                    new = rec.flags | flags
                elif mode is FlagMode.REMOVE:
                    new = rec.flags - flags
                else:
                    new = flags
                if new != rec.flags:
                    changes.append((uid, new))
            if changes:
                acc, _, modseq = await self._bump(c, mailbox_id, 0)  # one modseq for the whole STORE
                await c.executemany(
                    "UPDATE messages SET flags=$1, modseq=$2 WHERE mailbox_id=$3 AND uid=$4",
                    [(_sorted_flags(new), modseq, mailbox_id, uid) for uid, new in changes],
                )
                for uid, new in changes:
                    updated.append(replace(have[uid], modseq=modseq, flags=new))
                await self._notify(c, acc, mailbox_id, "flags", modseq)
            return FlagResult(updated, failed)

        return await self._tx(fn)

    async def _expunge_rows(
        self, c: Conn, mailbox_id: int, uids: Sequence[int]
    ) -> tuple[list[int], list[str]]:
        """Delete UIDS from the mailbox (already locked by the caller); returns (gone, unreferenced keys)."""
        rows = await c.fetch(
            "DELETE FROM messages WHERE mailbox_id=$1 AND uid = ANY($2::bigint[]) RETURNING uid, blob_key, size",
            mailbox_id,
            list(uids),
        )
        if not rows:
            return [], []
        found = {int(r[0]): r for r in rows}
        gone = [u for u in dict.fromkeys(uids) if u in found]
        acc, _, modseq = await self._bump(c, mailbox_id, 0)
        # RFC 7162 §3.2.10 (QRESYNC VANISHED): remember each expunged UID with its modseq
        await c.execute(
            "INSERT INTO expunged(mailbox_id, uid, modseq) SELECT $1, u, $3 FROM unnest($2::bigint[]) AS u"
            " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq=excluded.modseq",
            mailbox_id,
            gone,
            modseq,
        )
        await self._adjust_usage(c, {acc: (-len(gone), -sum(int(r[2]) for r in rows))})
        await self._notify(c, acc, mailbox_id, "expunge", modseq)
        return gone, await self._unreferenced(c, (str(r[1]) for r in rows))

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], list[str]]:
        async def fn(c: Conn) -> tuple[list[int], list[str]]:
            await self._lock_mailboxes(c, [mailbox_id])
            return await self._expunge_rows(c, mailbox_id, uids)

        gone, keys = await self._tx(fn)
        await self._delete_external_blobs(keys)
        return gone, keys

    async def _copy_rows(self, c: Conn, src: int, uids: Sequence[int], dst: int) -> list[tuple[int, int]]:
        # FOR SHARE: a concurrent expunge of the source cannot free the blobs we are about to reference.
        rows = await c.fetch(
            f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=$1 AND uid = ANY($2::bigint[]) FOR SHARE",
            src,
            list(uids),
        )
        have = {int(r[1]): _msg(r) for r in rows}
        recs = [have[u] for u in dict.fromkeys(uids) if u in have]
        new = await self._append_rows(
            c,
            # RFC 9051 §6.4.7: COPY keeps flags and INTERNALDATE (\Recent aside)
            [NewMessage(dst, r.blob_key, r.size, r.flags, r.internaldate) for r in recs],
        )
        return [(r.uid, n.uid) for r, n in zip(recs, new, strict=True)]

    async def copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        async def fn(c: Conn) -> list[tuple[int, int]]:
            await self._lock_mailboxes(c, [src_mailbox_id, dst_mailbox_id])
            return await self._copy_rows(c, src_mailbox_id, uids, dst_mailbox_id)

        return await self._tx(fn)

    async def move(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        async def fn(c: Conn) -> list[tuple[int, int]]:
            await self._lock_mailboxes(c, [src_mailbox_id, dst_mailbox_id])
            pairs = await self._copy_rows(c, src_mailbox_id, uids, dst_mailbox_id)  # RFC 6851 §3.3: atomic
            await self._expunge_rows(c, src_mailbox_id, [p[0] for p in pairs])
            return pairs

        return await self._tx(fn)

    async def usage(self, account_id: int) -> Usage:
        r = await self._fetchrow("SELECT used_bytes, used_messages FROM accounts WHERE id=$1", account_id)
        if r is None:
            raise NotFound("no such account")
        return Usage(int(r[0]), int(r[1]))

    async def get_metadata(self, account_id: int, mailbox: str, key: str) -> str | None:
        v = await self._pool_().fetchval(
            "SELECT value FROM metadata WHERE account_id=$1 AND mailbox=$2 AND key=$3",
            account_id,
            mailbox,
            key,
        )
        return None if v is None else str(v)

    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> None:
        async def fn(c: Conn) -> None:
            if value is None:
                st = await c.execute(
                    "DELETE FROM metadata WHERE account_id=$1 AND mailbox=$2 AND key=$3", account_id, mailbox, key
                )
            else:
                st = await c.execute(
                    "INSERT INTO metadata VALUES ($1,$2,$3,$4) ON CONFLICT (account_id, mailbox, key)"
                    " DO UPDATE SET value=excluded.value",
                    account_id,
                    mailbox,
                    key,
                    value,
                )
            if not st.endswith(" 0"):  # change feed: NOTIFY Mailbox/ServerMetadataChange (RFC 5465 §5.6-7)
                await self._notify(c, account_id, 0, "metadata", 0)

        await self._tx(fn)

    async def claim_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
        # one statement under the row lock of INSERT ... ON CONFLICT: SET reads the old row
        v = await self._pool_().fetchval(
            "INSERT INTO recent(mailbox_id, uidvalidity, uid, prev) VALUES ($1,$2,$3,0)"
            " ON CONFLICT (mailbox_id) DO UPDATE SET"
            " prev = CASE WHEN recent.uidvalidity = excluded.uidvalidity THEN recent.uid ELSE 0 END,"
            " uid = CASE WHEN recent.uidvalidity = excluded.uidvalidity"
            " THEN GREATEST(recent.uid, excluded.uid) ELSE excluded.uid END,"
            " uidvalidity = excluded.uidvalidity"
            " RETURNING prev",
            mailbox_id,
            uidvalidity,
            up_to_uid,
        )
        return int(v or 0)

    async def recent_claimed(self, mailbox_id: int, uidvalidity: int) -> int:
        row = await self._fetchrow("SELECT uidvalidity, uid FROM recent WHERE mailbox_id=$1", mailbox_id)
        return int(row["uid"]) if row is not None and int(row["uidvalidity"]) == uidvalidity else 0

    # ---------------------------------------------------------------- queue
    async def enqueue(self, entry: QueueEntry, blob: bytes | None = None) -> None:
        if blob is not None:
            entry.blob_key = await self.blobs.put(blob)
        try:
            await self._pool_().execute(
                f"INSERT INTO queue({_Q_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                entry.id,
                entry.sender,
                _rcpts(entry),
                entry.blob_key,
                entry.size,
                entry.created,
                entry.next_attempt,
                entry.attempts,
                entry.ret,
                entry.envid,
                entry.warned,
                entry.lease_owner,
                entry.lease_until,
                entry.extra,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"queue entry {entry.id} already exists") from None

    async def claim_due(self, now: float, owner: str, lease_seconds: float, limit: int) -> list[QueueEntry]:
        """Lease up to LIMIT due entries to OWNER; entries leased by others (unexpired) or locked
        by a concurrent claim on another node are skipped, never waited for."""
        rows = await self._fetch(
            f"UPDATE queue SET lease_owner=$2, lease_until=$3 WHERE id IN ("
            " SELECT id FROM queue WHERE next_attempt<=$1 AND lease_until<$1"
            " ORDER BY next_attempt LIMIT $4 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_Q_COLS}",
            now,
            owner,
            now + lease_seconds,
            limit,
        )
        return sorted((_entry(r) for r in rows), key=lambda e: (e.next_attempt, e.id))

    async def update(self, entry: QueueEntry) -> None:
        await self._pool_().execute(
            "UPDATE queue SET recipients=$1, next_attempt=$2, attempts=$3, warned=$4, lease_owner='', lease_until=0,"
            " extra=$5 WHERE id=$6",
            _rcpts(entry),
            entry.next_attempt,
            entry.attempts,
            entry.warned,
            entry.extra,
            entry.id,
        )

    async def remove(self, entry_id: str) -> list[str]:
        async def fn(c: Conn) -> list[str]:
            key = await c.fetchval("DELETE FROM queue WHERE id=$1 RETURNING blob_key", entry_id)
            if key is None:
                raise NotFound(f"queue entry {entry_id} does not exist")
            return await self._unreferenced(c, [str(key)])

        keys = await self._tx(fn)
        await self._delete_external_blobs(keys)
        return keys

    async def get(self, entry_id: str) -> QueueEntry | None:
        r = await self._fetchrow(f"SELECT {_Q_COLS} FROM queue WHERE id=$1", entry_id)
        return _entry(r) if r else None

    async def list(self) -> list[QueueEntry]:
        rows = await self._fetch(f"SELECT {_Q_COLS} FROM queue ORDER BY created")
        return [_entry(r) for r in rows]
