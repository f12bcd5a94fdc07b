"""The embedded store: SQLite (WAL) index + blob files. Zero set-up default of Mailhouse.

`SqliteBackend` gives the rules of `store/mail.py`, `store/directory.py` and `store/queue.py`
their primitives: `SqliteTx` (one file per role: `directory.py`, `mail.py`, `queue.py`,
`feed.py`) over a synchronous sqlite3 connection, run by the group-commit writer thread of
`engine.py` (`run_sync` drives each rule coroutine, which never suspends). `SqliteStore` is
`MailStore` over this backend.

Invariants:
- Write jobs run in the writer thread and are group-committed (`engine.py`); reads run on
  reader threads or, for small indexed reads (`quick`), on the loop thread.
- Blobs up to `INLINE_BLOB_MAX` are written in the same transaction as their index rows;
  larger ones are immutable files, durable before the rows pointing at them commit.
- The change feed is the `changes` table (`feed.py`), written in the changing transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mailhouse.store.backend import Tx, run_sync
from mailhouse.store.blobfiles import FileBlobStore
from mailhouse.store.feed import FeedHub
from mailhouse.store.fts import Indexer
from mailhouse.store.locks import FileLease, FileMaildropLocks
from mailhouse.store.sqlite.blobs import INLINE_BLOB_MAX, HybridBlobStore, is_inline, new_inline_key
from mailhouse.store.sqlite.contacts import ContactsTx
from mailhouse.store.sqlite.directory import DirectoryTx
from mailhouse.store.sqlite.engine import Engine
from mailhouse.store.sqlite.feed import FeedTx, Poller
from mailhouse.store.sqlite.fts import FtsTx
from mailhouse.store.sqlite.limits import LimitsTx
from mailhouse.store.sqlite.mail import MailTx
from mailhouse.store.sqlite.queue import QueueTx
from mailhouse.store.sqlite.reports import ReportsTx
from mailhouse.store.sqlite.sieve import SieveTx
from mailhouse.store.sqlite.spam import SpamTx
from mailhouse.store.sqlite.transfer import SqliteTransfer
from mailhouse.store.sqlite.websessions import WebSessionsTx
from mailhouse.store.store import MailStore

T = TypeVar("T")

__all__ = ["INLINE_BLOB_MAX", "HybridBlobStore", "SqliteBackend", "SqliteStore", "SqliteTx"]


class SqliteTx(
    DirectoryTx,
    MailTx,
    QueueTx,
    LimitsTx,
    SpamTx,
    ContactsTx,
    SieveTx,
    ReportsTx,
    FeedTx,
    FtsTx,
    WebSessionsTx,
):
    """`store.backend.Tx` on one sqlite3 connection (methods never suspend)."""

    __slots__ = ("c", "published")

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c
        self.published = False


class SqliteBackend:
    """`store.backend.Backend` on SQLite + files."""

    kind = "sqlite"

    def __init__(self, db_path: Path, blob_dir: Path, lock_dir: Path | None = None) -> None:
        self.engine = Engine(db_path)
        self.files = FileBlobStore(blob_dir)
        self._blobs = HybridBlobStore(self.engine, self.files)
        # POP3 maildrop locks: flock files next to the blobs (<data_dir>/locks), one host
        self.maildrop_locks = FileMaildropLocks(lock_dir or Path(blob_dir).parent / "locks")
        self.poller = Poller(self.engine)

    @property
    def blobs(self) -> HybridBlobStore:
        return self._blobs

    async def open(self) -> None:
        if self.engine.opened:
            return
        await self.engine.open()
        await self.poller.open()

    async def close(self) -> None:
        self.poller.close()
        await self.engine.close()

    async def write(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, single: bool = False) -> T:
        txs: list[SqliteTx] = []

        def job(c: sqlite3.Connection) -> T:
            tx = SqliteTx(c)
            txs.append(tx)
            return run_sync(fn(tx))

        try:
            return await self.engine.write(job)
        finally:
            if txs and txs[0].published:
                self.poller.kick()  # our own subscribers hear of the change now (feed.py)

    async def read(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, quick: bool = False) -> T:
        job: Callable[[sqlite3.Connection], T] = lambda c: run_sync(fn(SqliteTx(c)))  # noqa: E731
        if quick:
            return await self.engine.read_quick(job)
        return await self.engine.read(job)

    def commit_mark(self) -> int | None:
        """`store.backend.CommitMarks`: the engine's ``PRAGMA data_version`` mark."""
        return self.engine.commit_mark()

    def blob_in_tx(self, size: int) -> bool:
        return size <= INLINE_BLOB_MAX

    def new_tx_blob_key(self) -> str:
        return new_inline_key()

    async def delete_external_blobs(self, keys: Sequence[str]) -> None:
        files = [k for k in keys if not is_inline(k)]  # inline ones went with the rows
        if files:
            await self.files.delete(files)

    def feed_wake(self, hub: FeedHub) -> None:
        self.poller.wake(hub)

    async def feed_ready(self, hub: FeedHub) -> None:
        """Nothing to wait for: the poller reads every change committed after registration."""

    async def try_lock_maildrop(self, mailbox_id: int) -> FileLease | None:
        """RFC 1939 §8: flock, shared by every worker process on this host (store/locks.py)."""
        return self.maildrop_locks.try_acquire(mailbox_id)

    def transfer(self) -> SqliteTransfer:
        return SqliteTransfer(self.engine, self._blobs, self.files)


class SqliteStore(MailStore):
    """`api.Store` on SQLite: `MailStore` over a `SqliteBackend`."""

    backend: SqliteBackend

    def __init__(
        self, db_path: Path, blob_dir: Path, lock_dir: Path | None = None, indexer: Indexer | None = None
    ) -> None:
        super().__init__(SqliteBackend(db_path, blob_dir, lock_dir), indexer)

    @property
    def db_path(self) -> Path:
        return self.backend.engine.db_path

    @property
    def files(self) -> FileBlobStore:
        return self.backend.files

    @property
    def _quick(self) -> sqlite3.Connection | None:  # tests/store/test_sqlite_quick_reads.py
        return self.backend.engine._quick

    async def _read_quick(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.backend.engine.read_quick(fn)
