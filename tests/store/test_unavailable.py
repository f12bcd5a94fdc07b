"""`StoreUnavailable` (issue 12 item 11): both engines report "the database cannot be used right
now" as the store's own error — never the driver's, never a ``ConnectionError`` a protocol
adapter would take for its client's disconnect — and the PostgreSQL pool serves again after."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from mailhouse.store import open_store
from mailhouse.store.api import StoreError, StoreUnavailable
from mailhouse.store.postgres.backend import PostgresStore
from mailhouse.store.sqlite.backend import SqliteStore


async def test_sqlite_io_failure_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/mh.db", tmp_path)
    assert isinstance(store, SqliteStore)
    await store.open()
    try:

        def cannot_open(_: sqlite3.Connection) -> None:
            sqlite3.connect(f"file:{tmp_path}/missing/x.db?mode=ro", uri=True).execute("SELECT 1")

        with pytest.raises(StoreUnavailable) as ei:  # SQLITE_CANTOPEN
            await store.backend.engine.read(cannot_open)
        assert not isinstance(ei.value, ConnectionError)

        def bad_sql(c: sqlite3.Connection) -> None:
            c.execute("SELECT * FROM no_such_table")

        with pytest.raises(sqlite3.OperationalError):  # a wrong statement stays what it is
            await store.backend.engine.read(bad_sql)
    finally:
        await store.close()


async def test_postgres_lost_connection_is_unavailable_then_serves(
    postgres_db_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_db_url, tmp_path)
    assert isinstance(store, PostgresStore)
    await store.open()
    admin = await asyncpg.connect(postgres_db_url)
    try:
        await store.add_domain("example.org")
        engine = store.backend.engine
        slow = asyncio.ensure_future(engine.connection(lambda c: c.execute("SELECT pg_sleep(30)")))
        for _ in range(200):
            if await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
            ):
                break
            await asyncio.sleep(0.05)
        # what a server restart does to every session: terminated with 57P01 admin_shutdown
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with pytest.raises(StoreUnavailable) as ei:
            await asyncio.wait_for(slow, 30)
        assert isinstance(ei.value, StoreError) and not isinstance(ei.value, ConnectionError)
        # the pool reconnects: the next calls work
        assert await store.get_domain("example.org") is not None
        await store.add_domain("example.net")
    finally:
        await admin.close()
        await store.close()
