"""The selected mailbox as one IMAP session sees it: sequence numbers, \\Recent, pending updates.

RFCs: RFC 9051 §2.3.1 (UIDs, sequence numbers), §5.2 (mailbox size and message status
updates), §5.5 / RFC 3501 §7.4.1 (no EXPUNGE while responding to FETCH, STORE, SEARCH or when
no command is in progress), §7.3.1 EXISTS, §7.4.1 EXPUNGE, RFC 3501 §2.3.2 (\\Recent: "this is
the first session to have been notified"), RFC 7162 (CONDSTORE: MODSEQ in unsolicited FETCH;
QRESYNC: VANISHED instead of EXPUNGE, UID in every unsolicited FETCH), RFC 5182 (SEARCHRES).

Model. ``uids`` is the client's view: message sequence number ``n`` is ``uids[n - 1]``. The
store is re-read by :meth:`SelectedMailbox.refresh` through the node's shared
:class:`index.SharedIndex` of the mailbox (one mailbox row per coalesced sync, the changes only
when HIGHESTMODSEQ moved); the view starts as a snapshot of that index and then applies its
change log from its own position (``index_pos``).
What changed is queued and only turned into responses by :meth:`SelectedMailbox.updates`,
which the session calls where the RFC allows each kind:

* EXPUNGE / VANISHED only when ``allow_expunge`` (the session passes False for FETCH, STORE,
  SEARCH, SORT, THREAD and while no command is in progress); until then the expunged message
  keeps its sequence number (``pending_expunge``) and EXISTS counts it;
* EXISTS (and RECENT in rev1) when new messages were seen; EXISTS never decreases without
  EXPUNGE;
* ``FETCH (FLAGS ...)`` for flag changes made by others (with UID when QRESYNC is enabled,
  MODSEQ when CONDSTORE is enabled).

Keywords are announced before use (RFC 9051 §7.3.5, RFC 3501 §7.2.6): ``announced`` is the
keyword set of the last ``FLAGS`` sent (SELECT's, then every announcement); whenever a record
enters the view with a keyword outside it (another session's STORE, APPEND, COPY or MOVE, this
session's own STORE or APPEND), the keyword is queued in ``unannounced`` and :meth:`announce`
returns the untagged ``FLAGS`` and ``OK [PERMANENTFLAGS]`` listing it. Every path that writes a
``FETCH`` carrying FLAGS calls it first (:meth:`updates`, ``updates.report``, STORE, FETCH).
The set only grows while the mailbox is selected (a client may keep showing a keyword).

\\Recent (rev1 only) lives in :class:`RecentClaims`: the highest UID of each mailbox already
announced as recent to some session, kept by the store and advanced by one atomic statement
(``Store.claim_recent``), so exactly one session of any process or node gets a message as
recent.

Invariants: ``uids`` is strictly increasing; ``records`` has an entry for every UID in ``uids``;
nothing here writes to the client; the view never holds message bodies (see :class:`MessageLoader`).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailhouse.message.cache import PARSED_CACHE_BYTES, CachedMessage, MessageCache
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import SortCriterion
from mailhouse.proto.imap.search import SearchKey
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import FtsQuery, FtsResult, Mailbox, MessageRecord, Store

from .errors import Bad, No
from .index import IndexRegistry, SharedIndex

if TYPE_CHECKING:
    from .query import MessageView

log = logging.getLogger(__name__)


class MessageLoader:
    """The node's parsed-message cache and the blob reads in flight; ``query``'s loader.

    One per node (``node.ImapNode.messages``), shared by the sessions of its listeners: blob
    keys are immutable, so an entry never goes stale; the cache is bounded by estimated bytes
    (``message.cache.PARSED_CACHE_BYTES``). Concurrent sessions missing the same message read
    its blob once. ``peek`` lets a SEARCH skip the await for messages already cached and
    batch-load the rest."""

    __slots__ = ("_cache", "_inflight", "store")

    def __init__(self, store: Store, max_bytes: int = PARSED_CACHE_BYTES) -> None:
        self.store = store
        self._cache = MessageCache(max_bytes)
        # blob reads in flight, so concurrent sessions missing the same message read it once
        self._inflight: dict[str, asyncio.Future[CachedMessage]] = {}

    def peek(self, rec: MessageRecord) -> CachedMessage | None:
        """The cached parse of a message, or None (no I/O)."""
        return self._cache.get(rec.blob_key)

    async def __call__(self, rec: MessageRecord) -> CachedMessage:
        """The raw octets, MIME tree and derived data of a message (LRU-cached per node)."""
        key = rec.blob_key
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        inflight = self._inflight
        loop = asyncio.get_running_loop()
        fut = inflight.get(key)
        if fut is not None and fut.get_loop() is loop:
            return await asyncio.shield(fut)  # a waiter's cancellation must not cancel the read
        fut = inflight[key] = loop.create_future()
        try:
            raw = await self.store.blobs.get(key)
            entry = self._cache.put(key, CachedMessage(raw))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(e)
                fut.exception()  # retrieved: waiters (if any) re-raise it; no "never retrieved" log
            raise
        else:
            fut.set_result(entry)
            return entry
        finally:
            if inflight.get(key) is fut:
                del inflight[key]

    def remember(self, key: str, raw: bytes) -> None:
        """A message this node just stored (APPEND): keep its octets, parsed on first use."""
        self._cache.put(key, CachedMessage(raw))

    async def fts(self, mailbox_id: int, queries: Sequence[FtsQuery]) -> FtsResult | None:
        """The full-text index's candidates (``query``'s narrowing, issue 13 §4); None when
        the index cannot answer now (the search then scans, as before the index existed)."""
        try:
            return await self.store.search_index(mailbox_id, queries)
        except Exception:  # noqa: BLE001 - an index fault costs speed, never a result
            log.warning("full-text index lookup failed; scanning", exc_info=True)
            return None


@dataclass(eq=False, slots=True)
class LiveContext:
    """One RFC 5267 §4.3 RETURN (UPDATE) context on the selected mailbox (``contexts.py``)."""

    tag: str
    uid: bool
    criteria: SearchKey  # frozen (see contexts.py)
    charset: str | None
    sort: tuple[SortCriterion, ...] | None  # None: a SEARCH context (mailbox order)
    members: list[int] = field(default_factory=list)  # UIDs, in the requested order
    seen_modseq: int = 0
    seen_uid: int = 0
    full: bool = False  # re-run in full after each change (time-relative keys)


class RecentClaims:
    """Which messages were already reported \\Recent (RFC 3501 §2.3.2), per mailbox.

    The claim is one atomic statement in the store (``Store.claim_recent``: raise "highest UID
    announced as recent" and return the value before), so of two sessions selecting at the same
    instant — in one process, two worker processes or two nodes — exactly one gets each message
    as recent. A claim is per mailbox incarnation (id, UIDVALIDITY)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def claim(self, mailbox: Mailbox, uids: Iterable[int], *, peek: bool = False) -> set[int]:
        """Claim the given UIDs for the calling session; returns those not claimed before.
        ``peek`` (EXAMINE, RFC 3501 §6.3.2) reports them without claiming."""
        uids = sorted(uids)
        if not uids:
            return set()
        # A read first: when another session already claimed all of them (the usual case: one of
        # the sessions that see a new message claims it) no commit is made. Claims only grow, so
        # what the atomic claim would return is then at least this and the answer is the same.
        high = await self.store.recent_claimed(mailbox.id, mailbox.uidvalidity)
        if not peek and uids[-1] > high:
            high = await self.store.claim_recent(mailbox.id, mailbox.uidvalidity, uids[-1])
        return {u for u in uids if u > high}

    async def count_unclaimed(self, mailbox: Mailbox, uids: Iterable[int]) -> int:
        """RECENT for STATUS: messages no session has been told about yet."""
        high = await self.store.recent_claimed(mailbox.id, mailbox.uidvalidity)
        return sum(1 for u in uids if u > high)


class SelectedMailbox:
    """One session's view of its selected mailbox (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        mailbox: Mailbox,
        records: list[MessageRecord],
        *,
        readonly: bool,
        rev2: bool,
        condstore: bool,
        qresync: bool,
        registry: IndexRegistry | None = None,
    ) -> None:
        self.store = store
        self.mailbox = mailbox
        self.readonly = readonly
        self.rev2 = rev2
        self.condstore = condstore
        self.qresync = qresync
        self.uids: list[int] = [r.uid for r in records]
        self.records: dict[int, MessageRecord] = {r.uid: r for r in records}
        self.recent: set[int] = set()
        self.known_modseq = mailbox.highestmodseq
        self.pending_expunge: set[int] = set()
        self.pending_new: dict[int, MessageRecord] = {}
        self.pending_flags: set[int] = set()
        self.saved: list[int] | None = None  # RFC 5182 SEARCHRES result (UIDs)
        self.deleted = False  # the mailbox was deleted or renamed away under us
        self.search_contexts: list[LiveContext] = []  # contexts.py live SEARCH/SORT (RFC 5267 UPDATE)
        self.registry = registry  # the node's shared indexes (``open`` sets it)
        self.index: SharedIndex | None = None  # the shared index this view follows
        self.index_pos = 0  # how far this view has consumed ``index.log``
        self._views: list[MessageView] | None = None  # views() cache, kept current in place
        self.announced: set[str] = _keywords(records)  # keywords in the last FLAGS sent
        self.unannounced: set[str] = set()  # keywords in the view not yet announced
        self.seen: set[int] | None = None  # a reader's own \Seen on a shared mailbox (overlay_seen)

    # ---------------------------------------------------------------- construction
    @classmethod
    async def open(
        cls,
        store: Store,
        mailbox: Mailbox,
        claims: RecentClaims,
        *,
        readonly: bool,
        rev2: bool,
        condstore: bool,
        qresync: bool,
        registry: IndexRegistry,
        previous: SelectedMailbox | None = None,
    ) -> SelectedMailbox:
        """The view of ``mailbox`` on the node's shared index (``registry``); ``previous`` is
        the session's view being closed (its SEARCH views are reused where the numbering did
        not change; it must not be used after)."""
        idx = await registry.get(mailbox)
        if idx.dead:
            raise No("Mailbox does not exist", "NONEXISTENT")  # deleted meanwhile
        # a snapshot of the shared index (no await from here: index and view agree)
        view = cls(
            store,
            idx.mailbox,
            [],
            readonly=readonly,
            rev2=rev2,
            condstore=condstore,
            qresync=qresync,
            registry=registry,
        )
        view.uids = idx.uids.copy()
        view.records = idx.records.copy()
        view.known_modseq = idx.modseq  # every change up to it is in the records
        view.index = idx
        view.index_pos = idx.log_end
        view.announced = _keywords(view.records.values())  # SELECT's FLAGS lists them
        if view.uids and view.uids[-1] >= view.mailbox.uidnext:  # records read after the row
            view.mailbox = dataclasses.replace(view.mailbox, uidnext=view.uids[-1] + 1)
        if not rev2:
            # RFC 3501 §6.3.2: SELECT (not EXAMINE) is what makes messages non-recent for others
            view.recent = await claims.claim(view.mailbox, view.uids, peek=readonly)
        if previous is not None and previous.index is idx and previous._views is not None:
            view._adopt_views(previous._views)
        return view

    def _adopt_views(self, old: list[MessageView]) -> None:
        """Take over a closed view's ``MessageView`` objects for the UIDs both number alike
        (a common prefix: mail comes and goes mostly at the end), correcting record and
        \\Recent; the rest is built on the next :meth:`views`."""
        uids = self.uids
        n = min(len(old), len(uids))
        lo = next((i for i in range(n) if old[i].record.uid != uids[i]), n)  # common prefix
        if lo == 0 or lo < n // 2:
            return  # not worth it
        from .query import MessageView

        records, recent = self.records, self.recent
        views = old[:lo]
        for v in views:
            rec = records[v.record.uid]
            if v.record is not rec:
                v.record = rec
            if v.recent != (rec.uid in recent):
                v.recent = rec.uid in recent
        views.extend(MessageView(i + 1, records[u], u in recent) for i, u in enumerate(uids[lo:], start=lo))
        self._views = views

    # ---------------------------------------------------------------- numbering
    @property
    def exists(self) -> int:
        return len(self.uids)

    def enable_condstore(self) -> bytes:
        """CONDSTORE switched on by a command while this mailbox is selected: RFC 7162 §3.1 —
        "the server MUST also send the HIGHESTMODSEQ response code", in an untagged OK."""
        self.condstore = True
        return response.untagged_status("OK", "Highest", f"HIGHESTMODSEQ {self.known_modseq}")

    def check_writable(self) -> None:
        """STORE, MOVE and EXPUNGE change nothing in a read-only (EXAMINE) view: ``NO [CANNOT]``."""
        if self.readonly:
            raise No("Mailbox is read-only (EXAMINE)", "CANNOT")

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def uid_of(self, seq: int) -> int:
        return self.uids[seq - 1]

    def resolve(self, seqset: SequenceSet, uid: bool) -> list[int]:
        """UIDs (ascending) named by a sequence set or UID set, ``$`` substituted.

        A message sequence number above EXISTS is a client error (BAD, RFC 9051 §6.4.5
        "invalid message sequence number"); a UID that does not exist is simply skipped
        (RFC 9051 §6.4.9)."""
        out: set[int] = set()
        if seqset.saved:
            out.update(u for u in (self.saved or ()) if u in self.records)
            if not seqset.ranges:
                return sorted(out)
            seqset = SequenceSet(seqset.ranges)
        if not self.uids:
            if not uid and any(r.start is not None and r.end is not None for r in seqset.ranges):
                raise Bad("Invalid message sequence number: mailbox is empty")
            return sorted(out)
        if uid:
            for a, b in seqset.resolve(self.uids[-1]):
                lo = bisect.bisect_left(self.uids, a)
                hi = bisect.bisect_right(self.uids, b)
                out.update(self.uids[lo:hi])
        else:
            if seqset.highest(len(self.uids)) > len(self.uids):
                raise Bad("Invalid message sequence number")
            for a, b in seqset.resolve(len(self.uids)):
                out.update(self.uids[a - 1 : b])
        return sorted(out)

    def live_records(self, uids: Iterable[int]) -> list[MessageRecord]:
        """Records of ``uids`` that have not been expunged (pending expunges excluded)."""
        return [self.records[u] for u in uids if u in self.records and u not in self.pending_expunge]

    # ---------------------------------------------------------------- syncing with the store
    async def refresh(self) -> None:
        """Re-read what changed since the last refresh and queue it (nothing is sent)."""
        idx = self.index
        if idx is None:
            assert self.registry is not None, "a view made by open() has the node's registry"
            idx = self.index = await self.registry.get(self.mailbox)
            self.index_pos = idx.log_end  # the records came from elsewhere: catch up by modseq
            caught_up = None
        else:
            await idx.sync()
            caught_up = idx.since(self.index_pos)
        mb = idx.mailbox
        if idx.dead or mb.uidvalidity != self.mailbox.uidvalidity:
            self.deleted = True
            return
        if mb.name != self.mailbox.name:
            self.mailbox = mb
        if idx.modseq <= self.known_modseq and caught_up is None:
            return
        if caught_up is None:  # the shared log no longer reaches back here: ask the store
            pos, modseq = idx.log_end, idx.modseq
            changed = await self.store.changed_since(mb.id, self.known_modseq)
            gone = await self.store.expunged_since(mb.id, self.known_modseq)
            self.index_pos = max(self.index_pos, pos)
        else:
            changed, gone = caught_up
            self.index_pos, modseq = idx.log_end, idx.modseq
        self.apply(changed, gone)
        self.mailbox = mb
        self.known_modseq = max(self.known_modseq, modseq)

    def apply(self, changed: Iterable[MessageRecord], gone: Iterable[int]) -> None:
        """Queue store changes (also used after this session's own commands)."""
        top = self.uids[-1] if self.uids else 0
        for uid in gone:
            if uid in self.records:
                self.pending_expunge.add(uid)
                self.pending_flags.discard(uid)
            self.pending_new.pop(uid, None)
        for rec in changed:
            rec = self.mine(rec)
            if rec.uid in self.pending_expunge:
                continue
            old = self.records.get(rec.uid)
            if old is not None:
                if old.flags != rec.flags or (self.condstore and old.modseq != rec.modseq):
                    self.pending_flags.add(rec.uid)
                    self._note_keywords(rec)
                self.records[rec.uid] = rec
                self._view_record(rec)
            elif rec.uid > top:
                self.pending_new[rec.uid] = rec
                self._note_keywords(rec)

    def set_record(self, rec: MessageRecord) -> None:
        """This session changed a message itself (STORE, implicit \\Seen): no update needed."""
        rec = self.mine(rec)
        if rec.uid in self.records:
            self.records[rec.uid] = rec
            self.pending_flags.discard(rec.uid)
            self._view_record(rec)
            self._note_keywords(rec)

    # ---------------------------------------------------------------- keyword announcement
    def _note_keywords(self, rec: MessageRecord) -> None:
        """Queue the keywords of ``rec`` that the client has not been told about."""
        announced = self.announced
        for f in rec.flags:
            if f not in announced and not f.startswith("\\"):
                self.unannounced.add(f)

    def announce(self) -> bytes:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` when keywords not announced yet entered
        the view (RFC 9051 §7.3.5: the client records the new FLAGS); else nothing. Must be
        sent before any FETCH response mentioning them (RFC 3501 §7.2.6)."""
        if not self.unannounced:
            return b""
        self.announced |= self.unannounced
        self.unannounced.clear()
        perm = self.permanent_flags()
        out = response.untagged("FLAGS", perm)
        if not self.readonly:  # EXAMINE: PERMANENTFLAGS stays () (RFC 9051 §6.3.2)
            codes = " ".join(a.value for a in perm if isinstance(a, response.Atom))
            out += response.untagged_status("OK", "Flags permitted", f"PERMANENTFLAGS ({codes} \\*)")
        return out

    def overlay_seen(self, seen: Iterable[int]) -> None:
        """Show SEEN (a reader's own seen UIDs) as \\Seen instead of the stored flag, which is
        the owner's: \\Seen is per user on shared mailboxes (issue 13 §3, `namespaces`)."""
        self.seen = set(seen)
        self.records = {u: self.mine(r) for u, r in self.records.items()}
        self._views = None

    def mine(self, rec: MessageRecord) -> MessageRecord:
        """REC as this session shows it (with its own \\Seen when `overlay_seen` is on)."""
        seen = self.seen
        if seen is None or (rec.uid in seen) == ("\\Seen" in rec.flags):
            return rec
        flags = rec.flags | {"\\Seen"} if rec.uid in seen else rec.flags - {"\\Seen"}
        return dataclasses.replace(rec, flags=frozenset(flags))

    def remove_expunged(self, uids: Iterable[int]) -> list[int]:
        """Drop ``uids`` from the view; returns the sequence numbers to report, in the order
        EXPUNGE responses must be sent (each number valid after the previous removals)."""
        seqs: list[int] = []
        views = self._views
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            if views is not None:
                del views[seq - 1]
            self.records.pop(uid, None)
            self.recent.discard(uid)
            self.pending_expunge.discard(uid)
            self.pending_flags.discard(uid)
            seqs.append(seq)
        if views is not None and seqs:
            for i in range(seqs[-1] - 1, len(views)):  # renumber from the lowest removal on
                views[i].seq = i + 1
        return seqs

    def expunge_responses(self, uids: Iterable[int]) -> bytes:
        """EXPUNGE (or, with QRESYNC, one VANISHED) for ``uids``, removing them from the view."""
        uids = [u for u in uids if u in self.records]
        if not uids:
            return b""
        seqs = self.remove_expunged(uids)
        if self.qresync:  # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled
            return response.vanished(SequenceSet.from_numbers(uids))
        return b"".join(response.expunge(s) for s in seqs)

    async def updates(self, claims: RecentClaims | None, *, allow_expunge: bool) -> bytes:
        """Responses for everything queued that may be sent now (see the module docstring);
        new keywords are announced first (also those of new messages, before their EXISTS)."""
        out = self.announce()
        if allow_expunge and self.pending_expunge:
            out += self.expunge_responses(sorted(self.pending_expunge))
        if self.pending_new:
            new = sorted(self.pending_new)
            first = len(self.uids)
            for uid in new:
                self.uids.append(uid)
                self.records[uid] = self.pending_new[uid]
            self.pending_new.clear()
            if claims is not None and not self.rev2:
                self.recent |= await claims.claim(self.mailbox, new, peek=self.readonly)
            if self._views is not None:
                from .query import MessageView

                views = self._views
                if len(views) != first:  # out of step (cannot happen): rebuild on next use
                    self._views = None
                else:
                    views.extend(
                        MessageView(first + i + 1, self.records[u], u in self.recent)
                        for i, u in enumerate(self.uids[first:])
                    )
            out += response.exists(len(self.uids))
            if not self.rev2:
                out += response.recent(len(self.recent))
        if self.pending_flags:
            for uid in sorted(self.pending_flags):
                if uid in self.pending_expunge:
                    continue
                seq = self.seq_of(uid)
                if seq is not None:
                    out += self.flags_fetch(seq, uid)
            self.pending_flags.clear()
        return out

    # ---------------------------------------------------------------- helpers for responses
    def flags_of(self, uid: int) -> response.Raw:
        """The FLAGS of ``uid``, sorted, ``\\Recent`` last (rev1), pre-encoded (memoised)."""
        recent = not self.rev2 and uid in self.recent
        return response.flag_list(self.records[uid].flags, recent=recent, rev2=self.rev2)

    def flags_fetch(self, seq: int, uid: int, *, with_uid: bool = False) -> bytes:
        items: list[tuple[str, response.Value]] = []
        if with_uid or self.qresync:  # RFC 7162 §3.2.4: UID in every FETCH once QRESYNC is on
            items.append(("UID", uid))
        items.append(("FLAGS", self.flags_of(uid)))
        if self.condstore:  # RFC 7162 §3.1.4
            items.append(("MODSEQ", [self.records[uid].modseq]))
        return response.fetch(seq, items)

    def views_built(self) -> bool:
        """Is the ``views()`` list there already (else building it costs O(mailbox))?"""
        return self._views is not None

    def views(self) -> list[MessageView]:
        """``query.MessageView`` list in sequence order (the colleague module's input).

        Cached between commands and kept current in place (record changes); rebuilt after the
        numbering or \\Recent changed. Callers must not change the list."""
        if self._views is None:
            from .query import MessageView

            recent = self.recent
            records = self.records
            self._views = [MessageView(i + 1, records[u], u in recent) for i, u in enumerate(self.uids)]
        return self._views

    def _view_record(self, rec: MessageRecord) -> None:
        if self._views is not None:
            seq = self.seq_of(rec.uid)
            if seq is not None:
                self._views[seq - 1].record = rec

    def permanent_flags(self) -> list[response.Value]:
        """The system flags, then the keywords announced so far (SELECT's FLAGS, PERMANENTFLAGS)."""
        base = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        return [response.Atom(f) for f in base + sorted(self.announced)]


def _keywords(records: Iterable[MessageRecord]) -> set[str]:
    """The keywords (flags not starting with a backslash) used by ``records``."""
    return {f for r in records for f in r.flags if not f.startswith("\\")}
