"""`MailStore`: the one `api.Store`, a backend (`store/backend.py`) composed with the rules.

Each public operation is one line of plumbing: a read through `Backend.read`, or a rule of
`store/mail.py`, `store/directory.py`, `store/queue.py` or `store/limits.py` run in one `Backend.write`
transaction, then (after commit) the freeing of blobs kept outside the database.

Invariants:
- A call that changes data returns after its transaction committed (DESIGN.md §Durability);
  a blob not written inside the index transaction is durable before the rows pointing at it
  are committed (`deliver`, `enqueue`).
- Stored messages use CRLF line endings (`store.crlf.to_crlf` in `deliver`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from mailhouse.store import (
    acl,
    contacts,
    directory,
    fts,
    limits,
    mail,
    queue,
    reports,
    sieve,
    spam,
    websessions,
)
from mailhouse.store.api import (
    Account,
    AclEntry,
    Alias,
    BlobStore,
    Collected,
    Contact,
    DkimKey,
    DocState,
    Domain,
    FlagMode,
    FlagResult,
    FtsQuery,
    FtsResult,
    IndexDoc,
    ListKind,
    Mailbox,
    MaildropLease,
    Mark,
    MessageRecord,
    NewMessage,
    NotFound,
    QueueEntry,
    ReportKind,
    ReportRow,
    ReportSummary,
    ScramKeys,
    SharedMailbox,
    SieveScript,
    Suggestion,
    TrainKind,
    Usage,
    WebSession,
)
from mailhouse.store.backend import Backend, CommitMarks, Transfer
from mailhouse.store.crlf import to_crlf
from mailhouse.store.feed import FeedHub, Subscription
from mailhouse.store.spool import BodyFile, SpooledMessage

#: A spooled message on disk up to this size is read into memory when the backend can put it
#: into the index transaction (one fsync): the size of SQLite's inline blobs.
TX_BLOB_READ_MAX = 512 * 1024

log = logging.getLogger(__name__)


class MailStore:
    """`mailhouse.store.api.Store` over any `Backend`."""

    def __init__(self, backend: Backend, indexer: fts.Indexer | None = None) -> None:
        self.backend = backend
        self.feed = FeedHub(backend)
        # store/fts.py: what makes a message's index document (message/fts_text.extract, handed
        # in by whoever opens the store: the store layer has no MIME code); None: no indexing
        self.indexer = indexer
        self._unindexed: fts.UnindexedCache = {}
        self._marks = backend if isinstance(backend, CommitMarks) else None

    @property
    def blobs(self) -> BlobStore:
        return self.backend.blobs

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    def transfer(self) -> Transfer:
        """This backend's half of `mailhouse store copy`."""
        return self.backend.transfer()

    async def try_lock_maildrop(self, mailbox_id: int) -> MaildropLease | None:
        return await self.backend.try_lock_maildrop(mailbox_id)

    def subscribe(self, account_id: int) -> Subscription:
        return self.feed.subscribe(account_id)

    def commit_mark(self) -> int | None:
        return self._marks.commit_mark() if self._marks is not None else None

    # ---------------------------------------------------------------- directory
    async def directory_generation(self) -> int:
        return await self.backend.read(lambda tx: tx.directory_generation())

    async def add_domain(self, name: str) -> Domain:
        return await self.backend.write(lambda tx: directory.add_domain(tx, name), single=True)

    async def get_domain(self, name: str) -> Domain | None:
        return await self.backend.read(lambda tx: tx.domain(name))

    async def list_domains(self) -> list[Domain]:
        return await self.backend.read(lambda tx: tx.domains())

    async def remove_domain(self, name: str) -> None:
        await self.backend.write(lambda tx: directory.remove_domain(tx, name))

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
        return await self.backend.write(
            lambda tx: directory.add_account(
                tx, address, password_hash, quota_bytes, quota_messages, is_admin, scram
            )
        )

    async def get_account(self, address: str) -> Account | None:
        return await self.backend.read(lambda tx: tx.account(address))

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return await self.backend.read(lambda tx: tx.account_by_id(account_id))

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        return await self.backend.read(lambda tx: tx.accounts(domain or None))

    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> None:
        await self.backend.write(lambda tx: directory.set_password(tx, address, password_hash, scram))

    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> None:
        await self.backend.write(
            lambda tx: directory.set_quota(tx, address, quota_bytes, quota_messages), single=True
        )

    async def remove_account(self, address: str) -> None:
        keys = await self.backend.write(lambda tx: directory.remove_account(tx, address))
        await self.backend.delete_external_blobs(keys)

    async def add_alias(self, source: str, destination: str) -> Alias:
        return await self.backend.write(lambda tx: directory.add_alias(tx, source, destination))

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return await self.backend.read(lambda tx: tx.aliases(domain or None))

    async def aliases_for(self, source: str) -> list[Alias]:
        return await self.backend.read(lambda tx: tx.aliases_for(source))

    async def remove_alias(self, source: str, destination: str | None = None) -> None:
        await self.backend.write(lambda tx: directory.remove_alias(tx, source, destination), single=True)

    async def set_dkim_key(self, key: DkimKey) -> None:
        await self.backend.write(lambda tx: tx.upsert_dkim_key(key), single=True)

    async def get_dkim_keys(self, domain: str) -> list[DkimKey]:
        return await self.backend.read(lambda tx: tx.dkim_keys(domain))

    async def shared_secret(self, name: str, candidate: str) -> str:
        return await self.backend.write(lambda tx: tx.shared_secret(name, candidate))

    # ---------------------------------------------------------------- mailboxes
    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox:
        return await self.backend.write(
            lambda tx: mail.create_mailbox(tx, account_id, name, special_use, publish=True)
        )

    async def adopt_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> bool:
        return await self.backend.write(lambda tx: mail.adopt_uidvalidity(tx, mailbox_id, uidvalidity))

    async def delivery_keys(self, mailbox_id: int) -> dict[int, str]:
        """{uid: delivery key} of the mailbox's messages that have one (`mailhouse import`'s mapping)."""
        return await self.backend.transfer().delivery_keys(mailbox_id)

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        return await self.backend.read(lambda tx: tx.mailbox(account_id, name), quick=True)

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        return await self.backend.read(lambda tx: tx.mailbox_by_id(mailbox_id), quick=True)

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self.backend.read(lambda tx: tx.mailboxes(account_id))

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> Mailbox:
        return await self.backend.write(lambda tx: mail.rename_mailbox(tx, mailbox_id, new_name))

    async def delete_mailbox(self, mailbox_id: int) -> list[str]:
        keys = await self.backend.write(lambda tx: mail.delete_mailbox(tx, mailbox_id))
        await self.backend.delete_external_blobs(keys)
        return keys

    async def subscriptions(self, account_id: int) -> list[str]:
        return await self.backend.read(lambda tx: tx.subscriptions(account_id))

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        await self.backend.write(lambda tx: mail.set_subscribed(tx, account_id, name, subscribed))

    # ---------------------------------------------------------------- access-control lists (RFC 4314)
    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        return await self.backend.read(lambda tx: acl.get_acl(tx, mailbox_id))

    async def set_acl(self, mailbox_id: int, identifier: str, rights: str) -> str:
        return await self.backend.write(lambda tx: acl.set_acl(tx, mailbox_id, identifier, rights))

    async def delete_acl(self, mailbox_id: int, identifier: str) -> bool:
        return await self.backend.write(lambda tx: acl.delete_acl(tx, mailbox_id, identifier))

    async def my_rights(self, account: Account, mailbox: Mailbox) -> str:
        return await self.backend.read(lambda tx: acl.my_rights(tx, account, mailbox))

    async def shared_with(self, account: Account) -> list[SharedMailbox]:
        return await self.backend.read(lambda tx: acl.shared_with(tx, account))

    async def seen_by(self, account_id: int, mailbox_id: int) -> frozenset[int]:
        return frozenset(await self.backend.read(lambda tx: tx.seen_uids(mailbox_id, account_id)))

    async def set_seen_by(self, account_id: int, mailbox_id: int, uids: Sequence[int], seen: bool) -> None:
        await self.backend.write(lambda tx: acl.set_seen(tx, account_id, mailbox_id, uids, seen), single=True)

    # ---------------------------------------------------------------- messages
    async def append(
        self, messages: Sequence[NewMessage], bodies: Sequence[bytes] | None = None
    ) -> list[MessageRecord]:
        """Append rows; BODIES (the octets of each message's blob, e.g. an IMAP APPEND) are
        indexed in the same transaction (`store/fts.py`)."""
        docs: dict[str, IndexDoc] = {}
        if bodies is not None and self.indexer is not None:
            for m, body in zip(messages, bodies, strict=True):
                if m.blob_key not in docs:
                    docs[m.blob_key] = await self._index(body)
        if not docs:
            return await self.backend.write(lambda tx: mail.append(tx, messages))
        return await self.backend.write(lambda tx: fts.append_indexed(tx, messages, docs))

    async def _index(self, data: bytes | SpooledMessage) -> IndexDoc:
        """The index document of a message, made in a worker thread; never raises (issue 13 §4:
        indexing never fails a delivery: FAILED, and every search scans the message)."""
        indexer = self.indexer
        assert indexer is not None

        def run() -> IndexDoc:
            if isinstance(data, SpooledMessage):
                if data.size > fts.MAX_INDEX_MESSAGE:
                    return IndexDoc(DocState.FAILED)
                return indexer(data.to_bytes())
            return indexer(data)

        try:
            return await asyncio.to_thread(run)
        except Exception:  # noqa: BLE001 - see the docstring
            log.warning("could not index a message; it will be scanned", exc_info=True)
            return IndexDoc(DocState.FAILED)

    async def append_octets(self, items: Sequence[tuple[bytes, NewMessage]]) -> list[MessageRecord]:
        """Store each message's octets and append its row (IMAP APPEND, MULTIAPPEND): blobs the
        backend keeps in the transaction go in the same commit as the rows (one group-committed
        fsync instead of two); larger ones are durable files first (DESIGN.md §Durability).
        Each NewMessage's ``blob_key`` and ``size`` are set here; the records come in order. With an
        indexer, each message's index document is written in the same transaction.
        On failure the files already written are removed (orphans would be harmless)."""
        msgs: list[NewMessage] = []
        inline: list[tuple[str, bytes]] = []
        files: list[str] = []
        try:
            for data, m in items:
                if self.backend.blob_in_tx(len(data)):
                    key = self.backend.new_tx_blob_key()
                    inline.append((key, data))
                else:
                    key = await self.backend.blobs.put(data)  # durable before the rows commit
                    files.append(key)
                msgs.append(replace(m, blob_key=key, size=len(data)))
            docs: dict[str, IndexDoc] = {}
            if self.indexer is not None:  # issue 13 §4: indexed in the rows' transaction
                for (data, _), m in zip(items, msgs, strict=True):
                    docs[m.blob_key] = await self._index(data)
            return await self.backend.write(lambda tx: fts.append_with_blobs_indexed(tx, msgs, inline, docs))
        except BaseException:
            if files:
                try:
                    await self.backend.blobs.delete(files)
                except Exception:  # noqa: BLE001, S110 - orphan files are harmless; the error below matters
                    pass
            raise

    async def deliver(
        self, blob: bytes | SpooledMessage, messages: Sequence[NewMessage]
    ) -> list[MessageRecord]:
        """Store BLOB and append rows pointing at it; a small blob in the same transaction.

        A spooled message on disk becomes a blob with `BlobStore.put_file` (never whole in memory).
        With an indexer, the blob's index document is written in the rows' transaction.
        """
        if isinstance(blob, SpooledMessage):
            spooled = await self._spooled_blob(blob)
            if isinstance(spooled, str):
                size = blob.size
                doc = await self._index(blob) if self.indexer is not None else None
                rows = [replace(m, blob_key=spooled, size=size) for m in messages]
                return await self.backend.write(
                    lambda tx: fts.append_indexed(tx, rows, {spooled: doc} if doc else {})
                )
            blob = spooled
        data = to_crlf(blob)  # api.py invariant: stored messages use CRLF
        doc = await self._index(data) if self.indexer is not None else None
        if not self.backend.blob_in_tx(len(data)):
            key = await self.backend.blobs.put(data)  # durable before the rows commit
            rows = [replace(m, blob_key=key, size=len(data)) for m in messages]
            return await self.backend.write(
                lambda tx: fts.append_indexed(tx, rows, {key: doc} if doc else {})
            )
        key = self.backend.new_tx_blob_key()
        return await self.backend.write(lambda tx: fts.deliver_indexed(tx, key, data, messages, doc))

    # ---------------------------------------------------------------- full-text index (store/fts.py)
    async def search_index(self, mailbox_id: int, queries: Sequence[FtsQuery]) -> FtsResult:
        return await self.backend.read(lambda tx: fts.search(tx, mailbox_id, queries, self._unindexed))

    async def index_backlog(self, limit: int, after: str = "") -> list[str]:
        return await self.backend.read(lambda tx: tx.fts_backlog(after, limit))

    async def add_index_docs(self, docs: Sequence[tuple[str, IndexDoc]]) -> int:
        return await self.backend.write(lambda tx: fts.add_docs(tx, docs, only_referenced=True))

    async def clear_index(self, account_id: int | None = None) -> int:
        return await self.backend.write(lambda tx: fts.clear(tx, account_id))

    async def _spooled_blob(self, msg: SpooledMessage) -> bytes | str:
        """MSG as bytes when it may go into the index transaction (in memory, or small enough to
        read), else the key of the durable blob `put_file` made of it (prefix + file range)."""
        if msg.in_memory:
            return msg.to_bytes()
        if self.backend.blob_in_tx(msg.size) and msg.size <= TX_BLOB_READ_MAX:
            return await asyncio.to_thread(msg.to_bytes)
        body = msg.body
        assert isinstance(body, BodyFile)
        # store.spool invariant: the spool already normalised line endings to CRLF
        return await self.backend.blobs.put_file(
            body.path, prefix=msg.head, offset=body.offset, length=body.length
        )

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        return await self.backend.read(lambda tx: tx.all_messages(mailbox_id))

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        return await self.backend.read(lambda tx: tx.changed_since(mailbox_id, modseq), quick=True)

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        uids = await self.backend.read(lambda tx: tx.expunged_since(mailbox_id, modseq), quick=True)
        return sorted(uids)  # sorted here: ORDER BY uid would make SQLite walk the primary key

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagResult:
        return await self.backend.write(
            lambda tx: mail.store_flags(tx, mailbox_id, uids, mode, flags, unchanged_since)
        )

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], list[str]]:
        gone, keys = await self.backend.write(lambda tx: mail.expunge(tx, mailbox_id, uids))
        await self.backend.delete_external_blobs(keys)
        return gone, keys

    async def copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        return await self.backend.write(lambda tx: mail.copy(tx, src_mailbox_id, uids, dst_mailbox_id))

    async def move(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        pairs, keys = await self.backend.write(lambda tx: mail.move(tx, src_mailbox_id, uids, dst_mailbox_id))
        await self.backend.delete_external_blobs(keys)
        return pairs

    async def usage(self, account_id: int) -> Usage:
        u = await self.backend.read(lambda tx: tx.usage(account_id))
        if u is None:
            raise NotFound("no such account")
        return u

    async def get_metadata(self, account_id: int, mailbox: str, key: str) -> str | None:
        return await self.backend.read(lambda tx: tx.metadata(account_id, mailbox, key))

    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> None:
        await self.backend.write(lambda tx: mail.set_metadata(tx, account_id, mailbox, key, value))

    async def claim_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
        return await self.backend.write(
            lambda tx: mail.claim_recent(tx, mailbox_id, uidvalidity, up_to_uid), single=True
        )

    async def recent_claimed(self, mailbox_id: int, uidvalidity: int) -> int:
        return await self.backend.read(
            lambda tx: mail.recent_claimed(tx, mailbox_id, uidvalidity), quick=True
        )

    # ---------------------------------------------------------------- limits (counters and marks)
    async def count_event(self, key: str, now: float, window: float, weight: int = 1) -> int:
        return await self.backend.write(lambda tx: limits.count_event(tx, key, now, window, weight))

    async def events_within(self, key: str, now: float, window: float) -> int:
        return await self.backend.read(lambda tx: tx.sum_events(key, now - window), quick=True)

    async def clear_events(self, key: str) -> None:
        await self.backend.write(lambda tx: tx.delete_all_events(key), single=True)

    async def set_mark(self, key: str, value: str, expires: float) -> None:
        await self.backend.write(lambda tx: tx.upsert_mark(key, value, expires), single=True)

    async def get_mark(self, key: str, now: float) -> Mark | None:
        return await self.backend.read(lambda tx: limits.get_mark(tx, key, now), quick=True)

    async def list_marks(self, prefix: str, now: float) -> list[Mark]:
        return await self.backend.read(lambda tx: limits.list_marks(tx, prefix, now))

    async def remove_mark(self, key: str) -> bool:
        return await self.backend.write(lambda tx: tx.delete_mark(key), single=True)

    async def purge_limits(self, now: float, events_before: float) -> int:
        return await self.backend.write(lambda tx: tx.purge_limits(now, events_before))

    # ---------------------------------------------------------------- webmail sessions and settings
    async def create_web_session(self, session: WebSession) -> None:
        await self.backend.write(lambda tx: websessions.create(tx, session))

    async def get_web_session(self, id_hash: str, now: float) -> WebSession | None:
        return await self.backend.read(lambda tx: websessions.get(tx, id_hash, now), quick=True)

    async def touch_web_session(self, id_hash: str, now: float) -> None:
        await self.backend.write(lambda tx: tx.set_web_session_seen(id_hash, now), single=True)

    async def list_web_sessions(self, account_id: int, now: float) -> list[WebSession]:
        return await self.backend.read(lambda tx: websessions.live(tx, account_id, now), quick=True)

    async def end_web_session(self, id_hash: str) -> bool:
        return await self.backend.write(lambda tx: tx.delete_web_session(id_hash), single=True)

    async def end_web_sessions(self, account_id: int, keep: str = "") -> int:
        return await self.backend.write(
            lambda tx: tx.delete_web_sessions(account_id, keep, None), single=True
        )

    async def user_settings(self, account_id: int) -> dict[str, str]:
        return dict(await self.backend.read(lambda tx: tx.user_settings(account_id), quick=True))

    async def set_user_setting(self, account_id: int, key: str, value: str | None) -> None:
        await self.backend.write(lambda tx: tx.set_user_setting(account_id, key, value), single=True)

    # ---------------------------------------------------------------- spam learning
    async def train_tokens(
        self, account_id: int, key: str, tokens: Sequence[int], kind: TrainKind | None
    ) -> bool:
        return await self.backend.write(lambda tx: spam.train_tokens(tx, account_id, key, tokens, kind))

    async def spam_token_counts(self, account_id: int, tokens: Sequence[int]) -> dict[int, tuple[int, int]]:
        return await self.backend.read(lambda tx: tx.spam_tokens(account_id, tokens))

    async def spam_totals(self, account_id: int) -> tuple[int, int]:
        return await self.backend.read(lambda tx: tx.spam_totals(account_id), quick=True)

    async def trained_as(self, account_id: int, key: str) -> TrainKind | None:
        return await self.backend.read(lambda tx: spam.trained_as(tx, account_id, key), quick=True)

    async def set_sender_list(self, account_id: int, entry: str, kind: ListKind | None) -> bool:
        v = None if kind is None else kind.value
        return await self.backend.write(lambda tx: tx.set_spam_list_entry(account_id, entry, v), single=True)

    async def sender_lists(self, account_id: int) -> list[tuple[str, ListKind]]:
        return await self.backend.read(lambda tx: spam.sender_lists(tx, account_id))

    async def sender_list_match(self, account_id: int, entries: Sequence[str]) -> dict[str, ListKind]:
        return await self.backend.read(lambda tx: spam.sender_list_match(tx, account_id, entries), quick=True)

    # ---------------------------------------------------------------- address book
    async def put_contact(self, account_id: int, contact: Contact) -> Contact:
        now = time.time()
        return await self.backend.write(lambda tx: contacts.put_contact(tx, account_id, contact, now))

    async def get_contact(self, account_id: int, uid: str) -> Contact | None:
        return await self.backend.read(lambda tx: contacts.get_contact(tx, account_id, uid), quick=True)

    async def list_contacts(self, account_id: int) -> list[Contact]:
        return await self.backend.read(lambda tx: contacts.list_contacts(tx, account_id))

    async def delete_contact(self, account_id: int, uid: str) -> bool:
        return await self.backend.write(lambda tx: tx.delete_contact_row(account_id, uid), single=True)

    async def collect_recipients(self, account_id: int, rcpts: Sequence[tuple[str, str]], now: float) -> None:
        await self.backend.write(lambda tx: contacts.collect(tx, account_id, rcpts, now))

    async def collected_recipients(self, account_id: int) -> list[Collected]:
        return await self.backend.read(lambda tx: contacts.collected(tx, account_id))

    async def suggest_recipients(self, account_id: int, prefix: str, limit: int) -> list[Suggestion]:
        return await self.backend.read(lambda tx: contacts.suggest(tx, account_id, prefix, limit))

    async def group_members(self, account_id: int, group: str) -> list[tuple[str, str]] | None:
        return await self.backend.read(lambda tx: contacts.group_members(tx, account_id, group))

    # ---------------------------------------------------------------- Sieve scripts (store/sieve.py)
    async def sieve_scripts(self, account_id: int) -> list[SieveScript]:
        return await self.backend.read(lambda tx: sieve.scripts(tx, account_id))

    async def get_sieve_script(self, account_id: int, name: str) -> str:
        return await self.backend.read(lambda tx: sieve.get_script(tx, account_id, name))

    async def active_sieve_script(self, account_id: int) -> tuple[str, str] | None:
        return await self.backend.read(lambda tx: tx.sieve_active_row(account_id), quick=True)

    async def sieve_have_space(
        self, account_id: int, name: str, size: int, max_scripts: int, max_size: int
    ) -> None:
        await self.backend.read(
            lambda tx: sieve.have_space(tx, account_id, name, size, max_scripts, max_size)
        )

    async def put_sieve_script(
        self, account_id: int, name: str, content: str, max_scripts: int, max_size: int, now: float
    ) -> None:
        await self.backend.write(
            lambda tx: sieve.put_script(tx, account_id, name, content, max_scripts, max_size, now)
        )

    async def set_active_sieve_script(self, account_id: int, name: str | None) -> None:
        await self.backend.write(lambda tx: sieve.set_active(tx, account_id, name))

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        await self.backend.write(lambda tx: sieve.delete_script(tx, account_id, name))

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        await self.backend.write(lambda tx: sieve.rename_script(tx, account_id, old, new))

    async def claim_once(self, key: str, now: float, expires: float) -> bool:
        return await self.backend.write(lambda tx: sieve.claim_once(tx, key, now, expires))

    # ---------------------------------------------------------------- received reports (DMARC, TLS-RPT)
    async def add_report(self, summary: ReportSummary) -> bool:
        return await self.backend.write(lambda tx: reports.add_report(tx, summary))

    async def list_reports(self, domain: str, kind: ReportKind, since: float) -> list[ReportSummary]:
        return await self.backend.read(lambda tx: reports.list_reports(tx, domain, kind, since))

    async def count_report_row(self, row: ReportRow) -> None:
        await self.backend.write(lambda tx: reports.count_row(tx, row), single=True)

    async def report_rows(self, kind: ReportKind, day: str) -> list[ReportRow]:
        return await self.backend.read(lambda tx: reports.rows(tx, kind, day))

    async def claim_report(self, kind: ReportKind, day: str, domain: str, owner: str, now: float) -> bool:
        return await self.backend.write(
            lambda tx: reports.claim(tx, kind, day, domain, owner, now), single=True
        )

    async def drop_report_rows(self, kind: ReportKind, before: str) -> int:
        return await self.backend.write(lambda tx: tx.delete_report_rows(kind.value, before))

    # ---------------------------------------------------------------- queue
    async def enqueue(self, entry: QueueEntry, blob: bytes | SpooledMessage | None = None) -> None:
        inline: bytes | None = None
        if isinstance(blob, SpooledMessage):
            spooled = await self._spooled_blob(blob)
            if isinstance(spooled, str):
                entry.blob_key, blob = spooled, None  # durable before the row commits
            else:
                blob = spooled
        if blob is not None:
            if self.backend.blob_in_tx(len(blob)):  # blob and row in one transaction: one fsync
                entry.blob_key, inline = self.backend.new_tx_blob_key(), blob
            else:
                entry.blob_key = await self.backend.blobs.put(blob)
        await self.backend.write(lambda tx: queue.enqueue(tx, entry, inline), single=inline is None)

    async def claim_due(self, now: float, owner: str, lease_seconds: float, limit: int) -> list[QueueEntry]:
        return await self.backend.write(lambda tx: queue.claim_due(tx, now, owner, lease_seconds, limit))

    async def renew_leases(self, owner: str, until: float) -> int:
        return await self.backend.write(lambda tx: queue.renew(tx, owner, until), single=True)

    async def release_previous(self, node_prefix: str, keep_prefix: str) -> int:
        return await self.backend.write(
            lambda tx: queue.release_previous(tx, node_prefix, keep_prefix), single=True
        )

    async def update(self, entry: QueueEntry) -> None:
        await self.backend.write(lambda tx: tx.update_queue(entry), single=True)

    async def remove(self, entry_id: str) -> list[str]:
        keys = await self.backend.write(lambda tx: queue.remove(tx, entry_id))
        await self.backend.delete_external_blobs(keys)
        return keys

    async def get(self, entry_id: str) -> QueueEntry | None:
        return await self.backend.read(lambda tx: tx.queue_entry(entry_id))

    async def list(self) -> list[QueueEntry]:
        return await self.backend.read(lambda tx: tx.queue_entries())

    async def queue_size(self) -> tuple[int, float | None]:
        """How many entries the queue holds and when the oldest was created (metrics, status),
        without reading the entries: the cost does not grow with the queue."""
        return await self.backend.read(lambda tx: tx.queue_size())
