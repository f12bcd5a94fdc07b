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
  before dot-stuffing: the store keeps every message CRLF-normalised
  (``store.crlf``), so the index size is the answer and nothing is read to
  answer STAT or LIST.
* A message expunged meanwhile over IMAP (its blob gone) raises
  :class:`Vanished`; the session answers ``-ERR`` and goes on. Its size falls
  back to the index size. Expunging it again at QUIT is a no-op.
* Messages of ``stream.STREAM_MIN`` octets or more are never read whole: RETR and TOP
  stream them with :meth:`Maildrop.read_range` (issue 12 item 2).
* Reads go ahead: :meth:`Maildrop.read` fetches the next live messages (up to
  :data:`READ_AHEAD_COUNT` / :data:`READ_AHEAD_BYTES`) in one batched store read,
  in the background while the current one is sent, so sequential RETR costs no
  store round trip per message (and, with :meth:`Maildrop.read_nowait`, no wait).
  A message expunged over IMAP after it was read ahead is still sent as read (the
  same octets, never other data; RFC 2180 §4.1.3 allows as much for IMAP); one not
  read yet raises :class:`Vanished`. The snapshot (numbers, sizes, UIDLs) never changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Final

from mailhouse.store.api import FlagMode, Mailbox, MessageRecord, NotFound, Store
from mailhouse.store.crlf import to_crlf

#: Read-ahead window: messages fetched per batched store read, and their total octets.
READ_AHEAD_COUNT: Final = 32
READ_AHEAD_BYTES: Final = 2 * 1024 * 1024
#: Messages bigger than this are never read ahead (fetched on demand only).
READ_AHEAD_MAX_MESSAGE: Final = 512 * 1024


class Vanished(Exception):
    """The message was expunged by another client after the snapshot."""


def top(data: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then ``lines`` body lines."""
    norm = to_crlf(data)  # a no-op for stored messages (store.crlf invariant)
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


class Maildrop:
    def __init__(self, store: Store, mailbox: Mailbox, messages: list[MessageRecord]) -> None:
        self.store = store
        self.mailbox = mailbox
        self.messages = messages  # index = message number - 1 (RFC 1939 §5)
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.retrieved: set[int] = set()  # message numbers sent by RETR (for \Seen at QUIT)
        self._cache: dict[int, bytes | None] = {}  # read ahead; None: the blob was gone
        self._pending: asyncio.Task[None] | None = None
        self._pending_nums: frozenset[int] = frozenset()
        self._hi = 0  # highest message number fetched so far

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
    def size(self, n: int) -> int:
        return self.messages[n - 1].size

    def sizes(self, numbers: Iterable[int]) -> dict[int, int]:
        return {n: self.messages[n - 1].size for n in numbers}

    async def read(self, n: int) -> bytes:
        """The stored message ``n``; :class:`Vanished` if expunged meanwhile."""
        if n not in self._cache:
            if self._pending is not None and n in self._pending_nums:
                await asyncio.shield(self._pending)
            if n not in self._cache:
                await self._fetch(self._window(n))
        data = self._cache.pop(n, None)
        self._read_ahead(n)
        if data is None:
            raise Vanished(n)
        return data

    def read_nowait(self, n: int) -> bytes | None:
        """Message ``n`` if it was read ahead (``None``: call :meth:`read`); :class:`Vanished` if gone.

        The synchronous fast path of sequential RETR: no store call, no task switch.
        """
        if n not in self._cache:
            return None
        data = self._cache.pop(n)
        self._read_ahead(n)
        if data is None:
            raise Vanished(n)
        return data

    def key(self, n: int) -> str:
        return self.messages[n - 1].blob_key

    async def read_range(self, n: int, offset: int, length: int) -> bytes:
        """Octets of message ``n`` (streaming RETR/TOP of big messages, issue 12 item 2);
        :class:`Vanished` if its blob is gone."""
        try:
            return await self.store.blobs.read_range(self.messages[n - 1].blob_key, offset, length)
        except (FileNotFoundError, NotFound, KeyError):
            raise Vanished(n) from None

    def close(self) -> None:
        """Drop the read-ahead (end of session)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._cache.clear()

    def _window(self, first: int) -> list[int]:
        """``first`` and the live, not yet cached messages after it, within the read-ahead limits."""
        nums = [first]
        total = self.messages[first - 1].size
        for m in range(first + 1, len(self.messages) + 1):
            if len(nums) >= READ_AHEAD_COUNT:
                break
            if m in self.deleted or m in self._cache or m in self._pending_nums:
                continue
            size = self.messages[m - 1].size
            if size > READ_AHEAD_MAX_MESSAGE or total + size > READ_AHEAD_BYTES:
                break
            nums.append(m)
            total += size
        return nums

    def _read_ahead(self, n: int) -> None:
        if self._pending is not None:
            return
        if self._hi - n >= READ_AHEAD_COUNT // 2:
            return
        start = max(n, self._hi) + 1
        while start <= len(self.messages) and (
            start in self.deleted or self.messages[start - 1].size > READ_AHEAD_MAX_MESSAGE
        ):
            start += 1
        if start > len(self.messages):
            return
        nums = self._window(start)
        self._pending_nums = frozenset(nums)
        self._pending = asyncio.get_running_loop().create_task(self._background(nums))

    async def _background(self, nums: list[int]) -> None:
        try:
            await self._fetch(nums)
        except Exception:  # noqa: BLE001 - read ahead only; read() fetches on demand and reports
            pass
        finally:
            self._pending = None
            self._pending_nums = frozenset()

    async def _fetch(self, nums: Sequence[int]) -> None:
        keys = [self.messages[m - 1].blob_key for m in nums]
        get_many = getattr(self.store.blobs, "get_many", None)
        if get_many is not None:
            found: dict[str, bytes] = await get_many(keys)
        else:
            found = {}
            for k, r in zip(
                keys,
                await asyncio.gather(*(self.store.blobs.get(k) for k in keys), return_exceptions=True),
                strict=True,
            ):
                if isinstance(r, bytes):
                    found[k] = r
                elif not isinstance(r, FileNotFoundError | NotFound | KeyError):
                    raise r
        for m, k in zip(nums, keys, strict=True):
            self._cache[m] = found.get(k)
        self._hi = max(self._hi, nums[-1])

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
