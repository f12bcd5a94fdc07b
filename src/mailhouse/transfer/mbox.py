"""An mbox file as an import source (one folder): mboxrd and mboxo, as mutt, Thunderbird and
Python's `mailbox` write them.

Formats: RFC 4155 (application/mbox: each message begins with a ``From `` line; the
``From `` separator follows an empty line or starts the file). mboxrd quotes every body line
matching ``>*From `` with one more ``>``; mboxo quotes only ``From `` — reading, one ``>`` is
removed from ``>+From `` lines (exact for mboxrd; for mboxo a body line that really began with
``>From `` loses its ``>``, the format's known ambiguity). mboxcl2 (mutt): a message whose
``Content-Length`` matches its body was written unquoted, so ``From `` lines inside that many
body octets do not split it and nothing is unquoted. Flags as mutt, Dovecot and UW-IMAP
write them: ``Status:`` (R = \\Seen), ``X-Status:`` (A = \\Answered, F = \\Flagged, T = \\Draft,
D = \\Deleted), ``X-Keywords:`` (keywords, comma or space separated); these headers and
``X-UID``/``X-IMAP``/``X-IMAPbase`` are metadata, not message content, and are removed (Dovecot's
mbox does the same). The internal date is the ``From `` line's date (asctime, UTC).

Invariants: the file is read twice, streamed line by line (memory does not grow with its size):
a listing pass that records each message's offset, length and SHA-256, then one read per
message. A message's identity is the SHA-256 of its octets plus its rank among identical copies
(``mbox:<hash>#<n>``), so a re-run, or the same file appended to since, skips what was
imported. A ``From `` line in a body that does not follow an empty line, or that does not end
in a year, does not split messages (Python's `mailbox.mbox` splits on any ``From `` line, so it
is used only by the tests, to write files). The last message of a file that does not end in a
newline is truncated: reported, not imported.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from mailhouse.transfer.importer import SourceError, SourceFolder, SourceMessage

FROM_LINE = re.compile(rb"^From \S*.*\d{4}\s*$")  # RFC 4155 §2: "From " sender date (asctime: year last)
QUOTED_FROM = re.compile(rb"^>(>*From )", re.M)
STATUS_FLAGS = {"R": "\\Seen"}
X_STATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
META_HEADERS = {b"content-length", b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase"}


def from_line_date(line: bytes) -> float:
    """The asctime date at the end of a ``From `` line (``Tue Dec  8 02:07:16 2026``), as UTC; 0 if none."""
    words = line.decode("ascii", "replace").split()
    for n in (5, 6):  # "Www Mmm dd hh:mm:ss yyyy", sometimes with a zone before the year
        if len(words) >= n + 2:
            text = " ".join(words[-n:])
            for fmt in ("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S %z %Y", "%a %b %d %H:%M %Y"):
                try:
                    return float(calendar.timegm(time.strptime(text, fmt)))
                except ValueError:
                    continue
    return 0.0


def split_meta(data: bytes) -> tuple[bytes, frozenset[str]]:
    """Remove the metadata headers from the header section; the flags they carried."""
    end = data.find(b"\n\n")
    head, body = (data[: end + 1], data[end + 1 :]) if end >= 0 else (data, b"")
    lines = head.splitlines(keepends=True)
    kept: list[bytes] = []
    flags: set[str] = set()
    i = 0
    while i < len(lines):
        field = lines[i]
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):  # RFC 5322 §2.2.3 folding
            field += lines[j]
            j += 1
        name, colon, value = field.partition(b":")
        lname = name.strip().lower()
        if colon and lname in META_HEADERS:
            text = value.decode("utf-8", "replace").strip()
            if lname == b"status":
                flags |= {STATUS_FLAGS[c] for c in text if c in STATUS_FLAGS}
            elif lname == b"x-status":
                flags |= {X_STATUS_FLAGS[c] for c in text if c in X_STATUS_FLAGS}
            elif lname == b"x-keywords":
                flags |= {k for k in re.split(r"[,\s]+", text) if k and not k.startswith("\\")}
        else:
            kept.append(field)
        i = j
    return b"".join(kept) + body, frozenset(flags)


class _Scan:
    """The listing pass over the lines of an mbox file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out: list[SourceMessage] = []
        self.seen: dict[str, int] = {}  # digest -> copies so far
        self.pos = 0
        self.start = -1  # first octet after the current message's From_ line
        self.from_line = b""
        self.hash = hashlib.sha256()
        self.pending = b""  # an empty line: the separator before the next From_, or body
        self.prev_blank = True
        self.header: list[bytes] | None = None  # the header lines, until the empty line
        self.body_start = -1
        self.length: int | None = None  # Content-Length (mboxcl/mboxcl2, mutt): the body's octets
        self.last = b""

    def line(self, line: bytes) -> None:
        blank = line in (b"\n", b"\r\n")
        in_counted_body = self.length is not None and self.pos < self.body_start + self.length
        if (
            line.startswith(b"From ")
            and self.prev_blank
            and not in_counted_body
            and FROM_LINE.match(line.rstrip(b"\r\n"))
        ):
            if self.start >= 0:
                self._finish(self.pos - len(self.pending), True)
            self.start, self.from_line, self.hash = self.pos + len(line), line, hashlib.sha256()
            self.pending, self.header, self.body_start, self.length = b"", [], -1, None
        elif self.start >= 0:
            self.hash.update(self.pending)
            self.pending = b""
            if self.header is not None:
                if blank:  # RFC 5322 §2.1: the empty line ends the header section
                    self.body_start = self.pos + len(line)
                    self.length = _content_length(self.header)
                    self.header = None
                else:
                    self.header.append(line)
            if blank and not in_counted_body:
                self.pending = line  # held back: the separator before the next From_, or body
            else:
                self.hash.update(line)
        self.prev_blank = blank
        self.pos += len(line)
        self.last = line

    def end(self) -> None:
        if self.start >= 0:
            self._finish(self.pos - len(self.pending), self.last.endswith(b"\n"))

    def _finish(self, end: int, complete: bool) -> None:
        digest = self.hash.hexdigest()
        rank = self.seen.get(digest, 0)
        self.seen[digest] = rank + 1
        where = f"{self.path} message {len(self.out) + 1} (offset {self.start})"
        err = None if complete else "truncated: the file ends inside this message"
        if complete and self.body_start < 0 and end > self.start:
            err = "truncated: no end of the header section"
        # mboxcl2 (mutt): a Content-Length that matches says the body was written unquoted
        counted = self.length is not None and end - self.body_start == self.length
        if complete and self.length is not None and not counted and end - self.body_start < self.length:
            err = f"truncated: Content-Length {self.length}, {end - self.body_start} octets present"
        date = from_line_date(self.from_line)
        ref = (self.start, end - self.start, not counted)
        self.out.append(
            SourceMessage(
                f"mbox:{digest[:40]}#{rank}", where, end - self.start, frozenset(), date, 0, err, ref
            )
        )


def _content_length(header: list[bytes]) -> int | None:
    for h in header:
        name, colon, value = h.partition(b":")
        if colon and name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


class MboxSource:
    """`importer.Source` over one mbox FILE: one folder, FOLDER (default INBOX)."""

    def __init__(self, path: str | os.PathLike[str], folder: str = "INBOX") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: not a file")
        self.folder = folder

    def folders(self) -> list[SourceFolder]:
        return [SourceFolder(self.folder, str(self.path))]

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        """The listing pass: (offset, length, SHA-256, quoting) of each message, streamed."""
        scan = _Scan(self.path)
        with open(self.path, "rb") as f:
            for line in f:
                scan.line(line)
        scan.end()
        return iter(scan.out)

    def read(self, msg: SourceMessage, max_size: int) -> tuple[bytes, SourceMessage]:
        assert isinstance(msg.ref, tuple)
        offset, length, quoted = msg.ref
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(min(length, max_size + 1))
        if quoted:
            data = QUOTED_FROM.sub(rb"\1", data)  # mboxrd/mboxo: one '>' off every >+From line
        data, flags = split_meta(data)
        date = msg.internaldate
        if not date:
            end = data.find(b"\n\n")
            m = re.search(rb"^Date:[ \t]*(.*)$", data[: end if end >= 0 else len(data)], re.M | re.I)
            try:
                date = (
                    email.utils.parsedate_to_datetime(m.group(1).decode("ascii", "replace")).timestamp()
                    if m
                    else 0.0
                )
            except (TypeError, ValueError):
                date = 0.0
        return data, replace(msg, flags=flags, internaldate=date)

    def close(self) -> None:
        pass
