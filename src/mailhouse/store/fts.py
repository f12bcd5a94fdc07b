"""The full-text word index (issue 13 §4): its records and its rules, written once over `Tx`.

The index NARROWS a search, the exact matcher (`message/search.py`) CONFIRMS (RFC 9051 §6.4.4
asks for substring matching, which no word index answers alone). What is indexed, and how a
search string becomes an index query, is `message/fts_text.py`; this module only stores and
looks up its output, so the store layer needs no MIME code.

Shape: one document per blob (the octets of a message are immutable and shared by every copy,
so COPY, MOVE and multi-recipient deliveries index nothing new). A document is a set of
*terms*: a one-letter tag (which text it came from, `Tag`) followed by a word. A `FtsQuery` is
an AND of `FtsTerm`s, each an OR over tags of one word, matched whole or as a prefix.

Invariants:
- A document's row is written in the same transaction as the message rows that reference its
  blob (`deliver`/`append` in `store/store.py`), and removed in the transaction that frees the
  blob (`free_blobs` in `store/mail.py`): after kill -9 the index and the messages agree.
- A message whose blob has no document, or one in state `DocState.PARTIAL`/`FAILED`
  (text over the cap, extraction raised, message too big), is *unindexed*: every search
  scans it. Extraction never fails a delivery.
- Every write of index state that changes no MODSEQ (backfill, rebuild) bumps the index
  generation, so a cached unindexed-set keyed on (HIGHESTMODSEQ, generation) stays right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailhouse.store import mail
from mailhouse.store.api import (
    DocState,
    FtsQuery,
    FtsResult,
    FtsTerm,
    IndexDoc,
    MessageRecord,
    NewMessage,
    Tag,
)
from mailhouse.store.backend import FtsDocIds, Tx

#: The one term a document has iff the message has an inline HTML part.
HTML_MARKER = Tag.HTML.value + "html"

#: What `MailStore` calls (in a worker thread) to index a message's octets; never raises.
Indexer = Callable[[bytes], IndexDoc]

#: Messages bigger than this are not read back for indexing at delivery (state FAILED: scanned,
#: and `mailhouse index backfill` leaves them so too); the default message size limit is 50 MiB.
MAX_INDEX_MESSAGE = 32 * 1024 * 1024

GENERATION = "fts_generation"  # the counter's name in `meta` (SQLite) / `counters` (PostgreSQL)


async def add_docs(tx: Tx, docs: Sequence[tuple[str, IndexDoc]], *, only_referenced: bool) -> int:
    """Insert documents for blob keys that have none. ``only_referenced`` (backfill): skip keys
    no message references any more (freed meanwhile); then the generation is bumped (the index
    changed without a MODSEQ). Returns the number inserted."""
    if only_referenced:
        live = set(await tx.fts_referenced([k for k, _ in docs]))
        docs = [(k, d) for k, d in docs if k in live]
    n = await tx.fts_insert(docs) if docs else 0
    if only_referenced and n:
        await tx.fts_bump()
    return n


async def append_indexed(
    tx: Tx, messages: Sequence[NewMessage], docs: dict[str, IndexDoc]
) -> list[MessageRecord]:
    """`mail.append` and, in the same transaction, the documents of the blobs a new row uses
    (a repeated delivery key returns the old row and indexes nothing)."""
    recs = await mail.append(tx, messages)
    used = {r.blob_key for r in recs}
    if docs:
        await tx.fts_insert([(k, d) for k, d in docs.items() if k in used])
    return recs


async def append_with_blobs_indexed(
    tx: Tx, messages: Sequence[NewMessage], blobs: Sequence[tuple[str, bytes]], docs: dict[str, IndexDoc]
) -> list[MessageRecord]:
    """`mail.append_with_blobs` (IMAP APPEND: octets and rows in one commit) and, in the same
    transaction, the documents of the blobs the new rows use."""
    recs = await mail.append_with_blobs(tx, messages, blobs)
    if docs:
        used = {r.blob_key for r in recs}
        await tx.fts_insert([(k, d) for k, d in docs.items() if k in used])
    return recs


async def deliver_indexed(
    tx: Tx, key: str, blob: bytes, messages: Sequence[NewMessage], doc: IndexDoc | None
) -> list[MessageRecord]:
    """`mail.deliver_in_tx` and, in the same transaction, the blob's document if a row is new."""
    recs = await mail.deliver_in_tx(tx, key, blob, messages)
    if doc is not None and any(r.blob_key == key for r in recs):
        await tx.fts_insert([(key, doc)])
    return recs


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What a mailbox's searches share until its next change or index generation: the unindexed
    UIDs and, on a backend whose documents have ids, each document id's UID(s). Never changed
    once made (searches in other threads may hold it): an update builds a new one."""

    uidvalidity: int
    modseq: int
    uidnext: int
    generation: int
    unindexed: frozenset[int]
    uid_of: dict[int, int] | None  # document id -> UID (None: the backend joins in SQL)
    more: dict[int, tuple[int, ...]]  # document id -> further UIDs (one blob copied within the mailbox)
    doc_of: dict[int, int]  # UID -> document id (to forget an expunged UID without a rebuild)


#: mailbox id -> its `_Snapshot`: O(mailbox) to compute once; then a new MODSEQ costs only what
#: changed (issue 13 §4: p99 < 100 ms on 100,000 messages, with flags being set meanwhile):
#: flags alone change nothing here, new UIDs (>= the old UIDNEXT) are read and added, expunged
#: UIDs (`Tx.expunged_since` the old MODSEQ, RFC 7162 §3.2.10's memory) dropped. A new index
#: generation or UIDVALIDITY rebuilds. A query costs the index match and one dict lookup per hit.
UnindexedCache = dict[int, _Snapshot]
_CACHE_MAX = 1024  # mailboxes remembered per process
_CACHE_ROWS = 1_000_000  # and at most this many messages in them (about 100 MB of maps)


def _add_rows(
    rows: Sequence[tuple[int, int | None]],
    uid_of: dict[int, int],
    more: dict[int, tuple[int, ...]],
    doc_of: dict[int, int],
    loose: set[int],
) -> None:
    """Enter (UID, document id or None) ROWS into the maps (in place); a UID already there (read
    by the update before) is kept as it is."""
    for uid, doc in rows:
        if uid in doc_of or uid in loose:
            continue
        if doc is None:
            loose.add(uid)
            continue
        doc_of[uid] = doc
        if doc in uid_of:
            more[doc] = more.get(doc, ()) + (uid,)
        else:
            uid_of[doc] = uid


def _drop_uids(
    gone: Sequence[int],
    uid_of: dict[int, int],
    more: dict[int, tuple[int, ...]],
    doc_of: dict[int, int],
    loose: set[int],
) -> None:
    """Forget the expunged UIDs GONE (in place): a document's next UID takes the place of one."""
    for uid in gone:
        loose.discard(uid)
        doc = doc_of.pop(uid, None)
        if doc is None:
            continue
        rest = more.pop(doc, ())
        if uid_of.get(doc) == uid:
            if rest:
                uid_of[doc] = rest[0]
                rest = rest[1:]
            else:
                del uid_of[doc]
        else:
            rest = tuple(u for u in rest if u != uid)
        if rest:
            more[doc] = rest


async def _snapshot(tx: Tx, mailbox_id: int, cache: UnindexedCache) -> _Snapshot:
    # MODSEQ, UIDNEXT and generation are read BEFORE the rows: a change committed in between is
    # read again at the next update (rows are keyed by UID: reading one twice is harmless)
    mb = await tx.mailbox_by_id(mailbox_id)
    gen = await tx.fts_generation()
    got = cache.get(mailbox_id)
    if mb is None:
        return _Snapshot(0, -1, 0, gen, frozenset(), None if not isinstance(tx, FtsDocIds) else {}, {}, {})
    if got is not None and (got.generation, got.uidvalidity) == (gen, mb.uidvalidity):
        if got.modseq == mb.highestmodseq:
            return got
        snap = await _update(tx, mailbox_id, got, mb.highestmodseq, mb.uidnext)
    else:
        snap = await _build(tx, mailbox_id, mb.uidvalidity, mb.highestmodseq, mb.uidnext, gen)
    size = sum(len(v.doc_of) + len(v.unindexed) for v in cache.values())
    if len(cache) >= _CACHE_MAX or size > _CACHE_ROWS:
        cache.clear()
    cache[mailbox_id] = snap
    return snap


async def _build(tx: Tx, mailbox_id: int, uidvalidity: int, modseq: int, uidnext: int, gen: int) -> _Snapshot:
    if not isinstance(tx, FtsDocIds):  # the backend joins hits in SQL: only the unindexed UIDs
        unindexed = frozenset(await tx.fts_unindexed(mailbox_id))
        return _Snapshot(uidvalidity, modseq, uidnext, gen, unindexed, None, {}, {})
    uid_of: dict[int, int] = {}
    more: dict[int, tuple[int, ...]] = {}
    doc_of: dict[int, int] = {}
    loose: set[int] = set()
    _add_rows(await tx.fts_doc_uids(mailbox_id), uid_of, more, doc_of, loose)
    return _Snapshot(uidvalidity, modseq, uidnext, gen, frozenset(loose), uid_of, more, doc_of)


async def _update(tx: Tx, mailbox_id: int, old: _Snapshot, modseq: int, uidnext: int) -> _Snapshot:
    """OLD brought to MODSEQ: expunged UIDs dropped, UIDs from OLD's UIDNEXT on added; a flag
    change needs nothing (the maps hold no flags)."""
    gone = await tx.expunged_since(mailbox_id, old.modseq)
    if not gone and uidnext <= old.uidnext:  # flags only: the same maps under the new MODSEQ
        return _Snapshot(
            old.uidvalidity, modseq, uidnext, old.generation, old.unindexed, old.uid_of, old.more, old.doc_of
        )
    loose = set(old.unindexed)
    if old.uid_of is None or not isinstance(tx, FtsDocIds):
        loose.difference_update(gone)
        if uidnext > old.uidnext:
            loose.update(await tx.fts_unindexed(mailbox_id, old.uidnext))
        return _Snapshot(old.uidvalidity, modseq, uidnext, old.generation, frozenset(loose), None, {}, {})
    uid_of, more, doc_of = dict(old.uid_of), dict(old.more), dict(old.doc_of)
    _drop_uids(gone, uid_of, more, doc_of, loose)
    if uidnext > old.uidnext:
        _add_rows(await tx.fts_doc_uids(mailbox_id, old.uidnext), uid_of, more, doc_of, loose)
    return _Snapshot(old.uidvalidity, modseq, uidnext, old.generation, frozenset(loose), uid_of, more, doc_of)


async def search(tx: Tx, mailbox_id: int, queries: Sequence[FtsQuery], cache: UnindexedCache) -> FtsResult:
    snap = await _snapshot(tx, mailbox_id, cache)
    hits: list[frozenset[int]] = []
    for q in queries:
        if snap.uid_of is None or not isinstance(tx, FtsDocIds):
            hits.append(frozenset(await tx.fts_match(mailbox_id, q)))
            continue
        uid_of, more = snap.uid_of, snap.more
        docs = await tx.fts_match_docs(q)
        # ids of documents of other mailboxes, or freed, are not in the map
        found = {uid_of[d] for d in docs if d in uid_of}
        if more:
            for d in docs:
                found.update(more.get(d, ()))
        hits.append(frozenset(found))
    return FtsResult(hits, snap.unindexed)


async def clear(tx: Tx, account_id: int | None) -> int:
    """Drop the documents of ACCOUNT_ID's messages (all documents: None); bumps the generation."""
    n = await tx.fts_clear(account_id)
    await tx.fts_bump()
    return n


__all__ = [
    "DocState",
    "FtsQuery",
    "FtsResult",
    "FtsTerm",
    "GENERATION",
    "HTML_MARKER",
    "IndexDoc",
    "Indexer",
    "MAX_INDEX_MESSAGE",
    "Tag",
    "UnindexedCache",
    "add_docs",
    "append_indexed",
    "deliver_indexed",
    "clear",
    "search",
]
