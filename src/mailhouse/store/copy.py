"""Copy a whole Mailhouse store to another backend, preserving IMAP state, and verify it.

`mailhouse store copy --from sqlite:///… --to postgresql://…` (either direction) moves an
installation so that no IMAP/POP3 client has to resynchronise: UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ (RFC 9051 §2.3.1.1, RFC 7162 §3.1), every message's UID, MODSEQ, flags,
INTERNALDATE and SAVEDATE, the expunged-UID memory (QRESYNC VANISHED, RFC 7162 §3.2.10) and
the delivery keys (idempotent redelivery) are copied verbatim, and so are the row ids of
domains, accounts, aliases and mailboxes (anything keyed on a mailbox id stays valid).

The store API has no "insert with this UID/UIDVALIDITY" operation, on purpose: mail
semantics live above the backends. This module is the one exception, kept in one place:
`_SqliteSide` and `_PostgresSide` reach into their backend through a small explicit
surface — `SqliteStore._read/_write(fn(sqlite3.Connection))` and
`PostgresStore._tx(fn(asyncpg.Connection))` / `._pool_()` — and hold every line of SQL
that copying needs. Everything else goes through the public store API.

Invariants:
- The destination must be empty (no domain, account or queue entry); nodes using the
  source must be stopped, or the copy is a snapshot of a moving target.
- Blobs are written (durably, by the blob store) before the index rows that point at them
  are committed (DESIGN.md §Durability). Blob keys are kept where the destination blob
  store accepts a given key (files, PostgreSQL); otherwise (S3) a new key is mapped.
- Identity sequences (PostgreSQL) and the UIDVALIDITY counter are moved past every copied
  value, so a mailbox created after the copy never reuses an id or a UIDVALIDITY.
- Queue entries are copied with their lease cleared: the nodes that held leases on the
  source are stopped, so their claims must not delay delivery for a lease period.
- `verify` compares source and destination field by field (blobs by SHA-256 of their bytes)
  and reports every difference; a copy is only reported good when nothing differs.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from mailhouse.store import open_store
from mailhouse.store.api import (
    Account,
    MessageRecord,
    QueueEntry,
    Store,
    StoreError,
)

# Every table of both schemas, and what copying does with it. A migration that adds a table
# must add it here (tests/cluster/test_store_copy.py fails until then).
TABLES: dict[str, str] = {
    "domains": "copied, ids kept",
    "accounts": "copied, ids kept (hashes, SCRAM keys, quotas, usage counters)",
    "aliases": "copied, ids kept",
    "dkim_keys": "copied",
    "mailboxes": "copied, ids, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ kept",
    "messages": "copied: UID, MODSEQ, flags, dates, size, delivery key; blob copied",
    "expunged": "copied (QRESYNC VANISHED memory)",
    "subscriptions": "copied",
    "metadata": "copied",
    "recent": "copied (IMAP \\Recent claims per mailbox, through the store API)",
    "queue": "copied, lease cleared; blob copied",
    "blobs": "PostgreSQL in-database blobs: copied through the blob store",
    "meta": "SQLite: the UIDVALIDITY counter and the shared secrets are carried over",
    "secrets": "PostgreSQL: shared secrets (the webmail's cookie key) copied, so sessions survive the move",
    "counters": "PostgreSQL: the UIDVALIDITY counter is carried over",
    "changes": "SQLite change-feed log: transient, not copied",
    "schema_version": "PostgreSQL: set by migrations",
}

BATCH = 200  # messages per destination transaction (and blobs copied between commits)
BLOB_CONCURRENCY = 8  # blobs read/written at once
MAX_REPORTED = 20  # differences listed per category in the verification report

MetaRow = tuple[int, str, str, str]  # account_id, mailbox, key, value


class CopyError(StoreError):
    pass


# ---------------------------------------------------------------------------- backend sides
class _Side(abc.ABC):
    """What copying needs beyond the store API, for one backend."""

    kind = "?"

    def __init__(self, store: Any) -> None:
        self.store = store

    # reads
    @abc.abstractmethod
    async def uidvalidity_counter(self) -> int:
        ...

    @abc.abstractmethod
    async def metadata_rows(self) -> list[MetaRow]:
        ...

    @abc.abstractmethod
    async def secret_rows(self) -> list[tuple[str, str]]:  # Store.shared_secret (name, value)
        ...

    @abc.abstractmethod
    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        ...

    @abc.abstractmethod
    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]:
        ...

    @abc.abstractmethod
    async def raw_usage(self, account_id: int) -> tuple[int, int]:
        ...

    # writes (destination)
    @abc.abstractmethod
    async def insert_directory(
        self, domains: list[Any], accounts: list[tuple[Account, int, int]], aliases: list[Any]
    ) -> None:
        ...

    @abc.abstractmethod
    async def insert_mailbox(self, mb: Any, expunged: list[tuple[int, int]]) -> None:
        ...

    @abc.abstractmethod
    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None:
        ...

    @abc.abstractmethod
    async def insert_metadata(self, rows: list[MetaRow]) -> None:
        ...

    @abc.abstractmethod
    async def finish(self, uidvalidity: int) -> None:
        ...

    async def put_blob(self, key: str, data: bytes) -> str:
        """Store DATA, under KEY if this blob store allows; returns the key used."""
        return str(await self.store.blobs.put(data))


class _SqliteSide(_Side):
    kind = "sqlite"

    async def _r(self, fn: Callable[[Any], Any]) -> Any:
        return await self.store._read(fn)

    async def _w(self, fn: Callable[[Any], Any]) -> Any:
        return await self.store._write(fn)

    async def uidvalidity_counter(self) -> int:
        row = await self._r(lambda c: c.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone())
        return int(row[0]) if row else 0

    async def metadata_rows(self) -> list[MetaRow]:
        rows = await self._r(
            lambda c: c.execute(
                "SELECT account_id, mailbox, key, value FROM metadata ORDER BY 1, 2, 3"
            ).fetchall()
        )
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def secret_rows(self) -> list[tuple[str, str]]:
        rows = await self._r(
            lambda c: c.execute("SELECT substr(key, 8), value FROM meta WHERE key LIKE 'secret:%' ORDER BY 1").fetchall()
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        rows = await self._r(
            lambda c: c.execute(
                "SELECT uid, delivery_key FROM messages WHERE mailbox_id=? AND delivery_key IS NOT NULL",
                (mailbox_id,),
            ).fetchall()
        )
        return {int(r[0]): str(r[1]) for r in rows}

    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]:
        rows = await self._r(
            lambda c: c.execute(
                "SELECT uid, modseq FROM expunged WHERE mailbox_id=? ORDER BY uid", (mailbox_id,)
            ).fetchall()
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def raw_usage(self, account_id: int) -> tuple[int, int]:
        row = await self._r(
            lambda c: c.execute(
                "SELECT coalesce(count(*),0), coalesce(sum(size),0) FROM messages"
                " WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=?)",
                (account_id,),
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    async def insert_directory(
        self, domains: list[Any], accounts: list[tuple[Account, int, int]], aliases: list[Any]
    ) -> None:
        def fn(c: Any) -> None:
            c.executemany(
                "INSERT INTO domains(id, name, created) VALUES (?,?,?)",
                [(d.id, d.name, d.created) for d in domains],
            )
            c.executemany(
                "INSERT INTO accounts(id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, used_bytes, used_messages, created)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        a.id,
                        a.address,
                        a.domain_id,
                        a.password_hash,
                        a.quota_bytes,
                        a.quota_messages,
                        int(a.is_admin),
                        *_scram_cols(a),
                        used_b,
                        used_m,
                        a.created,
                    )
                    for a, used_m, used_b in accounts
                ],
            )
            c.executemany(
                "INSERT INTO aliases(id, source, destination) VALUES (?,?,?)",
                [(x.id, x.source, x.destination) for x in aliases],
            )

        await self._w(fn)

    async def insert_mailbox(self, mb: Any, expunged: list[tuple[int, int]]) -> None:
        def fn(c: Any) -> None:
            c.execute(
                "INSERT INTO mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " VALUES (?,?,?,?,?,?,?)",
                (mb.id, mb.account_id, mb.name, mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use),
            )
            c.executemany(
                "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES (?,?,?)",
                [(mb.id, u, m) for u, m in expunged],
            )

        await self._w(fn)

    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None:
        await self._w(
            lambda c: c.executemany(
                "INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved,"
                " delivery_key) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.mailbox_id,
                        m.uid,
                        m.modseq,
                        " ".join(sorted(m.flags)),
                        m.internaldate,
                        m.size,
                        m.blob_key,
                        m.saved,
                        dk,
                    )
                    for m, dk in rows
                ],
            )
        )

    async def insert_metadata(self, rows: list[MetaRow]) -> None:
        await self._w(
            lambda c: c.executemany(
                "INSERT INTO metadata(account_id, mailbox, key, value) VALUES (?,?,?,?)", rows
            )
        )

    async def finish(self, uidvalidity: int) -> None:
        await self._w(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('uidvalidity', ?)", (str(uidvalidity),)
            )
        )

    async def put_blob(self, key: str, data: bytes) -> str:
        """Small blobs inline in the `blobs` table (key prefix "i"), large ones as files, as
        `HybridBlobStore` lays them out; the source's key is kept (prefixed "i" when inlined)."""
        from mailhouse.store.sqlite import backend as sqlite_backend

        files = getattr(self.store, "files", None)
        inline_max = getattr(sqlite_backend, "INLINE_BLOB_MAX", -1)
        if files is None or not key.isalnum():
            return str(await self.store.blobs.put(data))
        if inline_max >= 0 and (len(data) <= inline_max or key.startswith("i")):
            new = key if key.startswith("i") else "i" + key
            await self._w(
                lambda c: c.execute("INSERT OR IGNORE INTO blobs(key, data) VALUES (?, ?)", (new, data))
            )
            return new
        return str(await asyncio.to_thread(files.put_sync, data, key))


class _PostgresSide(_Side):
    kind = "postgresql"

    async def _fetch(self, q: str, *args: Any) -> list[Any]:
        return list(await self.store._pool_().fetch(q, *args))

    async def _tx(self, fn: Callable[[Any], Awaitable[None]]) -> None:
        await self.store._tx(fn)

    async def uidvalidity_counter(self) -> int:
        rows = await self._fetch("SELECT value FROM counters WHERE name='uidvalidity'")
        return int(rows[0][0]) if rows else 0

    async def metadata_rows(self) -> list[MetaRow]:
        rows = await self._fetch("SELECT account_id, mailbox, key, value FROM metadata ORDER BY 1, 2, 3")
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def secret_rows(self) -> list[tuple[str, str]]:
        rows = await self._fetch("SELECT name, value FROM secrets ORDER BY 1")
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        rows = await self._fetch(
            "SELECT uid, delivery_key FROM messages WHERE mailbox_id=$1 AND delivery_key IS NOT NULL",
            mailbox_id,
        )
        return {int(r[0]): str(r[1]) for r in rows}

    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]:
        rows = await self._fetch(
            "SELECT uid, modseq FROM expunged WHERE mailbox_id=$1 ORDER BY uid", mailbox_id
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def raw_usage(self, account_id: int) -> tuple[int, int]:
        rows = await self._fetch(
            "SELECT count(*), coalesce(sum(size),0) FROM messages"
            " WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id=$1)",
            account_id,
        )
        return int(rows[0][0]), int(rows[0][1])

    async def insert_directory(
        self, domains: list[Any], accounts: list[tuple[Account, int, int]], aliases: list[Any]
    ) -> None:
        async def fn(c: Any) -> None:
            # OVERRIDING SYSTEM VALUE: keep the source's ids (GENERATED ALWAYS AS IDENTITY columns)
            await c.executemany(
                "INSERT INTO domains(id, name, created) OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3)",
                [(d.id, d.name, d.created) for d in domains],
            )
            await c.executemany(
                "INSERT INTO accounts(id, address, domain_id, password_hash, quota_bytes, quota_messages, is_admin,"
                " scram_salt, scram_iter, scram_stored, scram_server, used_bytes, used_messages, created)"
                " OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                [
                    (
                        a.id,
                        a.address,
                        a.domain_id,
                        a.password_hash,
                        a.quota_bytes,
                        a.quota_messages,
                        a.is_admin,
                        *_scram_cols(a),
                        used_b,
                        used_m,
                        a.created,
                    )
                    for a, used_m, used_b in accounts
                ],
            )
            await c.executemany(
                "INSERT INTO aliases(id, source, destination) OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3)",
                [(x.id, x.source, x.destination) for x in aliases],
            )

        await self._tx(fn)

    async def insert_mailbox(self, mb: Any, expunged: list[tuple[int, int]]) -> None:
        async def fn(c: Any) -> None:
            await c.execute(
                "INSERT INTO mailboxes(id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use)"
                " OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3,$4,$5,$6,$7)",
                mb.id,
                mb.account_id,
                mb.name,
                mb.uidvalidity,
                mb.uidnext,
                mb.highestmodseq,
                mb.special_use,
            )
            await c.executemany(
                "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES ($1,$2,$3)",
                [(mb.id, u, m) for u, m in expunged],
            )

        await self._tx(fn)

    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None:
        async def fn(c: Any) -> None:
            await c.executemany(
                "INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key, saved,"
                " delivery_key) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                [
                    (
                        m.mailbox_id,
                        m.uid,
                        m.modseq,
                        sorted(m.flags),
                        m.internaldate,
                        m.size,
                        m.blob_key,
                        m.saved,
                        dk,
                    )
                    for m, dk in rows
                ],
            )

        await self._tx(fn)

    async def insert_metadata(self, rows: list[MetaRow]) -> None:
        async def fn(c: Any) -> None:
            await c.executemany(
                "INSERT INTO metadata(account_id, mailbox, key, value) VALUES ($1,$2,$3,$4)", rows
            )

        await self._tx(fn)

    async def finish(self, uidvalidity: int) -> None:
        async def fn(c: Any) -> None:
            for table in ("domains", "accounts", "aliases", "mailboxes"):
                # move each identity past the copied ids, so new rows never collide with them
                await c.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                    " HAVING max(id) IS NOT NULL"
                )
            await c.execute(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1) ON CONFLICT (name) DO UPDATE"
                " SET value = greatest(excluded.value, counters.value)",
                uidvalidity,
            )

        await self._tx(fn)

    async def put_blob(self, key: str, data: bytes) -> str:
        if getattr(self.store, "_pg_blobs", None) is not None:
            await self.store._pool_().execute(
                "INSERT INTO blobs(key, data) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, data
            )
            return key
        return str(await self.store.blobs.put(data))  # S3: keys are chosen by the blob store


def _scram_cols(a: Account) -> tuple[Any, Any, Any, Any]:
    s = a.scram
    return (s.salt, s.iterations, s.stored_key, s.server_key) if s else (None, None, None, None)


def side(store: Store) -> _Side:
    """The backend-specific helper for STORE (the one explicit reach into backend internals)."""
    from mailhouse.store.sqlite.backend import SqliteStore

    if isinstance(store, SqliteStore):
        return _SqliteSide(store)
    try:
        from mailhouse.store.postgres.backend import PostgresStore
    except ImportError:  # asyncpg missing
        PostgresStore = None  # type: ignore[assignment,misc]  # noqa: N806
    if PostgresStore is not None and isinstance(store, PostgresStore):
        return _PostgresSide(store)
    raise CopyError(f"store copy does not know the backend {type(store).__name__}")


def data_dir_for(url: str, default: Path) -> Path:
    """Where a store URL's files live: for sqlite:///dir/mailhouse.db the blobs are in dir/blobs."""
    if url.startswith("sqlite://"):
        return Path(url.removeprefix("sqlite://")).parent
    return default


def describe(url: str) -> str:
    """URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


# ---------------------------------------------------------------------------- progress
class Progress:
    """A plain progress bar on a text stream (redrawn in place on a terminal, lines otherwise)."""

    WIDTH = 30

    def __init__(
        self, total: int, total_bytes: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total = max(total, 0)
        self.total_bytes = total_bytes
        self.done = 0
        self.bytes = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0

    def advance(self, n: int, nbytes: int) -> None:
        self.done += n
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= (0.1 if self.tty else 2.0):
            self._last = now
            self._draw()

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac * 100:5.1f}%  {self.done}/{self.total} messages"
            f"  {self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB  {rate:.0f} msg/s  eta {eta:.0f}s"
        )

    def _draw(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- copy
@dataclass
class CopyResult:
    domains: int = 0
    accounts: int = 0
    aliases: int = 0
    dkim_keys: int = 0
    mailboxes: int = 0
    messages: int = 0
    expunged: int = 0
    blobs: int = 0
    bytes: int = 0
    subscriptions: int = 0
    metadata: int = 0
    queue: int = 0
    seconds: float = 0.0
    blob_map: dict[str, str] = field(default_factory=dict)  # source key -> destination key
    blob_sha: dict[str, str] = field(default_factory=dict)  # source key -> sha256 of the bytes read


async def _is_empty(store: Store) -> bool:
    return not (await store.list_domains() or await store.list_accounts() or await store.list())


async def copy_store(
    src: Store, dst: Store, *, progress: Progress | None = None, batch: int = BATCH
) -> CopyResult:
    """Copy everything in SRC (opened) into DST (opened, empty). Returns what was copied."""
    t0 = time.monotonic()
    s, d = side(src), side(dst)
    if not await _is_empty(dst):
        raise CopyError("the destination store is not empty (it has domains, accounts or queued mail)")
    res = CopyResult()
    sem = asyncio.Semaphore(BLOB_CONCURRENCY)

    async def copy_blob(key: str) -> None:
        if key in res.blob_map:
            return
        async with sem:
            if key in res.blob_map:
                return
            data = await src.blobs.get(key)
            res.blob_sha[key] = hashlib.sha256(data).hexdigest()
            res.blob_map[key] = await d.put_blob(key, data)
            res.blobs += 1
            res.bytes += len(data)

    # -- directory: ids kept, usage counters as the source has them
    domains = await src.list_domains()
    accounts = await src.list_accounts()
    aliases = await src.list_aliases()
    acc_rows: list[tuple[Account, int, int]] = []
    total_msgs = total_bytes = 0
    for a in accounts:
        u = await src.usage(a.id)
        acc_rows.append((a, u.messages, u.bytes))
        total_msgs += u.messages
        total_bytes += u.bytes
    queue = await src.list()
    prog = progress or Progress(total_msgs + len(queue), total_bytes, enabled=False)
    prog.total = total_msgs + len(queue)  # queued messages count as messages too
    prog.total_bytes = total_bytes + sum(e.size for e in queue)
    await d.insert_directory(domains, acc_rows, aliases)
    res.domains, res.accounts, res.aliases = len(domains), len(accounts), len(aliases)
    for dom in domains:
        for k in await src.get_dkim_keys(dom.name):
            await dst.set_dkim_key(k)
            res.dkim_keys += 1

    # -- mailboxes and messages
    max_uv = await s.uidvalidity_counter()
    for a in accounts:
        for mb in await src.list_mailboxes(a.id):
            max_uv = max(max_uv, mb.uidvalidity)
            expunged = await s.expunged_rows(mb.id)
            await d.insert_mailbox(mb, expunged)
            res.mailboxes += 1
            claimed = await src.recent_claimed(mb.id, mb.uidvalidity)
            if claimed:  # IMAP \Recent claims: copied mail does not become recent again
                await dst.claim_recent(mb.id, mb.uidvalidity, claimed)
            res.expunged += len(expunged)
            msgs = await src.list_messages(mb.id)
            dkeys = await s.delivery_keys(mb.id)
            for i in range(0, len(msgs), batch):
                chunk = msgs[i : i + batch]
                await asyncio.gather(*(copy_blob(k) for k in dict.fromkeys(m.blob_key for m in chunk)))
                # blobs are durable before the rows pointing at them commit (DESIGN.md §Durability)
                await d.insert_messages(
                    [(replace(m, blob_key=res.blob_map[m.blob_key]), dkeys.get(m.uid)) for m in chunk]
                )
                res.messages += len(chunk)
                prog.advance(len(chunk), sum(m.size for m in chunk))
        for name in await src.subscriptions(a.id):
            await dst.set_subscribed(a.id, name, True)
            res.subscriptions += 1
    meta = await s.metadata_rows()
    if meta:
        await d.insert_metadata(meta)
    res.metadata = len(meta)
    for name, value in await s.secret_rows():  # webmail sessions stay valid after the move
        await dst.shared_secret(name, value)

    # -- queue: lease cleared (the source's nodes are stopped)
    for e in queue:
        await copy_blob(e.blob_key)
        await dst.enqueue(replace(e, blob_key=res.blob_map[e.blob_key], lease_owner="", lease_until=0.0))
        res.queue += 1
        prog.advance(1, e.size)

    await d.finish(max_uv)
    prog.close()
    res.seconds = time.monotonic() - t0
    return res


# ---------------------------------------------------------------------------- verify
@dataclass
class Check:
    name: str
    source: int = 0
    destination: int = 0
    problems: list[str] = field(default_factory=list)

    def count(self, source: int, destination: int) -> None:
        self.source += source
        self.destination += destination

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems and self.source == self.destination


@dataclass
class Report:
    checks: dict[str, Check] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Check:
        if name not in self.checks:
            self.checks[name] = Check(name)
        return self.checks[name]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def render(self) -> str:
        lines = [f"{'':<16}{'source':>12}{'destination':>14}  result"]
        for c in self.checks.values():
            verdict = "ok" if c.ok else f"MISMATCH ({len(c.problems) or 'count'})"
            lines.append(f"{c.name:<16}{c.source:>12}{c.destination:>14}  {verdict}")
        for c in self.checks.values():
            for p in c.problems[:MAX_REPORTED]:
                lines.append(f"  {c.name}: {p}")
            if len(c.problems) > MAX_REPORTED:
                lines.append(f"  {c.name}: … {len(c.problems) - MAX_REPORTED} more")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append("verification: " + ("OK — every item is identical" if self.ok else "FAILED"))
        return "\n".join(lines)


def _cmp(check: Check, what: str, a: Any, b: Any) -> None:
    if a != b:
        check.problem(f"{what}: source {a!r} != destination {b!r}")


def _queue_view(e: QueueEntry) -> tuple[Any, ...]:
    return (
        e.sender,
        [(r.address, r.status, r.last_reply, r.notify, r.orcpt) for r in e.recipients],
        e.size,
        e.created,
        e.next_attempt,
        e.attempts,
        e.ret,
        e.envid,
        e.warned,
        e.extra,
    )


async def verify_store(
    src: Store, dst: Store, *, blob_map: dict[str, str] | None = None, blob_sha: dict[str, str] | None = None
) -> Report:
    """Compare SRC and DST item by item; blobs by SHA-256 (of SRC's bytes, or BLOB_SHA from the copy)."""
    s, d = side(src), side(dst)
    blob_map = blob_map or {}
    blob_sha = dict(blob_sha or {})
    rep = Report()
    sem = asyncio.Semaphore(BLOB_CONCURRENCY)

    async def sha(store: Store, key: str) -> str | None:
        async with sem:
            try:
                return hashlib.sha256(await store.blobs.get(key)).hexdigest()
            except (FileNotFoundError, StoreError):
                return None

    async def check_blob(key: str) -> None:
        chk = rep["blobs"]
        want = blob_sha.get(key) or await sha(src, key)
        got = await sha(dst, blob_map.get(key, key))
        chk.source += 1
        if got is not None:
            chk.destination += 1
        if want != got:
            chk.problem(f"blob {key}: {'missing' if got is None else 'bytes differ'} in destination")

    # directory
    sd, dd = await src.list_domains(), await dst.list_domains()
    rep["domains"].source, rep["domains"].destination = len(sd), len(dd)
    _cmp(
        rep["domains"],
        "domains",
        [(x.id, x.name, x.created) for x in sd],
        [(x.id, x.name, x.created) for x in dd],
    )
    sa, da = await src.list_accounts(), await dst.list_accounts()
    chk = rep["accounts"]
    chk.source, chk.destination = len(sa), len(da)
    dmap = {a.address: a for a in da}
    for a in sa:
        b = dmap.get(a.address)
        if b is None:
            chk.problem(f"{a.address} missing")
            continue
        _cmp(chk, f"{a.address} (id, hash, quota, admin, SCRAM keys, created)", a, b)
        su, du = await src.usage(a.id), await dst.usage(b.id)
        _cmp(chk, f"{a.address} usage", su, du)
        real = await s.raw_usage(a.id)
        if (su.messages, su.bytes) != real:
            rep.notes.append(
                f"{a.address}: the source's usage counters ({su.messages} messages, {su.bytes} bytes) differ from"
                f" its messages ({real[0]}, {real[1]}); copied as they were"
            )
    sal, dal = await src.list_aliases(), await dst.list_aliases()
    rep["aliases"].source, rep["aliases"].destination = len(sal), len(dal)
    _cmp(rep["aliases"], "aliases", sal, dal)
    chk = rep["dkim keys"]
    for dom in sd:
        ks, kd = await src.get_dkim_keys(dom.name), await dst.get_dkim_keys(dom.name)
        chk.count(len(ks), len(kd))
        _cmp(
            chk,
            f"{dom.name} keys",
            sorted(ks, key=lambda k: k.selector),
            sorted(kd, key=lambda k: k.selector),
        )

    # mailboxes, messages, blobs
    blob_keys: set[str] = set()
    for a in sa:
        b = dmap.get(a.address)
        if b is None:
            continue
        ms, md = await src.list_mailboxes(a.id), await dst.list_mailboxes(b.id)
        chk = rep["mailboxes"]
        chk.count(len(ms), len(md))
        mdmap = {m.name: m for m in md}
        for m in ms:
            n = mdmap.get(m.name)
            if n is None:
                chk.problem(f"{a.address}/{m.name} missing")
                continue
            # UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ: a change would make clients resync
            _cmp(chk, f"{a.address}/{m.name}", m, n)
            xs, xd = await s.expunged_rows(m.id), await d.expunged_rows(n.id)
            rep["expunged uids"].count(len(xs), len(xd))
            _cmp(rep["expunged uids"], f"{a.address}/{m.name}", xs, xd)
            msgs_s, msgs_d = await src.list_messages(m.id), await dst.list_messages(n.id)
            chk_m = rep["messages"]
            chk_m.count(len(msgs_s), len(msgs_d))
            by_uid = {r.uid: r for r in msgs_d}
            for r in msgs_s:
                q = by_uid.get(r.uid)
                if q is None:
                    chk_m.problem(f"{a.address}/{m.name} UID {r.uid} missing")
                    continue
                _cmp(
                    chk_m,
                    f"{a.address}/{m.name} UID {r.uid}",
                    replace(r, blob_key=blob_map.get(r.blob_key, r.blob_key)),
                    q,
                )
                blob_keys.add(r.blob_key)
            extra = set(by_uid) - {r.uid for r in msgs_s}
            if extra:
                chk_m.problem(f"{a.address}/{m.name}: UIDs {sorted(extra)[:10]} only in destination")
            ks_, kd_ = await s.delivery_keys(m.id), await d.delivery_keys(n.id)
            rep["delivery keys"].count(len(ks_), len(kd_))
            _cmp(rep["delivery keys"], f"{a.address}/{m.name}", ks_, kd_)
        ss, sdst = await src.subscriptions(a.id), await dst.subscriptions(b.id)
        rep["subscriptions"].count(len(ss), len(sdst))
        _cmp(rep["subscriptions"], a.address, ss, sdst)
    ms_, md_ = await s.metadata_rows(), await d.metadata_rows()
    rep["metadata"].source, rep["metadata"].destination = len(ms_), len(md_)
    _cmp(rep["metadata"], "metadata", ms_, md_)

    # queue
    qs, qd = await src.list(), await dst.list()
    chk = rep["queue"]
    chk.source, chk.destination = len(qs), len(qd)
    qdmap = {e.id: e for e in qd}
    for e in qs:
        f = qdmap.get(e.id)
        if f is None:
            chk.problem(f"{e.id} missing")
            continue
        _cmp(chk, e.id, _queue_view(e), _queue_view(f))
        if blob_map.get(e.blob_key, e.blob_key) != f.blob_key:
            chk.problem(f"{e.id}: blob key {f.blob_key} is not the copy of {e.blob_key}")
        blob_keys.add(e.blob_key)

    keys = sorted(blob_keys)
    rep.checks.setdefault("blobs", Check("blobs"))
    for i in range(0, len(keys), 256):
        await asyncio.gather(*(check_blob(k) for k in keys[i : i + 256]))
    uv_s, uv_d = await s.uidvalidity_counter(), await d.uidvalidity_counter()
    if uv_d < uv_s:
        rep["uidvalidity"].problem(
            f"counter {uv_d} is below the source's {uv_s}: a new mailbox could reuse one"
        )
    return rep


# ---------------------------------------------------------------------------- entry points
async def open_pair(src_url: str, dst_url: str, src_dir: Path, dst_dir: Path) -> tuple[Store, Store]:
    if src_url.startswith("sqlite://") and not await asyncio.to_thread(
        Path(src_url.removeprefix("sqlite://")).exists
    ):
        raise CopyError(f"source database {src_url.removeprefix('sqlite://')} does not exist")
    if src_url == dst_url:
        raise CopyError("source and destination are the same store")
    src, dst = open_store(src_url, src_dir), open_store(dst_url, dst_dir)
    await src.open()
    try:
        await dst.open()
    except BaseException:
        await src.close()
        raise
    return src, dst


async def run_copy(
    src_url: str,
    dst_url: str,
    src_dir: Path,
    dst_dir: Path,
    *,
    out: TextIO | None = None,
    progress: bool = True,
    verify: bool = True,
) -> tuple[CopyResult, Report | None]:
    """Open both stores, copy, verify, print the report to OUT (stdout); progress on stderr."""
    out = out or sys.stdout
    src, dst = await open_pair(src_url, dst_url, src_dir, dst_dir)
    try:
        print(f"copying {describe(src_url)} → {describe(dst_url)}", file=out)
        res = await copy_store(src, dst, progress=Progress(0, 0, enabled=progress))
        rate = res.messages / res.seconds if res.seconds else 0.0
        print(
            f"copied {res.domains} domains, {res.accounts} accounts, {res.aliases} aliases, {res.dkim_keys} DKIM keys,"
            f" {res.mailboxes} mailboxes, {res.messages} messages ({res.expunged} expunged UIDs remembered),"
            f" {res.blobs} blobs / {res.bytes} bytes, {res.subscriptions} subscriptions, {res.metadata} metadata"
            f" entries, {res.queue} queued messages in {res.seconds:.1f} s ({rate:.0f} msg/s)",
            file=out,
        )
        rep = None
        if verify:
            rep = await verify_store(src, dst, blob_map=res.blob_map, blob_sha=res.blob_sha)
            print(rep.render(), file=out)
        return res, rep
    finally:
        await dst.close()
        await src.close()


async def run_verify(
    src_url: str, dst_url: str, src_dir: Path, dst_dir: Path, *, out: TextIO | None = None
) -> Report:
    out = out or sys.stdout
    src, dst = await open_pair(src_url, dst_url, src_dir, dst_dir)
    try:
        rep = await verify_store(src, dst)
        print(rep.render(), file=out)
        return rep
    finally:
        await dst.close()
        await src.close()


__all__ = [
    "CopyError",
    "CopyResult",
    "Progress",
    "Report",
    "copy_store",
    "run_copy",
    "run_verify",
    "verify_store",
]
