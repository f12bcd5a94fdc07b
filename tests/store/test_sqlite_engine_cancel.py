"""store/sqlite/engine.py: a caller cancelled while its job waits in the queue (a client gone, a
timeout) must not end the store's writer or reader threads for everyone after it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from mailhouse.store.sqlite.engine import READER_THREADS, Engine


def _slow(conn: sqlite3.Connection) -> int:
    time.sleep(0.3)
    return 1


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t(x INTEGER)")


def _insert(conn: sqlite3.Connection) -> int:
    return conn.execute("INSERT INTO t(x) VALUES (1)").lastrowid or 0


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_cancelled_waiting_write_keeps_the_writer(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "s.db")
    await eng.open()
    try:
        await eng.write(_create)
        busy = asyncio.ensure_future(eng.write(_slow))  # holds the writer thread
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(eng.write(_insert))  # queued behind it
        await asyncio.sleep(0.05)
        gone.cancel()
        assert await busy == 1
        # the writer still serves: before, setting the cancelled job's result killed its thread
        assert await asyncio.wait_for(eng.write(_insert), 10) > 0
        assert await asyncio.wait_for(eng.read(_count), 10) >= 1
    finally:
        await eng.close()


async def test_cancelled_waiting_reads_keep_the_readers(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "s.db")
    await eng.open()
    try:
        await eng.write(_create)
        busy = [asyncio.ensure_future(eng.read(_slow)) for _ in range(READER_THREADS)]
        await asyncio.sleep(0.05)
        gone = [asyncio.ensure_future(eng.read(_count)) for _ in range(2 * READER_THREADS)]
        await asyncio.sleep(0.05)
        for g in gone:
            g.cancel()
        assert await asyncio.gather(*busy) == [1] * READER_THREADS
        for _ in range(2 * READER_THREADS):  # every reader thread is still there to answer
            assert await asyncio.wait_for(eng.read(_count), 10) == 0
    finally:
        await eng.close()
