"""The embedded store: SQLite (WAL) index + blob files. Zero set-up default of Mailhouse.

Invariants:
- All SQL runs on one dedicated thread per process holding one connection, so the event
  loop never blocks on disk; several processes (workers) share the database file, and
  SQLite's locking serialises their write transactions (BEGIN IMMEDIATE, busy timeout).
- `synchronous=FULL` in WAL mode: a returned commit survives power loss.
- Concurrent write calls from many sessions are group-committed: the writer thread drains
  every pending write job into one transaction (each job in its own SAVEPOINT so one
  job's failure does not undo the others), then commits once and answers them all.
- The change feed is the `changes` table, written in the same transaction as the change
  and polled by each process, so IDLE sessions in one worker see deliveries made by
  another worker within `POLL_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue as _queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from mailhouse.store.api import (
    Account,
    Alias,
    AlreadyExists,
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
    Usage,
)
from mailhouse.store.blobfiles import FileBlobStore, new_key
from mailhouse.store.crlf import to_crlf
from mailhouse.store.locks import FileLease, FileMaildropLocks
from mailhouse.store.sqlite.schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_INTERVAL = 0.1  # seconds between change-feed polls (IDLE must report within 1 s)
BUSY_TIMEOUT_MS = 30_000  # other worker processes hold the write lock at most this long
MAX_GROUP = 256  # write jobs per group commit
READER_THREADS = 2  # read connections per process (WAL allows them beside the writer)
INLINE_BLOB_MAX = 512 * 1024  # messages up to this size live in the database: one group-committed fsync
CHANGES_KEEP_SECONDS = 3600.0  # change-feed rows older than this are pruned


def _flags_to_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def _inline(key: str) -> bool:
    """Blob keys of messages kept inline in the ``blobs`` table (≤ INLINE_BLOB_MAX) start with "i";
    the others name immutable files (``blobfiles.FileBlobStore``)."""
    return key.startswith("i")


def _new_inline_key() -> str:
    return "i" + new_key()


_FLAG_SETS: dict[str, frozenset[str]] = {}  # a mailbox has few distinct flag strings: share the sets
_FLAG_SETS_MAX = 4096  # bound on the interned strings (cleared when exceeded)
_NO_FLAGS: frozenset[str] = frozenset()


def _text_to_flags(text: str) -> frozenset[str]:
    if not text:
        return _NO_FLAGS
    got = _FLAG_SETS.get(text)
    if got is None:
        if len(_FLAG_SETS) >= _FLAG_SETS_MAX:
            _FLAG_SETS.clear()
        got = _FLAG_SETS[text] = frozenset(text.split())
    return got


def _msg(row: sqlite3.Row | tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(
        mailbox_id=row[0], uid=row[1], modseq=row[2], flags=_text_to_flags(row[3]),
        internaldate=row[4], size=row[5], blob_key=row[6], saved=row[7],
    )


_MSG_COLS = "mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved"


class _Job:
    __slots__ = ("fn", "future", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], write: bool) -> None:
        self.fn = fn
        self.write = write
        self.future: Future[Any] = Future()


class HybridBlobStore:
    """Small blobs in the `blobs` table (key prefix "i"), large ones as files.

    A small message is then written in the same transaction as its index rows, so one
    group-committed WAL fsync makes many deliveries durable at once; a file costs two
    journal commits (file and directory fsync) of its own.
    """

    def __init__(self, store: SqliteStore, files: FileBlobStore) -> None:
        self.store = store
        self.files = files

    async def put(self, data: bytes) -> str:
        if len(data) > INLINE_BLOB_MAX:
            return await self.files.put(data)
        key = _new_inline_key()
        await self.store._write(lambda c: c.execute("INSERT INTO blobs VALUES (?, ?)", (key, data)))
        return key

    async def get(self, key: str) -> bytes:
        if not _inline(key):
            return await self.files.get(key)
        row = await self.store._read(lambda c: c.execute("SELECT data FROM blobs WHERE key=?", (key,)).fetchone())
        if row is None:
            raise FileNotFoundError(key)
        return bytes(row[0])

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Several blobs with one hop to a reader thread for the inline ones; missing keys are left out.

        An optional extension of ``BlobStore`` (POP3 reads ahead with it); ``get`` stays the contract.
        """
        out: dict[str, bytes] = {}
        inline = [k for k in keys if _inline(k)]
        if inline:

            def fn(c: sqlite3.Connection) -> dict[str, bytes]:
                found: dict[str, bytes] = {}
                for i in range(0, len(inline), 500):  # stay below SQLITE_MAX_VARIABLE_NUMBER
                    part = inline[i : i + 500]
                    sql = f"SELECT key, data FROM blobs WHERE key IN ({','.join('?' * len(part))})"
                    for k, d in c.execute(sql, part):
                        found[k] = bytes(d)
                return found

            out.update(await self.store._read(fn))
        for k in keys:
            if not _inline(k):
                try:
                    out[k] = await self.files.get(k)
                except FileNotFoundError:
                    pass
        return out

    @staticmethod
    def _delete_inline(c: sqlite3.Connection, keys: list[tuple[str]]) -> None:
        # One execute per key rather than executemany: CPython 3.11's executemany can fail
        # with "bad parameter or other API misuse" when group commit runs it right after
        # other jobs on the same connection (seen under concurrent IMAP EXPUNGE load).
        for key in keys:
            c.execute("DELETE FROM blobs WHERE key=?", key)

    async def delete(self, keys: Sequence[str]) -> None:
        inline = [(k,) for k in keys if _inline(k)]
        if inline:
            await self.store._write(lambda c: self._delete_inline(c, inline))
        await self.files.delete([k for k in keys if not _inline(k)])


class SqliteStore:
    def __init__(self, db_path: Path, blob_dir: Path, lock_dir: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.files = FileBlobStore(blob_dir)
        # POP3 maildrop locks: flock files next to the blobs (<data_dir>/locks), one host
        self.maildrop_locks = FileMaildropLocks(lock_dir or Path(blob_dir).parent / "locks")
        self.blobs = HybridBlobStore(self, self.files)
        self._jobs: _queue.SimpleQueue[_Job | None] = _queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reads: _queue.SimpleQueue[_Job | None] = _queue.SimpleQueue()
        self._readers: list[threading.Thread] = []
        self._lock_fd = -1
        self._subscribers: dict[int, set[asyncio.Queue[Change]]] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._last_change = 0
        self._opened = False
        self._quick: sqlite3.Connection | None = None  # see _read_quick
        self._quick_owner = (0, 0)  # (pid, thread) that may use _quick

    async def try_lock_maildrop(self, mailbox_id: int) -> FileLease | None:
        """RFC 1939 §8: flock, shared by every worker process on this host (store/locks.py)."""
        return self.maildrop_locks.try_acquire(mailbox_id)

    # ---------------------------------------------------------------- plumbing
    async def open(self) -> None:
        if self._opened:
            return
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._worker, args=(ready,), name="sqlite-store", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        for i in range(READER_THREADS):  # WAL: readers never wait for the writer's commit
            t = threading.Thread(target=self._reader, name=f"sqlite-read-{i}", daemon=True)
            t.start()
            self._readers.append(t)
        self._last_change = await self._read(lambda c: c.execute("SELECT coalesce(max(id),0) FROM changes").fetchone()[0])
        self._opened = True

    async def close(self) -> None:
        if self._quick is not None:
            self._quick.close()
            self._quick = None
        if self._poll_task:
            self._poll_task.cancel()
            self._poll_task = None
        for _ in self._readers:
            self._reads.put(None)
        for t in self._readers:
            await asyncio.to_thread(t.join)
        self._readers = []
        if self._thread:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._opened = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # durability rule: a commit is on disk
        # SQLite's own default, stated because Debian builds with SECURE_DELETE on: zeroing freed
        # pages journals every expunged inline blob again (16 MiB of WAL and fsync for a
        # 1,000-message POP3 UPDATE instead of 0.3 MiB). Freed space is reused like an
        # unlinked file's blocks (the file blob store, Maildir); VACUUM reclaims it.
        conn.execute("PRAGMA secure_delete=OFF")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for i in range(version, len(MIGRATIONS)):
                migration = MIGRATIONS[i]
                for stmt in migration if isinstance(migration, list) else migration.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={i + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _worker(self, ready: Future[None]) -> None:
        try:
            self._lock_fd = os.open(str(self.db_path) + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
            conn = self._connect()
            self._migrate(conn)
        except BaseException as e:  # noqa: BLE001 - reported to open()
            ready.set_exception(e)
            return
        ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is None:
                break
            if not job.write:
                self._run_read(conn, job)
                continue
            batch = [job]
            stop = False
            while len(batch) < MAX_GROUP:
                try:
                    nxt = self._jobs.get_nowait()
                except _queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not nxt.write:
                    self._run_read(conn, nxt)
                    continue
                batch.append(nxt)
            self._run_writes(conn, batch)
            if stop:
                break
        conn.close()
        os.close(self._lock_fd)

    def _reader(self) -> None:
        conn = self._connect()
        while True:
            job = self._reads.get()
            if job is None:
                break
            self._run_read(conn, job)
        conn.close()

    @staticmethod
    def _run_read(conn: sqlite3.Connection, job: _Job) -> None:
        try:
            job.future.set_result(job.fn(conn))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            job.future.set_exception(e)

    def _run_writes(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # Processes take turns through a flock first: SQLite's own busy handler sleeps in
        # steps of up to 100 ms, which would stall group commit across worker processes.
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._run_writes_locked(conn, batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def _run_writes_locked(conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[_Job, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:  # noqa: BLE001
            for j in batch:
                j.future.set_exception(e)
            return
        for j in batch:
            conn.execute("SAVEPOINT job")
            try:
                r = j.fn(conn)
                conn.execute("RELEASE job")
                results.append((j, True, r))
            except BaseException as e:  # noqa: BLE001 - this job only
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((j, False, e))
        try:
            conn.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for j in batch:
                j.future.set_exception(e)
            return
        for j, ok, r in results:
            if ok:
                j.future.set_result(r)
            else:
                j.future.set_exception(r)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        job = _Job(fn, write=False)
        self._reads.put(job)
        return await asyncio.wrap_future(job.future)  # type: ignore[no-any-return,unused-ignore]

    async def _read_quick(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A small indexed read run on the calling (event-loop) thread.

        Each hop to a reader thread costs a GIL hand-over (up to the 5 ms switch interval while
        the loop is busy) and future chaining; for the per-command reads of IMAP (one mailbox
        row; the changes since a modseq) that was most of a command's latency. WAL readers
        never wait for the writer; the connection is query-only with no busy timeout, so a
        rare SQLITE_BUSY (a checkpoint resetting the WAL) falls back to a reader thread
        instead of blocking the loop. Only for reads bounded by an index."""
        conn = self._quick
        owner = (os.getpid(), threading.get_ident())
        if conn is None or self._quick_owner != owner:
            if not self._opened or conn is not None:  # not open, or another thread's (process's) loop
                return await self._read(fn)
            conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA busy_timeout=0")
            self._quick, self._quick_owner = conn, owner
        try:
            return fn(conn)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            return await self._read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        job = _Job(fn, write=True)
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)  # type: ignore[no-any-return,unused-ignore]

    @staticmethod
    def _change(conn: sqlite3.Connection, account_id: int, mailbox_id: int, kind: str, modseq: int) -> None:
        conn.execute(
            "INSERT INTO changes(account_id, mailbox_id, kind, modseq, at) VALUES (?,?,?,?,?)",
            (account_id, mailbox_id, kind, modseq, time.time()),
        )

    # ---------------------------------------------------------------- change feed
    async def subscribe(self, account_id: int) -> AsyncIterator[Change]:
        q: asyncio.Queue[Change] = asyncio.Queue(maxsize=1000)
        self._subscribers.setdefault(account_id, set()).add(q)
        if self._poll_task is None or self._poll_task.done():
            self._poll_task = asyncio.get_running_loop().create_task(self._poll())
        try:
            while True:
                yield await q.get()
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subscribers[account_id]

    async def _poll(self) -> None:
        last_prune = time.time()
        while self._subscribers:
            await asyncio.sleep(POLL_INTERVAL)
            rows = await self._read(self._changes_after(self._last_change))
            for rid, acc, mbox, kind, modseq in rows:
                self._last_change = max(self._last_change, rid)
                for q in self._subscribers.get(acc, ()):
                    if q.full():
                        continue  # a wake-up is already pending; sessions re-read state anyway
                    q.put_nowait(Change(acc, mbox, kind, modseq))
            if time.time() - last_prune > 60:
                last_prune = time.time()
                cutoff = time.time() - CHANGES_KEEP_SECONDS
                await self._write(self._prune_changes(cutoff))

    @staticmethod
    def _changes_after(last: int) -> Callable[[sqlite3.Connection], list[Any]]:
        return lambda c: c.execute(
            "SELECT id, account_id, mailbox_id, kind, modseq FROM changes WHERE id > ? ORDER BY id LIMIT 5000", (last,)
        ).fetchall()

    @staticmethod
    def _prune_changes(cutoff: float) -> Callable[[sqlite3.Connection], object]:
        return lambda c: c.execute("DELETE FROM changes WHERE at < ?", (cutoff,))

    # ---------------------------------------------------------------- directory
    async def directory_generation(self) -> int:
        row = await self._read(lambda c: c.execute("SELECT value FROM meta WHERE key='dirgen'").fetchone())
        return int(row[0]) if row else 0

    async def add_domain(self, name: str) -> Domain:
        now = time.time()

        def fn(c: sqlite3.Connection) -> Domain:
            try:
                cur = c.execute("INSERT INTO domains(name, created) VALUES (?,?)", (name, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"domain {name} already exists") from None
            return Domain(int(cur.lastrowid or 0), name, now)

        return await self._write(fn)

    async def get_domain(self, name: str) -> Domain | None:
        row = await self._read(lambda c: c.execute("SELECT id, name, created FROM domains WHERE name=?", (name,)).fetchone())
        return Domain(*row) if row else None

    async def list_domains(self) -> list[Domain]:
        rows = await self._read(lambda c: c.execute("SELECT id, name, created FROM domains ORDER BY name").fetchall())
        return [Domain(*r) for r in rows]

    async def remove_domain(self, name: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT id FROM domains WHERE name=?", (name,)).fetchone()
            if not row:
                raise NotFound(f"domain {name} does not exist")
            n = c.execute("SELECT count(*) FROM accounts WHERE domain_id=?", (row[0],)).fetchone()[0]
            if n:
                raise AlreadyExists(f"domain {name} still has {n} account(s); remove them first")
            c.execute("DELETE FROM aliases WHERE source LIKE ?", (f"%@{name}",))
            c.execute("DELETE FROM dkim_keys WHERE domain=?", (name,))
            c.execute("DELETE FROM domains WHERE id=?", (row[0],))

        await self._write(fn)

    _ACC_COLS = (
        "id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
        " scram_salt, scram_iter, scram_stored, scram_server, created"
    )

    @staticmethod
    def _account(r: tuple[Any, ...]) -> Account:
        scram = ScramKeys(r[7], r[8], r[9], r[10]) if r[7] is not None else None
        return Account(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), scram, r[11])

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
        from mailhouse.store.api import SPECIAL_MAILBOXES

        domain = address.rpartition("@")[2]
        now = time.time()

        def fn(c: sqlite3.Connection) -> Account:
            d = c.execute("SELECT id FROM domains WHERE name=?", (domain,)).fetchone()
            if not d:
                raise NotFound(f"domain {domain} is not hosted here")
            try:
                cur = c.execute(
                    "INSERT INTO accounts(address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                    " scram_salt, scram_iter, scram_stored, scram_server, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        address, d[0], password_hash, quota_bytes, quota_messages, int(is_admin),
                        scram.salt if scram else None, scram.iterations if scram else None,
                        scram.stored_key if scram else None, scram.server_key if scram else None, now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"account {address} already exists") from None
            acc_id = int(cur.lastrowid or 0)
            for name, use in SPECIAL_MAILBOXES:
                self._create_mailbox(c, acc_id, name, use)
                c.execute("INSERT OR IGNORE INTO subscriptions VALUES (?,?)", (acc_id, name))
            return Account(acc_id, address, d[0], password_hash, quota_bytes, quota_messages, is_admin, scram, now)

        return await self._write(fn)

    async def get_account(self, address: str) -> Account | None:
        row = await self._read(
            lambda c: c.execute(f"SELECT {self._ACC_COLS} FROM accounts WHERE address=?", (address,)).fetchone()
        )
        return self._account(row) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._read(
            lambda c: c.execute(f"SELECT {self._ACC_COLS} FROM accounts WHERE id=?", (account_id,)).fetchone()
        )
        return self._account(row) if row else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain:
            rows = await self._read(
                lambda c: c.execute(
                    f"SELECT {self._ACC_COLS} FROM accounts WHERE address LIKE ? ORDER BY address", (f"%@{domain}",)
                ).fetchall()
            )
        else:
            rows = await self._read(
                lambda c: c.execute(f"SELECT {self._ACC_COLS} FROM accounts ORDER BY address").fetchall()
            )
        return [self._account(r) for r in rows]

    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> None:
        def fn(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE accounts SET password_hash=?, scram_salt=?, scram_iter=?, scram_stored=?, scram_server=?"
                " WHERE address=?",
                (
                    password_hash, scram.salt if scram else None, scram.iterations if scram else None,
                    scram.stored_key if scram else None, scram.server_key if scram else None, address,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"account {address} does not exist")

        await self._write(fn)

    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> None:
        def fn(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE accounts SET quota_bytes=?, quota_messages=? WHERE address=?", (quota_bytes, quota_messages, address)
            )
            if cur.rowcount == 0:
                raise NotFound(f"account {address} does not exist")

        await self._write(fn)

    async def remove_account(self, address: str) -> None:
        def fn(c: sqlite3.Connection) -> list[str]:
            row = c.execute("SELECT id FROM accounts WHERE address=?", (address,)).fetchone()
            if not row:
                raise NotFound(f"account {address} does not exist")
            acc = row[0]
            keys = [
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT blob_key FROM messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=?)",
                    (acc,),
                )
            ]
            c.execute("DELETE FROM messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=?)", (acc,))
            c.execute("DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=?)", (acc,))
            c.execute("DELETE FROM mailboxes WHERE account_id=?", (acc,))
            c.execute("DELETE FROM subscriptions WHERE account_id=?", (acc,))
            c.execute("DELETE FROM metadata WHERE account_id=?", (acc,))
            c.execute("DELETE FROM accounts WHERE id=?", (acc,))
            return [k for k in keys if not self._referenced(c, k)]

        keys = await self._write(fn)
        await self.blobs.delete(keys)

    async def add_alias(self, source: str, destination: str) -> Alias:
        def fn(c: sqlite3.Connection) -> Alias:
            domain = source.rpartition("@")[2]
            if not c.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                raise NotFound(f"domain {domain} is not hosted here")
            try:
                cur = c.execute("INSERT INTO aliases(source, destination) VALUES (?,?)", (source, destination))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"alias {source} → {destination} already exists") from None
            return Alias(int(cur.lastrowid or 0), source, destination)

        return await self._write(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain:
            rows = await self._read(
                lambda c: c.execute(
                    "SELECT id, source, destination FROM aliases WHERE source LIKE ? ORDER BY source, destination",
                    (f"%@{domain}",),
                ).fetchall()
            )
        else:
            rows = await self._read(
                lambda c: c.execute("SELECT id, source, destination FROM aliases ORDER BY source, destination").fetchall()
            )
        return [Alias(*r) for r in rows]

    async def aliases_for(self, source: str) -> list[Alias]:
        rows = await self._read(
            lambda c: c.execute("SELECT id, source, destination FROM aliases WHERE source=? ORDER BY id", (source,)).fetchall()
        )
        return [Alias(*r) for r in rows]

    async def remove_alias(self, source: str, destination: str | None = None) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if destination is None:
                cur = c.execute("DELETE FROM aliases WHERE source=?", (source,))
            else:
                cur = c.execute("DELETE FROM aliases WHERE source=? AND destination=?", (source, destination))
            if cur.rowcount == 0:
                raise NotFound(f"alias {source} does not exist")

        await self._write(fn)

    async def set_dkim_key(self, key: DkimKey) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO dkim_keys VALUES (?,?,?,?,?)",
                (key.domain, key.selector, key.algorithm, key.private_key, key.public_record),
            )
        )

    async def shared_secret(self, name: str, candidate: str) -> str:
        def fn(c: sqlite3.Connection) -> str:
            key = "secret:" + name  # the meta table holds the store's own key/values
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, candidate))
            return str(c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

        return await self._write(fn)

    async def get_dkim_keys(self, domain: str) -> list[DkimKey]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT domain, selector, algorithm, private_key, public_record FROM dkim_keys WHERE domain=? ORDER BY algorithm DESC",
                (domain,),
            ).fetchall()
        )
        return [DkimKey(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    # ---------------------------------------------------------------- mailboxes
    @staticmethod
    def _create_mailbox(c: sqlite3.Connection, account_id: int, name: str, special_use: str | None) -> Mailbox:
        # RFC 9051 §2.3.1.1: a re-created mailbox must get a new UIDVALIDITY, so it is
        # strictly increasing across the whole store (time-based, bumped past the last).
        row = c.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone()
        uv = max(int(time.time()), (int(row[0]) + 1) if row else 0)
        c.execute("INSERT OR REPLACE INTO meta VALUES ('uidvalidity', ?)", (str(uv),))
        try:
            cur = c.execute(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, uidnext, highestmodseq, special_use) VALUES (?,?,?,?,?,?)",
                (account_id, name, uv, 1, 1, special_use),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return Mailbox(int(cur.lastrowid or 0), account_id, name, uv, 1, 1, special_use)

    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox:
        def fn(c: sqlite3.Connection) -> Mailbox:
            mb = self._create_mailbox(c, account_id, name, special_use)
            self._change(c, account_id, mb.id, "mailbox", 0)
            return mb

        return await self._write(fn)

    _MB_COLS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = await self._read_quick(  # UNIQUE(account_id, name)
            lambda c: c.execute(
                f"SELECT {self._MB_COLS} FROM mailboxes WHERE account_id=? AND name=?", (account_id, name)
            ).fetchone()
        )
        return Mailbox(*row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = await self._read_quick(
            lambda c: c.execute(f"SELECT {self._MB_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        )
        return Mailbox(*row) if row else None

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {self._MB_COLS} FROM mailboxes WHERE account_id=? ORDER BY name", (account_id,)
            ).fetchall()
        )
        return [Mailbox(*r) for r in rows]

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> Mailbox:
        def fn(c: sqlite3.Connection) -> Mailbox:
            row = c.execute(f"SELECT {self._MB_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if not row:
                raise NotFound("no such mailbox")
            try:
                c.execute("UPDATE mailboxes SET name=? WHERE id=?", (new_name, mailbox_id))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"mailbox {new_name} already exists") from None
            self._change(c, row[1], mailbox_id, "mailbox", 0)
            return Mailbox(row[0], row[1], new_name, row[3], row[4], row[5], row[6])

        return await self._write(fn)

    async def delete_mailbox(self, mailbox_id: int) -> list[str]:
        def fn(c: sqlite3.Connection) -> list[str]:
            row = c.execute("SELECT account_id FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if not row:
                raise NotFound("no such mailbox")
            agg = c.execute("SELECT count(*), coalesce(sum(size),0) FROM messages WHERE mailbox_id=?", (mailbox_id,)).fetchone()
            keys = [r[0] for r in c.execute("SELECT DISTINCT blob_key FROM messages WHERE mailbox_id=?", (mailbox_id,))]
            c.execute("DELETE FROM messages WHERE mailbox_id=?", (mailbox_id,))
            c.execute("DELETE FROM expunged WHERE mailbox_id=?", (mailbox_id,))
            c.execute("DELETE FROM mailboxes WHERE id=?", (mailbox_id,))
            c.execute(
                "UPDATE accounts SET used_messages=used_messages-?, used_bytes=used_bytes-? WHERE id=?",
                (agg[0], agg[1], row[0]),
            )
            self._change(c, row[0], mailbox_id, "mailbox", 0)
            return [k for k in keys if not self._referenced(c, k)]

        keys = await self._write(fn)
        await self.blobs.delete(keys)
        return keys

    async def subscriptions(self, account_id: int) -> list[str]:
        rows = await self._read(
            lambda c: c.execute("SELECT name FROM subscriptions WHERE account_id=? ORDER BY name", (account_id,)).fetchall()
        )
        return [r[0] for r in rows]

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if subscribed:
                cur = c.execute("INSERT OR IGNORE INTO subscriptions VALUES (?,?)", (account_id, name))
            else:
                cur = c.execute("DELETE FROM subscriptions WHERE account_id=? AND name=?", (account_id, name))
            if cur.rowcount:  # change feed: NOTIFY SubscriptionChange (RFC 5465 §5.5)
                self._change(c, account_id, 0, "subscription", 0)

        await self._write(fn)

    # ---------------------------------------------------------------- messages
    @staticmethod
    def _referenced(c: sqlite3.Connection, key: str) -> bool:
        return bool(
            c.execute("SELECT 1 FROM messages WHERE blob_key=? LIMIT 1", (key,)).fetchone()
            or c.execute("SELECT 1 FROM queue WHERE blob_key=? LIMIT 1", (key,)).fetchone()
        )

    @staticmethod
    def _bump(c: sqlite3.Connection, mailbox_id: int, uids: int = 0) -> tuple[int, int, int]:
        """Allocate `uids` UIDs and one new modseq; returns (account_id, first uid, modseq)."""
        rows = c.execute(
            "UPDATE mailboxes SET uidnext=uidnext+?, highestmodseq=highestmodseq+1 WHERE id=?"
            " RETURNING account_id, uidnext-?, highestmodseq",
            (uids, mailbox_id, uids),
        ).fetchall()  # RETURNING must be stepped to the end, or the statement stays busy
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return int(row[0]), int(row[1]), int(row[2])

    def _append_rows(self, c: sqlite3.Connection, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        out: list[MessageRecord] = []
        now = time.time()
        for m in messages:
            if m.delivery_key is not None:
                row = c.execute(
                    f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=? AND delivery_key=?",
                    (m.mailbox_id, m.delivery_key),
                ).fetchone()
                if row:
                    out.append(_msg(row))
                    continue
            acc, uid, modseq = self._bump(c, m.mailbox_id, 1)
            rec = MessageRecord(
                m.mailbox_id, uid, modseq, m.flags, m.internaldate or now, m.size, m.blob_key, now
            )
            c.execute(
                f"INSERT INTO messages({_MSG_COLS}, delivery_key) VALUES (?,?,?,?,?,?,?,?,?)",
                (rec.mailbox_id, uid, modseq, _flags_to_text(rec.flags), rec.internaldate, rec.size, rec.blob_key,
                 now, m.delivery_key),
            )
            c.execute(
                "UPDATE accounts SET used_messages=used_messages+1, used_bytes=used_bytes+? WHERE id=?", (m.size, acc)
            )
            self._change(c, acc, m.mailbox_id, "append", modseq)
            out.append(rec)
        return out

    async def append(self, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        return await self._write(lambda c: self._append_rows(c, messages))

    async def deliver(self, blob: bytes, messages: Sequence[NewMessage]) -> list[MessageRecord]:
        blob = to_crlf(blob)  # api.py invariant: stored messages use CRLF
        if len(blob) > INLINE_BLOB_MAX:
            key = await self.files.put(blob)
            return await self.append([replace(m, blob_key=key, size=len(blob)) for m in messages])
        key = _new_inline_key()
        rows = [replace(m, blob_key=key, size=len(blob)) for m in messages]

        def fn(c: sqlite3.Connection) -> list[MessageRecord]:
            recs = self._append_rows(c, rows)
            if any(r.blob_key == key for r in recs):  # not all were repeats of an earlier delivery
                c.execute("INSERT INTO blobs VALUES (?, ?)", (key, blob))
            return recs

        return await self._write(fn)

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        rows = await self._read(
            lambda c: c.execute(f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=? ORDER BY uid", (mailbox_id,)).fetchall()
        )
        return [_msg(r) for r in rows]

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        rows = await self._read_quick(  # index messages_modseq
            lambda c: c.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=? AND modseq>? ORDER BY uid", (mailbox_id, modseq)
            ).fetchall()
        )
        return [_msg(r) for r in rows]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        rows = await self._read_quick(  # index expunged_modseq: only the newer expunges
            lambda c: c.execute(
                "SELECT uid FROM expunged WHERE mailbox_id=? AND modseq>?", (mailbox_id, modseq)
            ).fetchall()
        )
        return sorted(r[0] for r in rows)  # ORDER BY uid would make SQLite walk the primary key instead

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagResult:
        def fn(c: sqlite3.Connection) -> FlagResult:
            updated: list[MessageRecord] = []
            failed: list[int] = []
            modseq = 0
            acc = 0
            for uid in uids:
                row = c.execute(f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=? AND uid=?", (mailbox_id, uid)).fetchone()
                if not row:
                    continue
                rec = _msg(row)
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
                if new == rec.flags:
                    continue
                if not modseq:
                    acc, _, modseq = self._bump(c, mailbox_id, 0)
                c.execute(
                    "UPDATE messages SET flags=?, modseq=? WHERE mailbox_id=? AND uid=?",
                    (_flags_to_text(new), modseq, mailbox_id, uid),
                )
                updated.append(MessageRecord(rec.mailbox_id, uid, modseq, new, rec.internaldate, rec.size, rec.blob_key, rec.saved))
            if modseq:
                self._change(c, acc, mailbox_id, "flags", modseq)
            return FlagResult(updated, failed)

        return await self._write(fn)

    def _expunge_rows(self, c: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], list[str]]:
        """Set-based (one DELETE for all UIDs: a POP3 UPDATE expunges a whole maildrop at once).

        Unreferenced inline blobs are deleted in the same transaction (no second commit, no
        orphans after a crash); the keys of all unreferenced blobs are returned.
        """
        wanted = list(dict.fromkeys(int(u) for u in uids))  # input order, no duplicates
        if not wanted:
            return [], []
        rows = c.execute(
            "DELETE FROM messages WHERE mailbox_id=? AND uid IN (SELECT value FROM json_each(?))"
            " RETURNING uid, blob_key, size",
            (mailbox_id, json.dumps(wanted)),
        ).fetchall()  # stepped to the end: a half-read RETURNING statement breaks the next job
        if not rows:
            return [], []
        acc, _, modseq = self._bump(c, mailbox_id, 0)
        deleted = {int(r[0]) for r in rows}
        gone = [u for u in wanted if u in deleted]
        c.execute(
            "INSERT OR REPLACE INTO expunged SELECT ?, value, ? FROM json_each(?)",
            (mailbox_id, modseq, json.dumps(gone)),
        )
        c.execute(
            "UPDATE accounts SET used_messages=used_messages-?, used_bytes=used_bytes-? WHERE id=?",
            (len(gone), sum(int(r[2]) for r in rows), acc),
        )
        self._change(c, acc, mailbox_id, "expunge", modseq)
        free = [
            str(r[0])
            for r in c.execute(
                "SELECT value FROM json_each(?) WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_key=value)"
                " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_key=value)",
                (json.dumps(sorted({str(r[1]) for r in rows})),),
            ).fetchall()
        ]
        inline = [k for k in free if _inline(k)]
        if inline:
            c.execute("DELETE FROM blobs WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(inline),))
        return gone, free

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], list[str]]:
        gone, keys = await self._write(lambda c: self._expunge_rows(c, mailbox_id, uids))
        await self.files.delete([k for k in keys if not _inline(k)])  # inline ones went with the rows
        return gone, keys

    def _copy_rows(self, c: sqlite3.Connection, src: int, uids: Sequence[int], dst: int) -> list[tuple[int, int]]:
        rows = []
        for uid in uids:
            row = c.execute(f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id=? AND uid=?", (src, uid)).fetchone()
            if row:
                rows.append(_msg(row))
        new = self._append_rows(
            c,
            # RFC 9051 §6.4.7: COPY keeps flags and INTERNALDATE (\Recent aside)
            [NewMessage(dst, r.blob_key, r.size, r.flags, r.internaldate) for r in rows],
        )
        return [(r.uid, n.uid) for r, n in zip(rows, new, strict=True)]

    async def copy(self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int) -> list[tuple[int, int]]:
        return await self._write(lambda c: self._copy_rows(c, src_mailbox_id, uids, dst_mailbox_id))

    async def move(self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int) -> list[tuple[int, int]]:
        def fn(c: sqlite3.Connection) -> list[tuple[int, int]]:
            pairs = self._copy_rows(c, src_mailbox_id, uids, dst_mailbox_id)  # RFC 6851 §3.3: atomic
            self._expunge_rows(c, src_mailbox_id, [p[0] for p in pairs])
            return pairs

        return await self._write(fn)

    async def usage(self, account_id: int) -> Usage:
        row = await self._read(
            lambda c: c.execute("SELECT used_bytes, used_messages FROM accounts WHERE id=?", (account_id,)).fetchone()
        )
        if not row:
            raise NotFound("no such account")
        return Usage(row[0], row[1])

    async def get_metadata(self, account_id: int, mailbox: str, key: str) -> str | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT value FROM metadata WHERE account_id=? AND mailbox=? AND key=?", (account_id, mailbox, key)
            ).fetchone()
        )
        return row[0] if row else None

    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if value is None:
                cur = c.execute(
                    "DELETE FROM metadata WHERE account_id=? AND mailbox=? AND key=?", (account_id, mailbox, key)
                )
            else:
                cur = c.execute("INSERT OR REPLACE INTO metadata VALUES (?,?,?,?)", (account_id, mailbox, key, value))
            if cur.rowcount:  # change feed: NOTIFY Mailbox/ServerMetadataChange (RFC 5465 §5.6-7)
                self._change(c, account_id, 0, "metadata", 0)

        await self._write(fn)

    async def claim_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
        # one statement: the SET expressions read the old row, so ``prev`` is the old value
        def fn(c: sqlite3.Connection) -> int:
            rows = c.execute(
                "INSERT INTO recent(mailbox_id, uidvalidity, uid, prev) VALUES (?,?,?,0)"
                " ON CONFLICT(mailbox_id) DO UPDATE SET"
                " prev = CASE WHEN recent.uidvalidity = excluded.uidvalidity THEN recent.uid ELSE 0 END,"
                " uid = CASE WHEN recent.uidvalidity = excluded.uidvalidity"
                " THEN MAX(recent.uid, excluded.uid) ELSE excluded.uid END,"
                " uidvalidity = excluded.uidvalidity"
                " RETURNING prev",
                (mailbox_id, uidvalidity, up_to_uid),
            ).fetchall()  # RETURNING stepped to the end
            return int(rows[0][0]) if rows else 0

        return await self._write(fn)

    async def recent_claimed(self, mailbox_id: int, uidvalidity: int) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT uidvalidity, uid FROM recent WHERE mailbox_id=?", (mailbox_id,)).fetchone()
        )
        return int(row[1]) if row and int(row[0]) == uidvalidity else 0

    # ---------------------------------------------------------------- queue
    @staticmethod
    def _entry(r: tuple[Any, ...]) -> QueueEntry:
        rcpts = [QueueRecipient(**d) for d in json.loads(r[2])]
        return QueueEntry(
            id=r[0], sender=r[1], recipients=rcpts, blob_key=r[3], size=r[4], created=r[5], next_attempt=r[6],
            attempts=r[7], ret=r[8], envid=r[9], warned=bool(r[10]), lease_owner=r[11], lease_until=r[12],
            extra=json.loads(r[13]),
        )

    @staticmethod
    def _rcpts_json(e: QueueEntry) -> str:
        return json.dumps(
            [
                {"address": r.address, "status": r.status, "last_reply": r.last_reply, "notify": r.notify, "orcpt": r.orcpt}
                for r in e.recipients
            ]
        )

    _Q_COLS = (
        "id, sender, recipients, blob_key, size, created, next_attempt, attempts, ret, envid, warned,"
        " lease_owner, lease_until, extra"
    )

    async def enqueue(self, entry: QueueEntry, blob: bytes | None = None) -> None:
        try:
            await self._enqueue(entry, blob)
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"queue entry {entry.id} already exists") from None

    async def _enqueue(self, entry: QueueEntry, blob: bytes | None) -> None:
        inline: bytes | None = None
        if blob is not None:
            if len(blob) > INLINE_BLOB_MAX:
                entry.blob_key = await self.files.put(blob)
            else:  # blob and queue row in one transaction: one group-committed fsync
                entry.blob_key, inline = _new_inline_key(), blob

        def fn(c: sqlite3.Connection) -> None:
            if inline is not None:
                c.execute("INSERT INTO blobs VALUES (?, ?)", (entry.blob_key, inline))
            c.execute(
                f"INSERT INTO queue({self._Q_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.id, entry.sender, self._rcpts_json(entry), entry.blob_key, entry.size, entry.created,
                    entry.next_attempt, entry.attempts, entry.ret, entry.envid, int(entry.warned), entry.lease_owner,
                    entry.lease_until, json.dumps(entry.extra),
                ),
            )

        await self._write(fn)

    async def claim_due(self, now: float, owner: str, lease_seconds: float, limit: int) -> list[QueueEntry]:
        def fn(c: sqlite3.Connection) -> list[QueueEntry]:
            rows = c.execute(
                f"SELECT {self._Q_COLS} FROM queue WHERE next_attempt<=? AND lease_until<? ORDER BY next_attempt LIMIT ?",
                (now, now, limit),
            ).fetchall()
            out = []
            for r in rows:
                c.execute("UPDATE queue SET lease_owner=?, lease_until=? WHERE id=?", (owner, now + lease_seconds, r[0]))
                e = self._entry(r)
                e.lease_owner, e.lease_until = owner, now + lease_seconds
                out.append(e)
            return out

        return await self._write(fn)

    async def update(self, entry: QueueEntry) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE queue SET recipients=?, next_attempt=?, attempts=?, warned=?, lease_owner='', lease_until=0,"
                " extra=? WHERE id=?",
                (self._rcpts_json(entry), entry.next_attempt, entry.attempts, int(entry.warned), json.dumps(entry.extra),
                 entry.id),
            )
        )

    async def remove(self, entry_id: str) -> list[str]:
        def fn(c: sqlite3.Connection) -> list[str]:
            rows = c.execute("DELETE FROM queue WHERE id=? RETURNING blob_key", (entry_id,)).fetchall()
            row = rows[0] if rows else None
            if not row:
                raise NotFound(f"queue entry {entry_id} does not exist")
            if self._referenced(c, row[0]):
                return []
            if _inline(row[0]):  # an inline blob goes in the same transaction as its row
                c.execute("DELETE FROM blobs WHERE key=?", (row[0],))
            return [row[0]]

        keys = await self._write(fn)
        await self.files.delete([k for k in keys if not _inline(k)])
        return keys

    async def get(self, entry_id: str) -> QueueEntry | None:
        row = await self._read(lambda c: c.execute(f"SELECT {self._Q_COLS} FROM queue WHERE id=?", (entry_id,)).fetchone())
        return self._entry(row) if row else None

    async def list(self) -> list[QueueEntry]:
        rows = await self._read(lambda c: c.execute(f"SELECT {self._Q_COLS} FROM queue ORDER BY created").fetchall())
        return [self._entry(r) for r in rows]

