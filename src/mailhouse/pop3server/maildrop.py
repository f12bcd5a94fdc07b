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
"""

from __future__ import annotations

from collections.abc import Iterable

from mailhouse.store.api import FlagMode, Mailbox, MessageRecord, NotFound, Store


class Vanished(Exception):
    """The message was expunged by another client after the snapshot."""


def normalize(data: bytes) -> bytes:
    """The octets RETR sends (before dot-stuffing): CRLF line ends, final CRLF."""
    norm = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if norm and not norm.endswith(b"\r\n"):
        norm += b"\n" if norm.endswith(b"\r") else b"\r\n"
    return norm


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


class Maildrop:
    def __init__(self, store: Store, mailbox: Mailbox, messages: list[MessageRecord]) -> None:
        self.store = store
        self.mailbox = mailbox
        self.messages = messages  # index = message number - 1 (RFC 1939 §5)
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.retrieved: set[int] = set()  # message numbers sent by RETR (for \Seen at QUIT)

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
        return self.messages[n - 1].size

    async def sizes(self, numbers: Iterable[int]) -> dict[int, int]:
        return {n: self.messages[n - 1].size for n in numbers}

    async def read(self, n: int) -> bytes:
        """The stored message ``n``; :class:`Vanished` if expunged meanwhile."""
        try:
            return await self.store.blobs.get(self.messages[n - 1].blob_key)
        except (FileNotFoundError, NotFound, KeyError) as e:
            raise Vanished(n) from e

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
