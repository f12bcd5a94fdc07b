"""Fan-out of the store's change feed to the IMAP sessions of one process.

RFCs: RFC 2177 (IDLE), RFC 5465 (NOTIFY): both need to hear about committed changes made by
other sessions, SMTP delivery or other nodes.

One :class:`ChangeHub` per listener set subscribes to ``store.subscribe(account_id)`` once per
account that has at least one listening session, and wakes every :class:`Listener` of that
account. A session listens only while it can use a wake-up (IDLE, or NOTIFY active), so an idle
connection costs one small object, not a store subscription.

Invariants:

* A listener's backlog is bounded (:data:`MAX_BACKLOG`); on overflow it is marked
  ``overflow`` and the session re-reads its state instead of replaying changes.
* The pump task of an account ends when its last listener leaves.
* Changes are hints: the session always re-reads the store (``SelectedMailbox.refresh``),
  so a lost or duplicated change costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from mailhouse.store.api import Change, Store

log = logging.getLogger(__name__)

MAX_BACKLOG = 64  # changes kept per listener; more means "re-read everything"


class Listener:
    __slots__ = ("account_id", "changes", "event", "overflow")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.event = asyncio.Event()
        self.changes: collections.deque[Change] = collections.deque()
        self.overflow = False

    def push(self, change: Change) -> None:
        if len(self.changes) >= MAX_BACKLOG:
            self.overflow = True
        else:
            self.changes.append(change)
        self.event.set()

    def drain(self) -> tuple[list[Change], bool]:
        """Take the pending changes and the overflow mark; clears the wake-up."""
        out, over = list(self.changes), self.overflow
        self.changes.clear()
        self.overflow = False
        self.event.clear()
        return out, over


class ChangeHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: dict[int, set[Listener]] = {}
        self._pumps: dict[int, asyncio.Task[None]] = {}

    def listen(self, account_id: int) -> Listener:
        lst = Listener(account_id)
        self._listeners.setdefault(account_id, set()).add(lst)
        pump = self._pumps.get(account_id)
        if pump is None or pump.done():
            self._pumps[account_id] = asyncio.get_running_loop().create_task(self._pump(account_id))
        return lst

    def unlisten(self, lst: Listener) -> None:
        subs = self._listeners.get(lst.account_id)
        if subs is None:
            return
        subs.discard(lst)
        if not subs:
            del self._listeners[lst.account_id]
            pump = self._pumps.pop(lst.account_id, None)
            if pump is not None:
                pump.cancel()

    async def _pump(self, account_id: int) -> None:
        feed = self.store.subscribe(account_id)
        try:
            async for change in feed:
                for lst in tuple(self._listeners.get(account_id, ())):
                    lst.push(change)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("change feed for account %d failed; sessions will resync", account_id)
            for lst in tuple(self._listeners.get(account_id, ())):
                lst.overflow = True
                lst.event.set()
        finally:
            aclose = getattr(feed, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
