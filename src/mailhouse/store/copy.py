"""Copy a whole Mailhouse store to another backend, preserving IMAP state.

`mailhouse store copy --from sqlite:///… --to postgresql://…` (either direction) moves an
installation so that no IMAP/POP3 client has to resynchronise: UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ (RFC 9051 §2.3.1.1, RFC 7162 §3.1), every message's UID, MODSEQ, flags,
INTERNALDATE and SAVEDATE, the expunged-UID memory (QRESYNC VANISHED, RFC 7162 §3.2.10) and
the delivery keys (idempotent redelivery) are copied verbatim, and so are the row ids of
domains, accounts, aliases and mailboxes (anything keyed on a mailbox id stays valid).

The store API has no "insert with this UID/UIDVALIDITY" operation, on purpose: mail
semantics live above the backends. Each backend publishes its half of copying behind the
typed `store.backend.Transfer` interface (`store/sqlite/transfer.py`,
`store/postgres/transfer.py`), which holds every line of SQL copying needs; everything else
goes through the public store API. Verification is `store/verify.py`; the progress bar and
the report printing are the command's (`cli/store.py`).

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
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mailhouse.store import open_store
from mailhouse.store.api import Account, Store, StoreError
from mailhouse.store.backend import Transfer
from mailhouse.store.store import MailStore

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
    "acl": "copied (mailbox rights, RFC 4314, through the store API)",
    "seen": "copied (each reader's own \\Seen of a shared mailbox, through the store API)",
    "queue": "copied, lease cleared; blob copied",
    "blobs": "PostgreSQL in-database blobs: copied through the blob store",
    "meta": "SQLite: the UIDVALIDITY counter and the shared secrets are carried over",
    "secrets": "PostgreSQL: shared secrets (the webmail's cookie key) copied, so sessions survive the move",
    "counters": "PostgreSQL: the UIDVALIDITY counter is carried over",
    "changes": "SQLite change-feed log: transient, not copied",
    "schema_version": "PostgreSQL: set by migrations",
    "limit_events": "login-failure and send-rate counters: transient (minutes to a day), not copied",
    "reports": "received DMARC/TLS-RPT summaries: copied (ROW_TABLES)",
    "report_rows": "counts for the reports we send: not copied (a day's counts; the next day starts afresh)",
    "report_sends": "which reports were sent: not copied (goes with report_rows)",
    "limit_marks": "bans and pregreet results: expiring, not copied (re-add lasting bans with `mailhouse ban add`)",
    "fts_docs": "full-text index: derived from the messages, not copied (run `mailhouse index backfill`"
    " on the destination; until then searches scan)",
    "spam_tokens": "Bayes token counts: copied per account (ROW_TABLES)",
    "spam_totals": "Bayes trained-message totals: copied per account (ROW_TABLES)",
    "spam_trained": "what each message was trained as: copied per account (ROW_TABLES)",
    "spam_lists": "per-user sender allow/block lists: copied per account (ROW_TABLES)",
    "contacts": "address books (contacts, groups): copied per account (ROW_TABLES)",
    "collected_addrs": "recipients collected from sent mail: copied per account (ROW_TABLES)",
    "web_sessions": "webmail logins: not copied (users log in again on the destination)",
    "user_settings": "webmail settings (display name, signature, reply-to): copied per account (ROW_TABLES)",
    "sieve_scripts": "per-user Sieve scripts and which is active: copied per account (ROW_TABLES)",
}

# Tables copied row for row (`Transfer.table_rows` → `Transfer.insert_rows`): nothing in them is
# assigned by the rules (their keys are account ids, which are kept, or natural keys), so the rows
# are the state. Those with an account_id column are read one account at a time (bounded memory).
ROW_TABLES: dict[str, tuple[str, ...]] = {
    "spam_tokens": ("account_id", "token", "spam", "ham"),
    "spam_totals": ("account_id", "spam", "ham"),
    "spam_trained": ("account_id", "key", "kind"),
    "spam_lists": ("account_id", "entry", "kind"),
    "contacts": ("account_id", "uid", "name", "emails", "notes", "categories", "updated"),
    "collected_addrs": ("account_id", "address", "name", "last_used", "count"),
    "user_settings": ("account_id", "key", "value"),
    "sieve_scripts": ("account_id", "name", "content", "size", "active", "updated"),
    "reports": ("domain", "kind", "org", "report_id", "begin_at", "end_at", "received", "rows"),
}
ROW_BATCH = 5000  # rows per destination transaction

BATCH = 200  # messages per destination transaction (and blobs copied between commits)
BLOB_CONCURRENCY = 8  # blobs read/written at once
MAX_REPORTED = 20  # differences listed per category in the verification report


class CopyError(StoreError):
    pass


class CopyProgress(Protocol):
    """Where `copy_store` reports progress (the command's progress bar, `cli/store.py`)."""

    def begin(self, total: int, total_bytes: int) -> None: ...
    def advance(self, n: int, nbytes: int) -> None: ...
    def close(self) -> None: ...


class _Silent:
    def begin(self, total: int, total_bytes: int) -> None:
        pass

    def advance(self, n: int, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


def transfer_of(store: Store) -> Transfer:
    """The backend's half of copying for STORE (`store.backend.Transfer`)."""
    if isinstance(store, MailStore):
        return store.transfer()
    raise CopyError(f"store copy does not know the backend {type(store).__name__}")


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
    rows: dict[str, int] = field(default_factory=dict)  # ROW_TABLES: table → rows copied
    seconds: float = 0.0
    blob_map: dict[str, str] = field(default_factory=dict)  # source key -> destination key
    blob_sha: dict[str, str] = field(default_factory=dict)  # source key -> sha256 of the bytes read


async def _is_empty(store: Store) -> bool:
    return not (await store.list_domains() or await store.list_accounts() or await store.list())


async def copy_store(
    src: Store, dst: Store, *, progress: CopyProgress | None = None, batch: int = BATCH
) -> CopyResult:
    """Copy everything in SRC (opened) into DST (opened, empty). Returns what was copied."""
    t0 = time.monotonic()
    s, d = transfer_of(src), transfer_of(dst)
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
    prog: CopyProgress = progress or _Silent()
    prog.begin(total_msgs + len(queue), total_bytes + sum(e.size for e in queue))  # queued messages count too
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
            entries = await src.get_acl(mb.id)
            for entry in entries:  # RFC 4314 rights, through the store API
                await dst.set_acl(mb.id, entry.identifier, entry.rights)
            for reader in accounts if entries else []:  # the readers' own \Seen of a shared mailbox
                if reader.id != a.id and (seen := await src.seen_by(reader.id, mb.id)):
                    await dst.set_seen_by(reader.id, mb.id, sorted(seen), True)
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
    for table, columns in ROW_TABLES.items():  # spam learning, received reports
        for owner in [a.id for a in accounts] if columns[0] == "account_id" else [None]:
            rows = await s.table_rows(table, columns, owner)
            for i in range(0, len(rows), ROW_BATCH):
                await d.insert_rows(table, columns, rows[i : i + ROW_BATCH])
            res.rows[table] = res.rows.get(table, 0) + len(rows)
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


__all__ = [
    "ROW_TABLES",
    "TABLES",
    "CopyError",
    "CopyProgress",
    "CopyResult",
    "copy_store",
    "open_pair",
    "transfer_of",
]
