"""Spooled messages: a message being received, kept on disk instead of in memory (issue 12 item 2).

`Spool` collects one message's bytes as they arrive (SMTP DATA after dot-unstuffing, BDAT chunks):
up to `SPOOL_MEMORY_MAX` octets stay in memory (the fast path for ordinary mail); beyond that
everything goes to a temporary file under ``data_dir/spool`` through a bounded write buffer, so a
session holds at most ``SPOOL_MEMORY_MAX + WRITE_BUFFER`` octets whatever the message size.
`Spool.finish` returns a `SpooledMessage`: the header section in memory (``head``, at most
`HEAD_MAX` octets) and the body as bytes or as a byte range of the spool file.

Everything above (Authentication-Results, DKIM, the MSA's repairs) rewrites or prepends to the
head only; the body is read in `READ_CHUNK` pieces (``body_chunks``) and copied into a blob by the
blob store's ``put_file`` (``copy_file_range``: no copy through user space), never joined in memory.

Invariants:
- Line endings are normalised while spooling, exactly as `store.crlf.to_crlf` does on a whole
  message (bare CR / bare LF → CRLF, a final CRLF added): stored blobs are CRLF (RFC 5322 §2.1).
- ``head`` ends just after the empty line that ends the header section (RFC 5322 §2.1), or is the
  whole message when it has no body; ``head + body`` is the message.
- The spool file is temporary: never fsynced (the blob made from it is), unlinked by
  `Spool.discard`, which the session calls when the transaction ends, whatever the outcome.
  Its name starts with the owning process id, so `remove_stale` can drop a crashed process's
  files without touching those of live workers sharing the directory.
- Blocking file I/O: `write` buffers, and writes only past 4 × `WRITE_BUFFER` if the caller does
  not `flush` when `flush_due` (in a thread, as the SMTP server does); `finish` on a spool
  `on_disk`, `discard` of one (unlinking a big file takes a while) and reading a big body
  (`body_chunks`, `to_bytes`) belong in a thread too.
- CPU per octet on the event loop is one copy: SMTP DATA arrives with CRLF line endings (the
  core refuses a message with a bare CR or LF), so `write(..., crlf=True)` skips normalising.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = [
    "HEAD_MAX",
    "READ_CHUNK",
    "SPOOL_MEMORY_MAX",
    "BodyFile",
    "CrlfStream",
    "HeaderTooLarge",
    "Spool",
    "SpooledMessage",
    "body_offset",
    "remove_stale",
]

#: Messages up to this size stay in memory (no file at all): the ingest fast path.
SPOOL_MEMORY_MAX = 256 * 1024
#: The header section kept in memory for parsing and rewriting; Postfix's header_size_limit is
#: 100 KiB (it moves the rest into the body); a longer header section is refused (`HeaderTooLarge`).
HEAD_MAX = 256 * 1024
#: Octets buffered before a write to the spool file.
WRITE_BUFFER = 256 * 1024
#: Octets per read of a spooled body (hashing, copying, sending).
READ_CHUNK = 1024 * 1024


class HeaderTooLarge(Exception):
    """The header section does not end within `HEAD_MAX` octets."""


class CrlfStream:
    """`store.crlf.to_crlf` applied piecewise: the same output for any split of the input."""

    __slots__ = ("_cr", "_any", "_ends_lf")

    def __init__(self) -> None:
        self._cr = False  # the last input octet was CR: CRLF or bare CR is decided by the next one
        self._any = False
        self._ends_lf = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # RFC 5322 §2.1: bare CR
        if b"\n" in data:
            data = data.replace(b"\n", b"\r\n")
        if data:
            self._any = True
            self._ends_lf = data.endswith(b"\n")
        return data

    def clean(self, data: bytes) -> bytes:
        """DATA whose line endings the caller vouches for (CRLF only, none split at its end, as
        `proto.smtp.MessageChunk.crlf` promises): passed through as it is, no pass over it."""
        if self._cr:
            return self.feed(data)  # (not for such input; keeps the output exact all the same)
        if data:
            self._any = True
            self._ends_lf = data.endswith(b"\n")
        return data

    def end(self) -> bytes:
        """The rest: a pending CR as CRLF, or the final CRLF a non-empty message lacks."""
        if self._cr:
            self._cr = False
            self._any = self._ends_lf = True
            return b"\r\n"
        if self._any and not self._ends_lf:
            self._ends_lf = True
            return b"\r\n"
        return b""


def body_offset(data: bytes) -> int:
    """Offset of the body in DATA (CRLF): just after the empty line ending the header section,
    -1 when there is none (RFC 5322 §2.1; as `message.headers.split_header_block` finds it)."""
    if data.startswith(b"\r\n"):
        return 2
    i = data.find(b"\r\n\r\n")
    return -1 if i < 0 else i + 4


@dataclass(frozen=True, slots=True)
class BodyFile:
    """LENGTH octets of the file at PATH from OFFSET."""

    path: Path
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """A message as ``head + body``: the header section in memory, the body in memory or on disk."""

    head: bytes
    body: bytes | BodyFile = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> SpooledMessage:
        off = body_offset(data)
        if off < 0:
            return cls(data)
        return cls(data[:off], data[off:])

    @property
    def body_size(self) -> int:
        return self.body.length if isinstance(self.body, BodyFile) else len(self.body)

    @property
    def size(self) -> int:
        return len(self.head) + self.body_size

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.body, BodyFile)

    def with_head(self, head: bytes) -> SpooledMessage:
        return replace(self, head=head)

    def prepend(self, prefix: bytes) -> SpooledMessage:
        """PREFIX (whole header lines) on top; the body is not touched."""
        return replace(self, head=prefix + self.head) if prefix else self

    def body_chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The body in pieces of at most SIZE octets (blocking reads for a file body)."""
        body = self.body
        if not isinstance(body, BodyFile):
            if body:
                yield body
            return
        left = body.length
        with open(body.path, "rb", buffering=0) as f:
            f.seek(body.offset)
            while left > 0:
                piece = f.read(min(size, left))
                if not piece:
                    raise OSError(f"spool file {body.path} is shorter than expected")
                left -= len(piece)
                yield piece

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The whole message in pieces: the head, then the body."""
        if self.head:
            yield self.head
        yield from self.body_chunks(size)

    def to_bytes(self) -> bytes:
        """The message in one piece: for small messages (or callers that need it whole)."""
        if isinstance(self.body, bytes):
            return self.head + self.body
        return b"".join(self.chunks())


class Spool:
    """One message being received: in memory up to MEMORY_MAX octets, then a file in DIRECTORY."""

    def __init__(self, directory: Path, memory_max: int = SPOOL_MEMORY_MAX) -> None:
        self.directory = directory
        self.memory_max = memory_max
        self._buf = bytearray()
        self._crlf = CrlfStream()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0

    @property
    def size(self) -> int:
        """Octets spooled so far (after line-ending normalisation)."""
        return self._size

    @property
    def on_disk(self) -> bool:
        return self._path is not None

    def write(self, data: bytes, *, crlf: bool = False) -> None:
        """Spool DATA; CRLF: its line endings are CRLF already (SMTP DATA, see `CrlfStream.clean`)."""
        self._append(self._crlf.clean(data) if crlf else self._crlf.feed(data))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        self._buf += data
        if self._fd is None:
            if len(self._buf) <= self.memory_max:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}.", suffix=".msg", dir=self.directory)
            self._fd, self._path = fd, Path(name)
        if len(self._buf) >= 4 * WRITE_BUFFER:
            self._flush()  # a caller that does not `flush` (in a thread) still stays bounded

    @property
    def flush_due(self) -> bool:
        """Enough is buffered for a write: the caller should run `flush`, off the event loop
        (a disk under writeback pressure blocks a writing thread for a while)."""
        return self._fd is not None and len(self._buf) >= WRITE_BUFFER

    def flush(self) -> None:
        """Write what is buffered to the spool file (no-op while the message is in memory)."""
        if self._fd is not None and self._buf:
            self._flush()

    def _flush(self) -> None:
        assert self._fd is not None
        view = memoryview(self._buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        view.release()
        self._buf.clear()

    def finish(self) -> SpooledMessage:
        """The complete message; raises `HeaderTooLarge` when it is on disk and its header
        section does not end within `HEAD_MAX` octets. The spool keeps the file until `discard`."""
        self._append(self._crlf.end())
        if self._fd is None:
            msg = SpooledMessage.from_bytes(bytes(self._buf))
            self._buf.clear()
            return msg
        self._flush()
        first = os.pread(self._fd, HEAD_MAX, 0)
        os.close(self._fd)
        self._fd = None
        assert self._path is not None
        off = body_offset(first)
        if off < 0:
            if self._size > len(first):
                raise HeaderTooLarge(f"header section longer than {HEAD_MAX} octets")
            off = len(first)
        return SpooledMessage(first[:off], BodyFile(self._path, off, self._size - off))

    def discard(self) -> None:
        """Forget the message and remove its file (idempotent)."""
        self._buf.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._path is not None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                pass
            self._path = None
        self._size = 0


def remove_stale(directory: Path) -> int:
    """Remove spool files left by processes that no longer run (a crash mid-transfer); how many."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        pid_s, _, rest = name.partition(".")
        if not pid_s.isdigit() or not rest.endswith(".msg"):
            continue
        try:
            os.kill(int(pid_s), 0)
            continue  # its process lives (or exists under another user): not ours to remove
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(directory / name)
            removed += 1
        except FileNotFoundError:
            pass
    return removed
