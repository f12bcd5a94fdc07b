"""The narrow interface a storage backend implements: dialect primitives, no mail rules.

The mail semantics (UID/MODSEQ assignment, UNCHANGEDSINCE, expunge and the QRESYNC memory,
delivery keys, usage accounting, \\Recent, queue leases, blob freeing) live once in the rules
modules (`store/mail.py`, `store/directory.py`, `store/queue.py`), written as
``async def rule(tx: Tx, ...)`` over the `Tx` primitives below; `store/store.py` composes a
`Backend` with the rules into the `api.Store` every caller uses.

Invariants a backend guarantees:
- `Backend.write(fn)` runs FN in ONE transaction and returns after it committed durably; FN
  may run more than once (PostgreSQL retries deadlocks), so it must only touch the database.
  SQLite runs FN in its group-commit writer thread: its `Tx` methods are ``async def`` that
  never suspend, driven by `run_sync`.
- `Tx.publish` writes the change in the same transaction (it reaches subscribers only after
  commit).
- `Tx.lock_mailboxes` takes the mailbox rows' write locks in ascending id order (the global
  lock order; a no-op where the writer is serialised anyway). `Tx.bump` allocates UIDs and one
  modseq under that lock, so per mailbox allocation order is commit order.
- Blobs written "in the transaction" (`Backend.blob_in_tx`) commit with the index rows that
  reference them; other blobs are durable (fsynced / committed) before `put_blob` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from mailhouse.store.api import (
    Account,
    Alias,
    Change,
    DkimKey,
    Domain,
    FtsQuery,
    IndexDoc,
    Mailbox,
    MaildropLease,
    Mark,
    MessageRecord,
    QueueEntry,
    ReportRow,
    ReportSummary,
    ScramKeys,
    StoreError,
    Usage,
    WebSession,
)
from mailhouse.store.blobfiles import new_key
from mailhouse.store.feed import FeedHub

T = TypeVar("T")

MetaRow = tuple[int, str, str, str]  # account_id, mailbox, key, value (the metadata table)

# a contact row: (uid, name, emails, notes, groups, updated); emails and groups joined with "\n"
ContactRow = tuple[str, str, str, str, str, float]


def contact_row(r: Sequence[object]) -> ContactRow:
    """A backend's contact row (uid, name, emails, notes, categories, updated) as a `ContactRow`."""
    return (str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(str(r[5])))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a rule over SQLite's synchronous `Tx`) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise StoreError("a store rule suspended inside a synchronous SQLite transaction (awaited non-Tx I/O)")


def new_blob_key() -> str:
    return new_key()


class Tx(Protocol):
    """One transaction (or, for reads, one connection) of a backend: rows in, rows out."""

    # ---------------------------------------------------------------- directory
    async def directory_generation(self) -> int: ...
    async def insert_domain(self, name: str, created: float) -> Domain: ...  # AlreadyExists
    async def domain(self, name: str) -> Domain | None: ...
    async def domain_id(self, name: str, *, lock: bool = False, for_update: bool = False) -> int | None: ...
    # lock: a share lock (adding under the domain), for_update: an exclusive one (removing it)
    async def domains(self) -> list[Domain]: ...
    async def count_accounts(self, domain_id: int) -> int: ...
    async def delete_domain(self, domain_id: int, name: str) -> None: ...  # with its aliases, DKIM keys
    async def insert_account(
        self,
        address: str,
        domain_id: int,
        password_hash: str,
        quota_bytes: int,
        quota_messages: int,
        is_admin: bool,
        scram: ScramKeys | None,
        created: float,
    ) -> int: ...  # AlreadyExists
    async def account(self, address: str) -> Account | None: ...
    async def account_by_id(self, account_id: int) -> Account | None: ...
    async def accounts(self, domain: str | None) -> list[Account]: ...
    async def account_id(self, address: str) -> int | None: ...
    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> bool: ...
    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> bool: ...
    async def delete_account(self, account_id: int, mailbox_ids: Sequence[int]) -> list[str]: ...
    # deletes messages, expunged memory, mailboxes, subscriptions, metadata and the account;
    # returns the blob keys its messages referenced
    async def insert_alias(self, source: str, destination: str) -> Alias: ...  # AlreadyExists
    async def aliases(self, domain: str | None) -> list[Alias]: ...
    async def aliases_for(self, source: str) -> list[Alias]: ...
    async def delete_alias(self, source: str, destination: str | None) -> int: ...
    async def upsert_dkim_key(self, key: DkimKey) -> None: ...
    async def dkim_keys(self, domain: str) -> list[DkimKey]: ...
    async def shared_secret(
        self, name: str, candidate: str
    ) -> str: ...  # insert unless present; stored value

    # ---------------------------------------------------------------- mailboxes
    async def next_uidvalidity(self, floor: int) -> int: ...
    # the store-wide UIDVALIDITY counter raised atomically to max(floor, last + 1) and returned
    async def insert_mailbox(
        self, account_id: int, name: str, uidvalidity: int, special_use: str | None
    ) -> int: ...
    # AlreadyExists (name taken), NotFound (no such account)
    async def mailbox(self, account_id: int, name: str) -> Mailbox | None: ...
    async def mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...
    async def mailboxes(self, account_id: int) -> list[Mailbox]: ...
    async def mailbox_ids(self, account_id: int) -> list[int]: ...
    async def rename_mailbox(self, mailbox_id: int, name: str) -> Mailbox | None: ...  # AlreadyExists
    async def delete_mailbox(self, mailbox_id: int) -> tuple[int, list[tuple[str, int]]] | None: ...
    # locks and deletes the mailbox, its messages and expunged memory: (account_id, [(blob_key, size)])
    async def subscriptions(self, account_id: int) -> list[str]: ...
    async def set_subscription(self, account_id: int, name: str, subscribed: bool) -> bool: ...  # changed?
    async def metadata(self, account_id: int, mailbox: str, key: str) -> str | None: ...
    async def acl(self, mailbox_id: int) -> list[tuple[str, str]]: ...  # (identifier, rights) by identifier
    async def set_acl(self, mailbox_id: int, identifier: str, rights: str | None) -> bool: ...
    # insert or replace the entry (None: delete it); whether a row changed
    async def acl_for(self, identifiers: Sequence[str]) -> list[tuple[int, str, str]]: ...
    # (mailbox_id, identifier, rights) of the entries naming any of IDENTIFIERS
    async def drop_acl(
        self, mailbox_ids: Sequence[int], identifier: str | None, account_id: int | None
    ) -> None: ...
    # the entries and per-reader \\Seen rows of MAILBOX_IDS, and those naming IDENTIFIER /
    # kept for ACCOUNT_ID (an account going away)
    async def seen_uids(self, mailbox_id: int, account_id: int) -> list[int]: ...  # any order
    async def set_seen(self, mailbox_id: int, account_id: int, uids: Sequence[int], seen: bool) -> None: ...
    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> bool: ...

    # ---------------------------------------------------------------- messages
    async def lock_mailboxes(self, ids: Iterable[int]) -> None: ...
    async def bump(self, mailbox_id: int, n_uids: int) -> tuple[int, int, int]: ...
    # allocate N_UIDS UIDs and one new modseq: (account_id, first uid, modseq); NotFound
    async def raise_uidnext(self, mailbox_id: int, uid: int) -> None: ...  # uidnext = max(uidnext, UID)
    async def set_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> None: ...
    async def message_by_delivery_key(self, mailbox_id: int, key: str) -> MessageRecord | None: ...
    async def messages(
        self, mailbox_id: int, uids: Sequence[int], *, for_share: bool = False
    ) -> list[MessageRecord]: ...
    # the existing ones of UIDS, in no particular order; for_share: row share locks (blobs stay)
    async def all_messages(self, mailbox_id: int) -> list[MessageRecord]: ...  # in UID order
    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]: ...  # UID order
    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]: ...  # any order
    async def insert_messages(self, rows: Sequence[tuple[MessageRecord, str | None]]) -> None: ...
    # (record, delivery key)
    async def set_flags(
        self, mailbox_id: int, changes: Sequence[tuple[int, frozenset[str]]], modseq: int
    ) -> None: ...
    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[tuple[int, str, int]]: ...
    # set-based: (uid, blob_key, size) of the rows deleted
    async def remember_expunged(self, mailbox_id: int, uids: Sequence[int], modseq: int) -> None: ...
    async def adjust_usage(self, deltas: dict[int, tuple[int, int]]) -> None: ...
    # {account_id: (messages, bytes)}, accounts updated in ascending id order
    async def usage(self, account_id: int) -> Usage | None: ...
    async def publish(self, change: Change) -> None: ...
    async def unreferenced(self, keys: Iterable[str]) -> list[str]: ...
    # of KEYS, those no message and no queue entry references (sorted, each once)
    async def put_blob(self, key: str, data: bytes) -> None: ...  # a blob inside this transaction
    async def delete_blobs(self, keys: Sequence[str]) -> None: ...  # those of KEYS kept in the database
    async def raise_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int: ...
    # one atomic statement: the \\Recent high-water mark of (mailbox, uidvalidity) raised to at
    # least UP_TO_UID (reset when the uidvalidity differs); returns the value before
    async def recent(self, mailbox_id: int) -> tuple[int, int] | None: ...  # (uidvalidity, uid)

    # ---------------------------------------------------------------- full-text index (store/fts.py)
    async def fts_insert(self, docs: Sequence[tuple[str, IndexDoc]]) -> int: ...
    # documents for blob keys that have none (others left alone); the number inserted
    async def fts_delete(self, keys: Sequence[str]) -> None: ...  # the documents of KEYS
    async def fts_referenced(self, keys: Sequence[str]) -> list[str]: ...  # of KEYS, those a message uses
    async def fts_match(self, mailbox_id: int, query: FtsQuery) -> list[int]: ...
    # UIDs of the mailbox's messages whose INDEXED document has every term of QUERY
    async def fts_unindexed(self, mailbox_id: int, since_uid: int = 0) -> list[int]: ...
    # UIDs (>= SINCE_UID) of the mailbox's messages without an INDEXED document
    async def fts_backlog(self, after: str, limit: int) -> list[str]: ...
    # blob keys > AFTER of messages without a document, ascending
    async def fts_clear(self, account_id: int | None) -> int: ...
    # drop the documents of ACCOUNT_ID's blobs (all documents: None); the number dropped
    async def fts_generation(self) -> int: ...
    async def fts_bump(self) -> None: ...  # the generation + 1 (index changed without a MODSEQ)

    # ---------------------------------------------------------------- queue
    async def insert_queue(self, entry: QueueEntry) -> None: ...  # AlreadyExists
    async def due_entries(self, now: float, limit: int) -> list[QueueEntry]: ...
    # due (next_attempt <= now) and unleased (lease_until < now), oldest first, locked for this
    # transaction; rows another transaction holds are skipped, never waited for
    async def lease(self, ids: Sequence[str], owner: str, until: float) -> None: ...
    async def renew_leases(self, owner: str, until: float) -> int: ...
    # one statement: lease_until=UNTIL on OWNER's entries; the number of rows
    async def release_leases(self, prefix: str, keep: str) -> int: ...
    # one statement: unlease entries whose owner starts with PREFIX but not with KEEP; the number
    async def update_queue(self, entry: QueueEntry) -> None: ...  # releases the lease
    async def delete_queue(self, entry_id: str) -> str | None: ...  # the blob key, None if absent
    async def queue_entry(self, entry_id: str) -> QueueEntry | None: ...
    async def queue_entries(self) -> list[QueueEntry]: ...  # by creation time
    async def queue_size(self) -> tuple[int, float | None]: ...  # count and oldest `created` (None: empty)

    # ---------------------------------------------------------------- limits (counters and marks)
    async def lock_limit(self, key: str) -> None: ...
    # serialise counting of KEY until this transaction ends (a no-op where the writer is serialised)
    async def insert_event(self, key: str, at: float, weight: int) -> None: ...
    async def delete_events(self, key: str, before: float) -> None: ...  # KEY's events older than BEFORE
    async def sum_events(self, key: str, since: float) -> int: ...  # KEY's weights at or after SINCE
    async def delete_all_events(self, key: str) -> None: ...
    async def upsert_mark(self, key: str, value: str, expires: float) -> None: ...
    async def mark(self, key: str) -> Mark | None: ...  # expired or not
    async def marks(self, prefix: str) -> list[Mark]: ...  # keys starting with PREFIX (not LIKE), by key
    async def delete_mark(self, key: str) -> bool: ...
    async def purge_limits(self, now: float, events_before: float) -> int: ...

    # ---------------------------------------------------------------- Sieve scripts (store/sieve.py)
    async def sieve_script_rows(self, account_id: int) -> list[tuple[str, bool, int]]: ...
    # (name, active, size in octets) by name
    async def sieve_script_content(self, account_id: int, name: str) -> str | None: ...
    async def sieve_active_row(self, account_id: int) -> tuple[str, str] | None: ...  # (name, content)
    async def upsert_sieve_script(
        self, account_id: int, name: str, content: str, size: int, now: float
    ) -> None: ...
    async def set_sieve_active(self, account_id: int, name: str | None) -> None: ...
    # NAME becomes the one active script (None: none is); a name that does not exist: none is
    async def delete_sieve_script(self, account_id: int, name: str) -> bool: ...
    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> bool: ...

    # ---------------------------------------------------------------- spam learning (store/spam.py)
    async def add_spam_tokens(self, account_id: int, deltas: Sequence[tuple[int, int, int]]) -> None: ...
    # batch upsert: each (token, d_spam, d_ham) added to the account's counts, never below 0
    async def spam_tokens(self, account_id: int, tokens: Sequence[int]) -> dict[int, tuple[int, int]]: ...
    # (spam, ham) of those of TOKENS the account has
    async def add_spam_totals(self, account_id: int, d_spam: int, d_ham: int) -> None: ...  # never below 0
    async def spam_totals(self, account_id: int) -> tuple[int, int]: ...  # (spam, ham) messages trained
    async def spam_trained(self, account_id: int, key: str) -> str | None: ...
    async def set_spam_trained(self, account_id: int, key: str, kind: str | None) -> None: ...  # None drops
    async def spam_list_entries(self, account_id: int) -> list[tuple[str, str]]: ...  # (entry, kind) by entry
    async def spam_list_kind(self, account_id: int, entries: Sequence[str]) -> dict[str, str]: ...
    async def set_spam_list_entry(self, account_id: int, entry: str, kind: str | None) -> bool: ...

    # insert or replace (None removes); whether a row changed

    # ---------------------------------------------------------------- address book (store/contacts.py)
    async def contact_rows(self, account_id: int) -> list[ContactRow]: ...
    async def contact_row(self, account_id: int, uid: str) -> ContactRow | None: ...
    async def count_contacts(self, account_id: int) -> int: ...
    async def put_contact_row(self, account_id: int, row: ContactRow) -> None: ...  # insert or replace by uid
    async def delete_contact_row(self, account_id: int, uid: str) -> bool: ...
    async def add_collected(self, account_id: int, rows: Sequence[tuple[str, str]], now: float) -> None: ...
    # upsert each (address, name): count + 1, last_used = NOW, name replaced unless the new one is ""
    async def collected_rows(self, account_id: int) -> list[tuple[str, str, float, int]]: ...
    # (address, name, last_used, count), most recently used first
    async def trim_collected(self, account_id: int, keep: int) -> None: ...  # all but the KEEP most recent
    # ---------------------------------------------------------------- webmail sessions (store/websessions.py)
    async def insert_web_session(self, session: WebSession) -> None: ...
    async def web_session(self, id_hash: str) -> WebSession | None: ...
    async def web_sessions(self, account_id: int) -> list[WebSession]: ...  # by created
    async def set_web_session_seen(self, id_hash: str, at: float) -> None: ...
    async def delete_web_session(self, id_hash: str) -> bool: ...
    async def delete_web_sessions(self, account_id: int, keep: str, expired_before: float | None) -> int: ...
    # the account's sessions but KEEP; only those expiring before EXPIRED_BEFORE when given
    async def user_settings(self, account_id: int) -> list[tuple[str, str]]: ...
    async def set_user_setting(self, account_id: int, key: str, value: str | None) -> None: ...  # None drops

    # ---------------------------------------------------------------- received reports (store/reports.py)
    async def insert_report(self, r: ReportSummary) -> bool: ...  # False when the key exists (no change)
    async def reports(self, domain: str, kind: str, since: float) -> list[ReportSummary]: ...

    # end >= SINCE, ordered by (begin, org, report_id)
    async def add_report_row(self, r: ReportRow) -> None: ...  # insert, or add r.count to the row's count
    async def report_rows(self, kind: str, day: str) -> list[ReportRow]: ...  # ordered by (domain, key)
    async def insert_report_send(self, kind: str, day: str, domain: str, owner: str, at: float) -> bool: ...
    async def delete_report_rows(self, kind: str, before: str) -> int: ...


@runtime_checkable
class FtsDocIds(Protocol):
    """Optional: a backend whose index documents have ids (SQLite FTS5 rowids). `store/fts.py`
    then maps hits to UIDs in memory; a backend without it (PostgreSQL: documents keyed by blob
    key) answers with `Tx.fts_match` / `Tx.fts_unindexed`, joined in SQL."""

    async def fts_doc_uids(self, mailbox_id: int, since_uid: int = 0) -> list[tuple[int, int | None]]: ...
    # (UID, id of its INDEXED document or None) of every message of the mailbox with UID >= SINCE_UID
    async def fts_match_docs(self, query: FtsQuery) -> list[int]: ...

    # ids of the INDEXED documents with every term of QUERY (maybe ids no message uses any more)


@runtime_checkable
class CommitMarks(Protocol):
    """Optional: a backend that can tell cheaply, without a query, whether anything was committed
    (SQLite: ``PRAGMA data_version``). `MailStore.commit_mark` answers None without it."""

    def commit_mark(self) -> int | None: ...

    # differs from every earlier mark once anything was committed since; None: cannot tell here


def rows_select(table: str, columns: Sequence[str], account_param: str | None) -> str:
    """``SELECT`` of `Transfer.table_rows`, ordered by every column; ACCOUNT_PARAM (``?``, ``$1``)
    restricts it to one account. TABLE and COLUMNS come from `store/copy.py` ROW_TABLES only."""
    where = f" WHERE account_id={account_param}" if account_param else ""
    order = ", ".join(str(i + 1) for i in range(len(columns)))
    return f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY {order}"


def rows_insert(table: str, columns: Sequence[str], params: Sequence[str]) -> str:
    """``INSERT`` of `Transfer.insert_rows` with the dialect's PARAMS, one per column."""
    return f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join(params)})"


class Transfer(Protocol):
    """A backend's half of `mailhouse store copy` (`store/copy.py`): raw rows out and in, with
    the IMAP state (ids, UIDVALIDITY, UIDs, MODSEQs, delivery keys) kept verbatim."""

    kind: str

    async def uidvalidity_counter(self) -> int: ...
    async def metadata_rows(self) -> list[MetaRow]: ...
    async def secret_rows(self) -> list[tuple[str, str]]: ...  # Store.shared_secret (name, value)
    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]: ...
    async def expunged_rows(self, mailbox_id: int) -> list[tuple[int, int]]: ...
    async def raw_usage(self, account_id: int) -> tuple[int, int]: ...  # counted from the messages
    async def insert_directory(
        self, domains: list[Domain], accounts: list[tuple[Account, int, int]], aliases: list[Alias]
    ) -> None: ...  # accounts: (account, used_messages, used_bytes)
    async def insert_mailbox(self, mb: Mailbox, expunged: list[tuple[int, int]]) -> None: ...
    async def insert_messages(self, rows: list[tuple[MessageRecord, str | None]]) -> None: ...
    async def insert_metadata(self, rows: list[MetaRow]) -> None: ...
    async def finish(self, uidvalidity: int) -> None: ...  # counters/identities past the copied values
    async def put_blob(self, key: str, data: bytes) -> str: ...  # under KEY where possible; the key used
    # `store/copy.py` ROW_TABLES: COLUMNS of TABLE as they are (ordered by them), of one account or all
    async def table_rows(
        self, table: str, columns: Sequence[str], account_id: int | None = None
    ) -> list[tuple[Any, ...]]: ...
    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None: ...


class BlobBackend(Protocol):
    async def put(self, data: bytes) -> str: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, keys: Sequence[str]) -> None: ...
    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str: ...
    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...  # see api.BlobStore


class Backend(Protocol):
    """A storage backend: transactions over `Tx`, blob placement, the feed's source, leases."""

    kind: str  # "sqlite" | "postgresql"

    @property
    def blobs(self) -> BlobBackend: ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, single: bool = False) -> T: ...
    # single: FN runs exactly one statement (atomic by itself), so no explicit transaction is needed
    async def read(self, fn: Callable[[Tx], Coroutine[Any, Any, T]], *, quick: bool = False) -> T: ...
    # quick: a small indexed read that may run on the calling thread (SQLite)
    def blob_in_tx(self, size: int) -> bool: ...
    # whether a new blob of SIZE bytes is written inside the index transaction (`Tx.put_blob`)
    def new_tx_blob_key(self) -> str: ...
    async def delete_external_blobs(self, keys: Sequence[str]) -> None: ...
    # after commit: free those of KEYS kept outside the database (files, S3)
    def feed_wake(self, hub: FeedHub) -> None: ...
    async def feed_ready(self, hub: FeedHub) -> None: ...
    async def try_lock_maildrop(self, mailbox_id: int) -> MaildropLease | None: ...
    def transfer(self) -> Transfer: ...
