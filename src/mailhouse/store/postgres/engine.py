"""The PostgreSQL engine: URL parsing, the asyncpg pool, migrations, retried transactions.

Invariants:
- `Engine.transaction(fn)` runs FN in one transaction on a pooled connection and returns after
  it committed (`synchronous_commit=on` unless the URL asks otherwise: DESIGN.md §Durability).
  A deadlock or serialization failure retries FN from the start (`MAX_TX_ATTEMPTS`), so FN
  must only touch the database.
- Migrations are serialised across nodes by a transaction-scoped advisory lock.
- Connection-level failures (server restarting or shut down, connection lost or refused,
  too many connections, pool acquire timeout) leave the engine as `api.StoreUnavailable`,
  never as the driver's error or a bare ``ConnectionError`` that callers would take for
  their client's disconnect (issue 12 item 11). The pool drops a broken connection and
  opens a fresh one on the next acquire, so the node serves again once the server is back.
  Reads, and transactions whose connection failed before FN ran, are retried once at once
  (a pooled connection may have died with a server restart); a transaction that failed
  after FN started is not retried here: its outcome may be unknown, the client retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from mailhouse import metrics
from mailhouse.store.api import SchemaTooNew, StoreError, StoreUnavailable
from mailhouse.store.postgres.schema import BOOTSTRAP, MIGRATION_LOCK, MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

Conn = Any  # asyncpg.Connection / pool proxy (asyncpg ships no type information)
Row = Any  # asyncpg.Record

MAX_TX_ATTEMPTS = 8  # a transaction hit by deadlock/serialization failure is retried this often
POOL_MIN = 1
POOL_MAX = 10
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: Seconds to wait for a pooled connection (all busy, or the server not accepting connections).
ACQUIRE_TIMEOUT = 30.0
#: What means "the database is not usable right now" rather than "this statement is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08: connection exception
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.InterfaceError,  # the connection was closed under the driver
    OSError,  # refused, reset, unreachable (ConnectionError is an OSError)
    TimeoutError,  # pool acquire / connect timed out
)


@contextlib.asynccontextmanager
async def unavailable_as_store_error() -> AsyncIterator[None]:
    """Turn a connection-level failure inside the block into `StoreUnavailable`."""
    try:
        yield
    except UNAVAILABLE as e:
        log.warning("store: PostgreSQL unavailable: %s: %s", type(e).__name__, e)
        raise StoreUnavailable(f"PostgreSQL unavailable ({type(e).__name__})") from e


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


async def _init_conn(conn: Conn) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class _SnapshotConnection(asyncpg.Connection):  # type: ignore[misc]
    """The one connection of a snapshot engine: its transaction outlives each use (no reset)."""

    async def reset(self, *, timeout: float | None = None) -> None:
        pass


class Engine:
    """One PostgreSQL database: a pool of connections with the jsonb codec."""

    def __init__(self, dsn: str, pool_min: int = POOL_MIN, pool_max: int = POOL_MAX) -> None:
        self.dsn = dsn
        self.pool_min = pool_min
        self.pool_max = pool_max
        self._pool: Any = None
        self.snapshot = False  # set before open(): `begin_snapshot` (backup/snapshot.py reads through it)
        self._in_snapshot = False

    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    @property
    def opened(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        """Connect the pool and bring the schema to the latest version (idempotent)."""
        if self._pool is not None:
            return
        if self.snapshot:  # one connection, never replaced, never reset: its transaction is the snapshot
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=1,
                init=_init_conn,
                setup=self._check_snapshot,
                connection_class=_SnapshotConnection,
                max_queries=2**62,
                max_inactive_connection_lifetime=0,
            )
        else:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self.pool_min, max_size=self.pool_max, init=_init_conn
            )
        try:
            async with self._pool.acquire() as c:
                await self._migrate(c)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    async def begin_snapshot(self) -> None:
        """After open() of an engine with ``snapshot`` set: every later read sees the database as it
        is now (one REPEATABLE READ, READ ONLY transaction: PostgreSQL docs §13.2.2); writes fail."""
        if not self.snapshot:
            raise StoreError("begin_snapshot needs an engine opened with snapshot = True")
        await self.pool().execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await self.pool().fetchval("SELECT 1")  # the snapshot is taken at the first statement
        self._in_snapshot = True

    async def _check_snapshot(self, c: Conn) -> None:
        if self._in_snapshot and not c.is_in_transaction():
            raise StoreError("the snapshot transaction was lost (connection closed)")

    async def close(self) -> None:
        self._in_snapshot = False
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

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
                raise SchemaTooNew(int(version), len(MIGRATIONS))
            for i in range(int(version), len(MIGRATIONS)):
                log.info("store: migrating PostgreSQL schema to version %d", i + 1)
                await c.execute(MIGRATIONS[i])
                await c.execute("UPDATE schema_version SET version=$1", i + 1)

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run FN in one transaction; retry on deadlock/serialization failure (FN may run again).

        Raises `StoreUnavailable` when the server cannot be reached or the connection is lost."""
        with metrics.timed(metrics.STORE_SECONDS, "postgres", "write"):
            return await self._transaction(fn)

    async def _transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self.pool()
        reconnected = False
        attempt = 1
        while True:
            started = False
            try:
                async with unavailable_as_store_error():
                    async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as c:
                        tx = c.transaction()
                        await tx.start()
                        started = True
                        try:
                            result = await fn(c)
                        except BaseException:
                            if not c.is_closed():
                                await tx.rollback()
                            raise
                        await tx.commit()
                        return result
            except _RETRYABLE as e:
                if attempt == MAX_TX_ATTEMPTS:
                    raise
                log.debug("store: retrying transaction after %s (attempt %d)", type(e).__name__, attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
            except StoreUnavailable:
                # BEGIN itself failed on a connection that died while pooled: nothing ran, try a fresh one
                if started or reconnected:
                    raise
                reconnected = True

    async def connection(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run FN on a pooled connection outside an explicit transaction (reads and
        one-statement writes); `StoreUnavailable` when the database cannot be used."""
        pool = self.pool()
        with metrics.timed(metrics.STORE_SECONDS, "postgres", "read"):
            async with unavailable_as_store_error():
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as c:
                    return await fn(c)


async def read_version(dsn: str) -> int | None:
    """The schema version of the database at DSN without migrating it; None: not set up yet."""
    c = await asyncpg.connect(dsn)
    try:
        if await c.fetchval("SELECT to_regclass('schema_version')") is None:
            return None
        v = await c.fetchval("SELECT max(version) FROM schema_version")
        return None if v is None else int(v)
    finally:
        await c.close()
