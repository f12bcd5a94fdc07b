"""The SQLite engine: connections, the group-commit writer thread, reader threads, quick reads.

Invariants:
- All writes run on one dedicated thread per process holding one connection, so the event
  loop never blocks on disk; several processes (workers) share the database file and take
  turns through a ``flock`` (SQLite's own busy handler sleeps in steps of up to 100 ms).
- `synchronous=FULL` in WAL mode: a returned commit survives power loss. Kept for every write
  (issue 13 §2 looked at the alternative): Dovecot's default ``mail_fsync = optimized`` fsyncs new
  mail files but not its index and flag changes, so a STORE or EXPUNGE may be lost there on power
  loss; here one group-committed WAL fsync covers the rows, flags and small message octets of
  every session's concurrent writes (an IMAP APPEND is one commit, ``Store.append_octets``), so
  "OK means durable" costs one fsync per batch, not per command, and the class stays the stronger one.
- Concurrent write jobs are group-committed: the writer thread drains every pending job into
  one transaction (each job in its own SAVEPOINT so one job's failure does not undo the
  others), then commits once and answers them all.
- WAL readers (`READER_THREADS` threads, and the loop thread's query-only connection for
  `read_quick`) never wait for the writer.
- `commit_mark` is SQLite's ``PRAGMA data_version`` on the loop thread's query-only connection:
  it moves when any other connection (this process's writer, another worker, the CLI) committed,
  so a caller that saw the same mark before and after knows nothing was committed in between
  (the shared IMAP index skips its mailbox-row read then, issue 13 §2).
- A database that cannot be used right now (locked past the busy timeout, disk I/O error,
  disk full, file cannot be opened) is reported as `api.StoreUnavailable`, the error every
  protocol answers with its temporary-failure reply (issue 12 item 11); any other SQLite
  error (constraint, syntax) stays what it is.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue as _queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, TypeVar

from mailhouse import metrics
from mailhouse.store.api import SchemaTooNew, StoreUnavailable
from mailhouse.store.sqlite import fts
from mailhouse.store.sqlite.schema import MIGRATIONS

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000  # other worker processes hold the write lock at most this long
MAX_GROUP = 256  # write jobs per group commit
READER_THREADS = 2  # read connections per process (WAL allows them beside the writer)
#: Primary result codes (https://sqlite.org/rescode.html) that mean "try again later".
UNAVAILABLE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another process held the lock past the busy timeout
        6,  # SQLITE_LOCKED
        10,  # SQLITE_IOERR: disk I/O error
        13,  # SQLITE_FULL: database or disk is full
        14,  # SQLITE_CANTOPEN: unable to open database file
        15,  # SQLITE_PROTOCOL: lock protocol error
    }
)


def is_unavailable(e: BaseException) -> bool:
    """Whether E says the database cannot be used right now (rather than: this job is wrong)."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, sqlite3.OperationalError) and code is not None and code & 0xFF in UNAVAILABLE_CODES


async def _await(job: _Job) -> Any:
    try:
        return await asyncio.wrap_future(job.future)
    except sqlite3.Error as e:
        if is_unavailable(e):
            raise StoreUnavailable(f"SQLite unavailable ({e})") from e
        raise


def _settle(future: Future[Any], ok: bool, value: Any) -> None:
    """Hand a result or an exception to FUTURE — unless its caller has cancelled it meanwhile (a
    write still commits: the caller merely stopped waiting). Setting a cancelled future raises
    InvalidStateError, which would end the store's reader or writer thread for every later caller."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except InvalidStateError:
        pass


class _Job:
    __slots__ = ("fn", "future", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], write: bool) -> None:
        self.fn = fn
        self.write = write
        self.future: Future[Any] = Future()


class Engine:
    """One SQLite database file: `write(fn)` (group-committed), `read(fn)`, `read_quick(fn)`."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._jobs: _queue.SimpleQueue[_Job | None] = _queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reads: _queue.SimpleQueue[_Job | None] = _queue.SimpleQueue()
        self._readers: list[threading.Thread] = []
        self._lock_fd = -1
        self._opened = False
        self._quick: sqlite3.Connection | None = None  # see read_quick
        self._quick_owner = (0, 0)  # (pid, thread) that may use _quick
        self._data_version = -1  # the quick connection's last PRAGMA data_version (commit_mark)
        self._mark = 0

    @property
    def opened(self) -> bool:
        return self._opened

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
        self._opened = True

    async def close(self) -> None:
        if self._quick is not None:
            self._quick.close()
            self._quick = None
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
            if version > len(MIGRATIONS):
                raise SchemaTooNew(version, len(MIGRATIONS))
            for i in range(version, len(MIGRATIONS)):
                migration = MIGRATIONS[i]
                for stmt in migration if isinstance(migration, list) else migration.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={i + 1}")
            fts.tune(conn)
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
        if not job.future.set_running_or_notify_cancel():
            return  # its caller was cancelled (a client gone, a timeout) before it ran: nobody waits
        try:
            _settle(job.future, True, job.fn(conn))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            _settle(job.future, False, e)

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
                _settle(j.future, False, e)
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
                _settle(j.future, False, e)
            return
        for j, ok, r in results:
            _settle(j.future, ok, r)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        job = _Job(fn, write=False)
        self._reads.put(job)
        with metrics.timed(metrics.STORE_SECONDS, "sqlite", "read"):
            return await _await(job)  # type: ignore[no-any-return]

    async def read_quick(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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
                return await self.read(fn)
            conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA busy_timeout=0")
            self._quick, self._quick_owner = conn, owner
            self._data_version = -1  # marks of an earlier connection are not comparable
        try:
            return fn(conn)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                if is_unavailable(e):
                    raise StoreUnavailable(f"SQLite unavailable ({e})") from e
                raise
            return await self.read(fn)

    def commit_mark(self) -> int | None:
        """A number that differs from every earlier one once anything was committed to the database
        since that one was taken; None where it cannot be told on this thread (then re-read).

        ``PRAGMA data_version`` (https://sqlite.org/pragma.html#pragma_data_version) changes when
        another connection commits; the quick connection never writes, so every commit counts."""
        conn = self._quick
        if conn is None or self._quick_owner != (os.getpid(), threading.get_ident()):
            return None
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None
        if version != self._data_version:
            self._data_version = version
            self._mark += 1
        return self._mark

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        job = _Job(fn, write=True)
        self._jobs.put(job)
        with metrics.timed(metrics.STORE_SECONDS, "sqlite", "write"):
            return await _await(job)  # type: ignore[no-any-return]


def read_version(db_path: Path) -> int | None:
    """The schema version of the database at DB_PATH without migrating it; None: no database."""
    if not db_path.exists():
        return None
    conn = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()
