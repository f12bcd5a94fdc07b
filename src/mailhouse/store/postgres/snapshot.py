"""PostgreSQL's half of `mailhouse backup` (`backup/snapshot.py`): a store that reads one snapshot.

`open_snapshot(url, data_dir)` opens a `PostgresStore` on a single connection held in one
REPEATABLE READ, READ ONLY transaction (`Engine.begin_snapshot`): everything read through it —
directory, mailboxes, messages, in-database blobs, queue — is the database at one commit point,
while other nodes go on writing. `store/copy.py` then copies it like any store. Writes through it
fail. Close it to end the transaction.
"""

from __future__ import annotations

from pathlib import Path

from mailhouse.store.postgres.backend import PostgresStore


async def open_snapshot(url: str, data_dir: Path) -> PostgresStore:
    store = PostgresStore(url, data_dir)
    store.backend.engine.snapshot = True
    await store.open()
    try:
        await store.backend.engine.begin_snapshot()
    except BaseException:
        await store.close()
        raise
    return store
