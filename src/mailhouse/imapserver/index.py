"""The message index of a mailbox, shared by the IMAP sessions of one node that selected it.

RFCs: RFC 9051 §2.3.1 (UIDs), RFC 7162 §3.1 (MODSEQ), §3.2.10 (expunged UIDs for VANISHED).

Why: every session used to read the whole mailbox (one :class:`MessageRecord` per message) on
SELECT and to ask the store for ``changed_since``/``expunged_since`` itself after every
command. With ten sessions on one 1,000-message INBOX that was most of the CPU time of the
server. Here one :class:`SharedIndex` per mailbox holds the records (shared, immutable
objects) and an append-only change log; a session snapshots it on SELECT (two container
copies, no store read beyond one mailbox row) and afterwards consumes the log from its own
position (:meth:`SharedIndex.since`).

Model:

* ``modseq`` is the mailbox's HIGHESTMODSEQ read *before* the queries of the last sync, so
  every change with a modseq up to it is reflected in ``records`` (later ones may be too:
  applying a change twice is harmless because records are replaced whole and UIDs are never
  reused).
* ``log`` holds ``(uid, gone)`` in the order the index learnt them; absolute positions are
  ``log_start + i``. A session at position ``p`` applies the entries from ``p`` on, taking
  the *current* record of a changed UID. The log is trimmed past :data:`LOG_KEEP`; a session
  left behind (``since`` returns None) re-reads from the store by modseq.
* :meth:`SharedIndex.sync` is coalesced: a caller waits for a sync that *starts after* its
  call (so it sees every change committed before it asked), and callers arriving while one
  runs share the next one. The mailbox row is read on a sync unless the store's commit mark
  (`api.ChangeFeed.commit_mark`, SQLite's ``PRAGMA data_version``) is the one taken when the
  last sync started: then nothing was committed since and the index is current without a
  read (issue 13 §2: that row read was ~6 % of a sync client's command loop). The message
  queries run only when HIGHESTMODSEQ moved.
* A mailbox deleted or re-created (UIDVALIDITY changed) makes the index ``dead``; it is
  dropped from the registry and the sessions see their mailbox deleted.
* One :class:`IndexRegistry` per node (``node.ImapNode.index``), shared by its imap and imaps
  sessions; two nodes in one process (tests, benchmarks) never share an index.

Invariants: ``uids`` is the sorted key list of ``records``; nothing here is written to a
client; the index never holds message bodies.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import weakref
from collections.abc import Iterable

from mailhouse.store.api import Mailbox, MessageRecord, Store, StoreError

LOG_KEEP = 8192  # log entries kept per mailbox (a session further behind re-reads the store)
KEEP_RECENT = 8  # indexes kept per node beyond those sessions hold (LRU) ...
KEEP_RECENT_MESSAGES = 200_000  # ... while they hold at most this many messages in all


class SharedIndex:
    """One mailbox's records as this node last read them (see the module docstring)."""

    def __init__(self, store: Store, mailbox: Mailbox) -> None:
        # weak: an index (and the registry, which the node keeps) must not keep a closed store alive
        self._store: weakref.ref[Store] = weakref.ref(store)
        self.mailbox = mailbox
        self.records: dict[int, MessageRecord] = {}
        self.uids: list[int] = []
        self.modseq = 0
        self.loaded = False
        self.dead = False
        self.log: list[tuple[int, bool]] = []
        self.log_start = 0
        self._started = 0
        self._done = 0
        self._task: asyncio.Future[None] | None = None
        self._mark: int | None = None  # the store's commit mark when the last good sync began

    @property
    def store(self) -> Store:
        got = self._store()
        if got is None:
            raise StoreError("store closed and gone")
        return got

    @property
    def log_end(self) -> int:
        return self.log_start + len(self.log)

    # ---------------------------------------------------------------- reading the store
    async def sync(self) -> None:
        """Bring the index up to date with everything committed before this call."""
        mark = self._mark
        if mark is not None and self.store.commit_mark() == mark:
            return  # nothing committed since the last sync began, and it saw everything before
        want = self._started + 1
        while self._done < want:
            task = self._task
            if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
                self._started += 1
                task = self._task = asyncio.ensure_future(self._run(self._started))
            await asyncio.shield(task)

    async def _run(self, n: int) -> None:
        mark = self.store.commit_mark()  # before any read: a later commit changes it
        self._mark = None
        try:
            mb = await self.store.get_mailbox_by_id(self.mailbox.id)
            if mb is None or mb.uidvalidity != self.mailbox.uidvalidity:
                self.dead = True
                return
            newest = 0
            if not self.loaded:
                # the row first: the records read after it reflect at least its modseq
                records = await self.store.list_messages(mb.id)
                self.records = {r.uid: r for r in records}
                self.uids = [r.uid for r in records]  # list_messages is in UID order
                self.loaded = True
                newest = max((r.modseq for r in records), default=0)
            elif mb.highestmodseq > self.modseq:
                changed = await self.store.changed_since(mb.id, self.modseq)
                gone = await self.store.expunged_since(mb.id, self.modseq)
                self._apply(changed, gone)
                newest = max((r.modseq for r in changed), default=0)
            self.mailbox = mb
            # A change committed between the row and the records is in the records: the index
            # then reflects every change up to its modseq (modseqs are given in commit order per
            # mailbox), so HIGHESTMODSEQ at SELECT is never below a message's MODSEQ (RFC 7162
            # §3.1.2.1; issue 13: FETCH 1 MODSEQ after SELECT above OK [HIGHESTMODSEQ]).
            self.modseq = max(self.modseq, mb.highestmodseq, newest)
            self._mark = mark
        finally:
            self._done = max(self._done, n)

    def _apply(self, changed: Iterable[MessageRecord], gone: Iterable[int]) -> None:
        log = self.log
        for rec in changed:
            uid = rec.uid
            if uid not in self.records:
                if not self.uids or uid > self.uids[-1]:
                    self.uids.append(uid)
                else:
                    bisect.insort(self.uids, uid)
            self.records[uid] = rec
            log.append((uid, False))
        for uid in gone:
            if self.records.pop(uid, None) is not None:
                i = bisect.bisect_left(self.uids, uid)
                del self.uids[i]
            log.append((uid, True))
        if len(log) > LOG_KEEP:
            cut = len(log) - LOG_KEEP // 2
            del log[:cut]
            self.log_start += cut

    # ---------------------------------------------------------------- what sessions read
    def since(self, pos: int) -> tuple[list[MessageRecord], list[int]] | None:
        """Changes from log position ``pos`` on: (current records of changed UIDs still
        present, expunged UIDs); None when the log no longer reaches back to ``pos``."""
        if pos < self.log_start:
            return None
        changed: list[MessageRecord] = []
        gone: list[int] = []
        seen: set[int] = set()
        records = self.records
        for uid, is_gone in self.log[pos - self.log_start :]:
            if is_gone:
                gone.append(uid)
            elif uid not in seen:
                seen.add(uid)
                rec = records.get(uid)
                if rec is not None:
                    changed.append(rec)
        return changed, gone


class IndexRegistry:
    """The shared indexes of one store on one node (``node.ImapNode.index``).

    An index lives while a session holds it (sessions keep a strong reference, the registry a
    weak one) and, beyond that, while it is among the most recently selected (at most
    :data:`KEEP_RECENT` of them holding at most :data:`KEEP_RECENT_MESSAGES` messages), so
    re-selecting a mailbox costs no full read."""

    def __init__(self, store: Store) -> None:
        self._store: weakref.ref[Store] = weakref.ref(store)
        self.live: weakref.WeakValueDictionary[int, SharedIndex] = weakref.WeakValueDictionary()
        self.recent: collections.OrderedDict[int, SharedIndex] = collections.OrderedDict()

    async def get(self, mailbox: Mailbox) -> SharedIndex:
        """The index of ``mailbox``, synced with everything committed before this call; it
        may be ``dead`` (mailbox deleted or re-created)."""
        idx = self.live.get(mailbox.id)
        if idx is None or idx.dead or idx.mailbox.uidvalidity != mailbox.uidvalidity:
            store = self._store()
            if store is None:
                raise StoreError("store closed and gone")
            idx = SharedIndex(store, mailbox)
            self.live[mailbox.id] = idx
        self.recent[mailbox.id] = idx
        self.recent.move_to_end(mailbox.id)
        await idx.sync()
        if idx.dead:
            self.recent.pop(mailbox.id, None)
        self._trim()
        return idx

    def _trim(self) -> None:
        total = sum(len(i.records) for i in self.recent.values())
        while self.recent and (len(self.recent) > KEEP_RECENT or total > KEEP_RECENT_MESSAGES):
            _, old = self.recent.popitem(last=False)
            total -= len(old.records)
