"""The change feed above the backends: subscriptions and their in-process dispatch.

A backend brings committed changes into the process (SQLite: polling the ``changes`` table;
PostgreSQL: LISTEN/NOTIFY) and hands each to `FeedHub.dispatch`; the hub fans them out to the
subscriptions of the account. Used by IMAP IDLE/NOTIFY (RFC 2177, RFC 5465) and the webmail's
server-sent events.

Invariants:
- `FeedHub.subscribe` registers the subscription before it returns: a change committed after
  that (and brought in by the backend) reaches it — callers need no sleep. ``await sub`` also
  waits until the backend's cross-process source is live (`FeedSource.ready`).
- Changes are only ever published after commit (the backends write them in the transaction).
  A subscriber may also be woken by a change committed shortly before it subscribed (SQLite's
  poller catches up from where it last stopped): wake-ups mean "re-read", never "exactly this".
- A subscriber's queue is bounded (`SUBSCRIBER_QUEUE`); when it is full further wake-ups are
  dropped: sessions re-read state on a wake-up anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Protocol, Self

from mailhouse.store.api import Change, ChangeKind

SUBSCRIBER_QUEUE = 1000  # pending wake-ups per subscriber; more are dropped (sessions re-read state)


class FeedSource(Protocol):
    """What a backend does for the feed (store/backend.py `Backend` has these)."""

    def feed_wake(self, hub: FeedHub) -> None: ...  # a subscription was added (sync: start polling)
    async def feed_ready(self, hub: FeedHub) -> None: ...  # the cross-process source is live


class Subscription:
    """`api.Subscription`: an async iterator of `Change`, registered on creation."""

    def __init__(self, hub: FeedHub, account_id: int) -> None:
        self.account_id = account_id
        self._hub = hub
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._ready = False
        self._closed = False

    def push(self, change: Change) -> None:
        if not self._closed and not self._queue.full():
            self._queue.put_nowait(change)

    async def _live(self) -> Self:
        await self._hub.ready()
        self._ready = True
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._live().__await__()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Change:
        if not self._ready and not self._closed:
            await self._live()
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:  # closed while waiting
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.remove(self)
        if not self._queue.full():
            self._queue.put_nowait(None)  # wake a waiting __anext__

    async def __aenter__(self) -> Self:
        return await self._live()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class FeedHub:
    """Subscriptions of one store instance (one per process), by account."""

    def __init__(self, source: FeedSource) -> None:
        self._source = source
        self._subs: dict[int, set[Subscription]] = {}

    def subscribe(self, account_id: int) -> Subscription:
        sub = Subscription(self, account_id)
        self._subs.setdefault(account_id, set()).add(sub)  # registered before the caller has it
        self._source.feed_wake(self)
        return sub

    def remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.account_id]

    async def ready(self) -> None:
        await self._source.feed_ready(self)

    def active(self) -> bool:
        return bool(self._subs)

    def accounts(self) -> list[int]:
        return list(self._subs)

    def dispatch(self, change: Change) -> None:
        for sub in tuple(self._subs.get(change.account_id, ())):
            sub.push(change)

    def missed(self) -> None:
        """Tell every subscriber that changes may have been lost: re-read state."""
        for acc in self.accounts():
            self.dispatch(Change(acc, 0, ChangeKind.MAILBOX, 0))
