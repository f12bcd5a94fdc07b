"""RETR and TOP of big messages, streamed from the blob (issue 12 item 2).

RFCs: RFC 1939 §3 (multi-line responses: a line starting with "." gets one more "."; the block
ends with CRLF "." CRLF), §7 (TOP: the header, the blank line, then N body lines).

A message of :data:`STREAM_MIN` octets or more is never read whole: :func:`body_chunks` reads the
octets to send in :data:`CHUNK` pieces (``BlobStore.read_range`` through
``Maildrop.read_range``) and the session writes each one after the transport drained. TOP finds
where its output ends with :class:`Scanner` (one window of :data:`CHUNK` octets at a time).

Invariants: the stream is byte for byte what ``proto.pop3.dot_stuff_crlf`` (RETR) and
``maildrop.top`` + ``dot_stuff_crlf`` (TOP) give for the whole message — stored messages are
CRLF-normalised (``store.crlf``), so stuffing is "a dot after any LF, and at the very start",
and :class:`DotStuffer` carries whether the previous chunk ended with LF across chunk borders.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

#: RETR/TOP of messages this big or bigger streams from the blob (the read-ahead never holds them).
STREAM_MIN: Final = 1024 * 1024
#: Octets read from the blob and written at a time.
CHUNK: Final = 256 * 1024

ReadRange = Callable[[int, int], Awaitable[bytes]]  # (offset, length) -> octets


class DotStuffer:
    """Dot-stuffing (RFC 1939 §3) of CRLF text fed in chunks split anywhere."""

    __slots__ = ("_at_line_start", "_tail")

    def __init__(self) -> None:
        self._at_line_start = True
        self._tail = b"\r\n"  # the last two octets fed (an empty body needs no CRLF)

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")  # RFC 1939 §3: byte-stuff a leading "."
        if self._at_line_start and chunk[:1] == b".":
            out = b"." + out  # the previous chunk ended a line: this "." leads one
        self._at_line_start = chunk.endswith(b"\n")
        self._tail = (self._tail + chunk[-2:])[-2:]
        return out

    def end(self) -> bytes:
        """The terminator (a missing final CRLF first)."""
        return (b"" if self._tail == b"\r\n" else b"\r\n") + b".\r\n"


class Scanner:
    """Finds octet strings in a blob through one :data:`CHUNK` window (no whole read)."""

    __slots__ = ("_read", "_size", "_off", "_data")

    def __init__(self, read: ReadRange, size: int) -> None:
        self._read = read
        self._size = size
        self._off = 0
        self._data = b""

    async def find(self, pattern: bytes, start: int) -> int:
        """Offset of the first ``pattern`` at or after ``start``, or -1."""
        while True:
            if not (self._off <= start < self._off + len(self._data)):
                if start >= self._size:
                    return -1
                # a window at least as long as the pattern: every miss moves on by one octet or more
                self._off, self._data = start, await self._read(start, max(CHUNK, len(pattern)))
                if not self._data:
                    return -1
            i = self._data.find(pattern, start - self._off)
            if i >= 0:
                return self._off + i
            end = self._off + len(self._data)
            if end >= self._size:
                return -1
            start = max(start, end - (len(pattern) - 1))  # a match may straddle the border
            self._data = b""

    async def startswith(self, prefix: bytes) -> bool:
        return (await self._read(0, len(prefix))) == prefix


async def top_end(read: ReadRange, size: int, lines: int) -> int:
    """Where TOP's output ends (``maildrop.top`` over the stored octets, found by scanning)."""
    sc = Scanner(read, size)
    if await sc.startswith(b"\r\n"):
        pos = 2  # no header fields at all
    else:
        i = await sc.find(b"\r\n\r\n", 0)
        pos = size if i < 0 else i + 4
    for _ in range(lines):  # RFC 1939 §7: the first N lines of the body
        j = await sc.find(b"\r\n", pos)
        if j < 0:
            return size
        pos = j + 2
    return pos


async def body_chunks(read: ReadRange, end: int) -> AsyncIterator[bytes]:
    """The dot-stuffed octets ``[0, end)`` of a blob and the terminator, chunk by chunk."""
    stuffer = DotStuffer()
    pos = 0
    while pos < end:
        data = await read(pos, min(CHUNK, end - pos))
        if not data:
            break
        pos += len(data)
        yield stuffer.feed(data)
    if pos < end:
        raise ConnectionAbortedError("message ended early while it was sent")  # framing is lost
    yield stuffer.end()
