"""The scale-out store: PostgreSQL (asyncpg, one pool per process) for the directory, the mail
index, the queue, the change feed and — by default — the message blobs.

Several Mailhouse nodes share one database; everything that must be unique or ordered is
decided by PostgreSQL, never by a node's memory. `PostgresBackend` gives the rules of
`store/mail.py`, `store/directory.py` and `store/queue.py` their primitives: `PgTx` (one file
per role: `directory.py`, `mail.py`, `queue.py`, `feed.py`) on a pooled connection inside one
transaction (`engine.py`); `PostgresStore` is `MailStore` over this backend.

Invariants:
- Every write runs in one transaction and returns only after it committed (`engine.py`);
  deadlocks and serialization failures are retried from the start.
- UID/MODSEQ allocation, lock order and FOR SHARE on copied rows: see `mail.py`.
- Queue claims use ``FOR UPDATE SKIP LOCKED`` and a lease (`queue.py`).
- The change feed is LISTEN/NOTIFY (`feed.py`), published in the changing transaction.
- Blobs live in the `blobs` table unless the URL says ``?blobs=s3://…``. With in-database
  blobs a delivery's blob and index rows commit in one transaction, and blobs that an
  expunge/delete leaves unreferenced are deleted in the same transaction, so there are
  neither dangling keys nor orphaned blobs.

URL: ``postgresql://user:pw@host:port/db?pool_min=1&pool_max=10&blobs=s3://bucket/prefix``;
the `pool_*` and `blobs` parameters are ours, the rest goes to asyncpg/libpq unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mailhouse.store.api import BlobStore
from mailhouse.store.backend import Tx, new_blob_key
from mailhouse.store.feed import FeedHub
from mailhouse.store.fts import Indexer
from mailhouse.store.postgres.blobs import PgBlobStore
from mailhouse.store.postgres.contacts import ContactsTx
from mailhouse.store.postgres.directory import DirectoryTx
from mailhouse.store.postgres.engine import (
    POOL_MAX,
    POOL_MIN,
    Conn,
    Engine,
    split_url,
    unavailable_as_store_error,
)
from mailhouse.store.postgres.feed import FeedTx, Listener
from mailhouse.store.postgres.fts import FtsTx
from mailhouse.store.postgres.limits import LimitsTx
from mailhouse.store.postgres.locks import PgLease, PgMaildropLocks
from mailhouse.store.postgres.mail import MailTx
from mailhouse.store.postgres.queue import QueueTx
from mailhouse.store.postgres.reports import ReportsTx
from mailhouse.store.postgres.sieve import SieveTx
from mailhouse.store.postgres.spam import SpamTx
from mailhouse.store.postgres.transfer import PgTransfer
from mailhouse.store.postgres.websessions import WebSessionsTx
from mailhouse.store.store import MailStore

T = TypeVar("T")

__all__ = ["PgBlobStore", "PgTx", "PostgresBackend", "PostgresStore", "split_url"]


class PgTx(
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
    """`store.backend.Tx` on one asyncpg connection."""

    def __init__(self, c: Conn, db_blobs: bool) -> None:
        self.c = c
        self.db_blobs = db_blobs


class PostgresBackend:
    """`store.backend.Backend` on PostgreSQL (+ S3 blobs optionally)."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        dsn, opts = split_url(url)
        self.engine = Engine(dsn, int(opts.get("pool_min", POOL_MIN)), int(opts.get("pool_max", POOL_MAX)))
        self._blobs: BlobStore
        blob_url = opts.get("blobs", "")
        if blob_url.startswith("s3://"):
            from mailhouse.store.postgres.blobs_s3 import S3BlobStore

            self._blobs = S3BlobStore(blob_url)
            self.db_blobs = False
        elif blob_url in ("", "postgresql", "db"):
            self._blobs = PgBlobStore(self.engine)
            self.db_blobs = True
        else:
            raise ValueError(f"unknown blob store {blob_url!r} (expected s3://bucket)")
        self.listener = Listener(dsn)
        self.maildrop_locks = PgMaildropLocks(dsn)  # POP3 [IN-USE] across nodes (locks.py)

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    async def open(self) -> None:
        if self.engine.opened:
            return
        self.listener.closing = False
        await self.engine.open()

    async def close(self) -> None:
        await self.listener.close()
        await self.maildrop_locks.close()
        await self.engine.close()

    async def write(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, single: bool = False) -> T:
        if single:  # one statement commits by itself: no BEGIN/COMMIT round trips
            return await self.engine.connection(lambda c: fn(PgTx(c, self.db_blobs)))
        return await self.engine.transaction(lambda c: fn(PgTx(c, self.db_blobs)))

    async def read(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, quick: bool = False) -> T:
        return await self.engine.connection(lambda c: fn(PgTx(c, self.db_blobs)))

    def blob_in_tx(self, size: int) -> bool:
        return self.db_blobs

    def new_tx_blob_key(self) -> str:
        return new_blob_key()

    async def delete_external_blobs(self, keys: Sequence[str]) -> None:
        """After commit: free blobs kept outside PostgreSQL (in-database ones went with the transaction)."""
        if keys and not self.db_blobs:
            await self._blobs.delete(keys)

    def feed_wake(self, hub: FeedHub) -> None:
        """Nothing to start here: `feed_ready` establishes the LISTEN connection."""

    async def feed_ready(self, hub: FeedHub) -> None:
        await self.listener.ensure(hub)

    async def try_lock_maildrop(self, mailbox_id: int) -> PgLease | None:
        """RFC 1939 §8 across nodes: a session-level advisory lock on a dedicated connection."""
        self.engine.pool()  # StoreError when the store is not open
        async with unavailable_as_store_error():
            return await self.maildrop_locks.try_acquire(mailbox_id)

    def transfer(self) -> PgTransfer:
        return PgTransfer(self.engine, self._blobs, self.db_blobs)


class PostgresStore(MailStore):
    """`api.Store` on PostgreSQL: `MailStore` over a `PostgresBackend`."""

    backend: PostgresBackend

    def __init__(self, url: str, data_dir: Path, indexer: Indexer | None = None) -> None:
        super().__init__(PostgresBackend(url), indexer)
        self.url = url
        self.data_dir = Path(data_dir)

    # what tests/store/test_postgres.py looks at
    @property
    def _dsn(self) -> str:
        return self.backend.engine.dsn

    @property
    def _listen_conn(self) -> Conn:
        return self.backend.listener.conn

    @property
    def _maildrop_locks(self) -> PgMaildropLocks:
        return self.backend.maildrop_locks

    def _pool_(self) -> Any:
        return self.backend.engine.pool()
