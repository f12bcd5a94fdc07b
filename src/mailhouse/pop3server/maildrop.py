"""The POP3 view of one INBOX for one session (RFC 1939 §5-§7).

At login the session takes a snapshot of the INBOX (UID order); message
numbers 1..n index that snapshot for the whole session (RFC 1939 §5: numbers
never change during a session, deleted ones included). DELE only marks;
:meth:`Maildrop.commit` runs in UPDATE state after QUIT and expunges the
marked UIDs in one store call, so a dropped connection or a killed server
deletes nothing (RFC 1939 §6).

Invariants
----------
* ``UIDL`` is ``<uidvalidity>.<uid>``: stable across sessions and the same
  identity IMAP uses (RFC 9051 §2.3.1.1); only printable ASCII (RFC 1939 §7).
* Octet counts (STAT, LIST, RETR's ``+OK``) are exactly the octets RETR sends
  before dot-stuffing: the blob with bare LF turned into CRLF and a final line
  ending added when missing (see :func:`virtual_size`, which mirrors
  ``proto.pop3.dot_stuff_stream``). Blobs are immutable, so the size is cached
  per blob key for the life of the process.
* A message expunged meanwhile over IMAP (its blob gone) raises
  :class:`Vanished`; the session answers ``-ERR`` and goes on. Its size falls
  back to the index size. Expunging it again at QUIT is a no-op.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from mailhouse.store.api import FlagMode, Mailbox, MessageRecord, NotFound, Store

#: Blob keys whose POP3 size is remembered per process (≈150 B each).
SIZE_CACHE_ENTRIES: Final = 200_000
#: Blobs read at once while sizing a maildrop (threads of the default executor).
SIZE_CONCURRENCY: Final = 16

_size_cache: OrderedDict[str, int] = OrderedDict()


class Vanished(Exception):
    """The message was expunged by another client after the snapshot."""


def normalize(data: bytes) -> bytes:
    """The octets RETR sends (before dot-stuffing): CRLF line ends, final CRLF."""
    norm = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if norm and not norm.endswith(b"\r\n"):
        norm += b"\n" if norm.endswith(b"\r") else b"\r\n"
    return norm


def virtual_size(data: bytes) -> int:
    """``len(normalize(data))`` without building the copy."""
    if not data:
        return 0
    n = len(data) + data.count(b"\n") - data.count(b"\r\n")  # every bare LF gains a CR
    if data.endswith(b"\r"):
        n += 1
    elif not data.endswith(b"\n"):
        n += 2
    return n


def top(data: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then ``lines`` body lines."""
    norm = normalize(data)
    if norm.startswith(b"\r\n"):
        hdr_end = 2  # no header fields at all
    else:
        i = norm.find(b"\r\n\r\n")
        hdr_end = len(norm) if i < 0 else i + 4
    pos = hdr_end
    for _ in range(lines):
        j = norm.find(b"\r\n", pos)
        if j < 0:
            pos = len(norm)
            break
        pos = j + 2
    return norm[:pos]


def _remember(key: str, size: int) -> None:
    _size_cache[key] = size
    if len(_size_cache) > SIZE_CACHE_ENTRIES:
        _size_cache.popitem(last=False)


class Maildrop:
    def __init__(self, store: Store, mailbox: Mailbox, messages: list[MessageRecord]) -> None:
        self.store = store
        self.mailbox = mailbox
        self.messages = messages  # index = message number - 1 (RFC 1939 §5)
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.retrieved: set[int] = set()  # message numbers sent by RETR (for \Seen at QUIT)
        self._sizes: list[int | None] = [_size_cache.get(m.blob_key) for m in messages]

    @classmethod
    async def open(cls, store: Store, mailbox: Mailbox) -> Maildrop:
        msgs = await store.list_messages(mailbox.id)
        msgs.sort(key=lambda m: m.uid)
        return cls(store, mailbox, msgs)

    # -- lookup --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.messages)

    def exists(self, n: int) -> bool:
        """Message ``n`` is in the snapshot and not marked deleted."""
        return 1 <= n <= len(self.messages) and n not in self.deleted

    def live(self) -> Iterable[int]:
        return (n for n in range(1, len(self.messages) + 1) if n not in self.deleted)

    def uidl(self, n: int) -> str:
        return f"{self.mailbox.uidvalidity}.{self.messages[n - 1].uid}"

    # -- sizes ---------------------------------------------------------------------
    async def size(self, n: int) -> int:
        s = self._sizes[n - 1]
        if s is None:
            await self._fill([n])
            s = self._sizes[n - 1]
            assert s is not None
        return s

    async def sizes(self, numbers: Iterable[int]) -> dict[int, int]:
        nums = list(numbers)
        await self._fill([n for n in nums if self._sizes[n - 1] is None])
        return {n: self._sizes[n - 1] or 0 for n in nums}

    async def _fill(self, numbers: list[int]) -> None:
        if not numbers:
            return
        get_sync = getattr(self.store.blobs, "get_sync", None)
        if get_sync is not None:
            # File blobs (embedded store): size the whole batch in one worker thread; one
            # thread hop per blob would cost more than reading page-cached files.
            keys = [self.messages[n - 1].blob_key for n in numbers]

            def batch() -> list[int | None]:
                out: list[int | None] = []
                for k in keys:
                    try:
                        out.append(virtual_size(get_sync(k)))
                    except (FileNotFoundError, NotFound, KeyError):
                        out.append(None)
                return out

            for n, key, size in zip(numbers, keys, await asyncio.to_thread(batch), strict=True):
                if size is None:
                    self._sizes[n - 1] = self.messages[n - 1].size  # vanished: keep the index figure
                else:
                    self._sizes[n - 1] = size
                    _remember(key, size)
            return
        sem = asyncio.Semaphore(SIZE_CONCURRENCY)

        async def one(n: int) -> None:
            async with sem:
                try:
                    await self.read(n)  # fills self._sizes[n - 1]
                except Vanished:
                    self._sizes[n - 1] = self.messages[n - 1].size  # vanished: keep the index figure

        await asyncio.gather(*(one(n) for n in numbers))

    async def read(self, n: int) -> bytes:
        """The stored message ``n``; :class:`Vanished` if expunged meanwhile."""
        rec = self.messages[n - 1]
        try:
            data = await self.store.blobs.get(rec.blob_key)
        except (FileNotFoundError, NotFound, KeyError) as e:
            raise Vanished(n) from e
        if self._sizes[n - 1] is None:
            size = virtual_size(data)
            self._sizes[n - 1] = size
            _remember(rec.blob_key, size)
        return data

    # -- UPDATE ----------------------------------------------------------------------
    async def commit(self) -> int:
        """RFC 1939 §6: remove the marked messages; returns how many were removed.

        Retrieved messages that stay get ``\\Seen`` (as Dovecot does), in one call.
        """
        seen = [self.messages[n - 1].uid for n in sorted(self.retrieved - self.deleted)]
        if seen:
            await self.store.store_flags(self.mailbox.id, seen, FlagMode.ADD, frozenset({"\\Seen"}))
        uids = [self.messages[n - 1].uid for n in sorted(self.deleted)]
        if not uids:
            return 0
        gone, _ = await self.store.expunge(self.mailbox.id, uids)
        return len(gone)
