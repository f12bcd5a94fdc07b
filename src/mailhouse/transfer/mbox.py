"""An mbox file as an import source (one folder): mboxrd and mboxo, as mutt, Thunderbird and
Python's `mailbox` write them.

Formats: RFC 4155 (application/mbox: each message begins with a ``From `` line; the
``From `` separator follows an empty line or starts the file). mboxrd quotes every body line
matching ``>*From `` with one more ``>``; mboxo quotes only ``From `` — reading, one ``>`` is
removed from ``>+From `` lines (exact for mboxrd; for mboxo a body line that really began with
``>From `` loses its ``>``, the format's known ambiguity). Flags as mutt, Dovecot and UW-IMAP
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
META_HEADERS = {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase"}


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
        """The listing pass: (offset, length, SHA-256) of each message, streamed."""
        seen: dict[str, int] = {}
        out: list[SourceMessage] = []
        with open(self.path, "rb") as f:
            start = -1  # offset of the current message's first octet after its From_ line
            from_line = b""
            h = hashlib.sha256()
            prev_blank = True
            pos = 0
            pending_blank = b""  # an empty line that may be the separator before the next From_

            def finish(end: int, complete: bool, has_sep: bool) -> None:
                n = len(out) + 1
                digest = h.hexdigest()
                rank = seen.get(digest, 0)
                seen[digest] = rank + 1
                where = f"{self.path} message {n} (offset {start})"
                err = None if complete else "truncated: the file ends inside this message"
                if complete and not has_sep and end > start:
                    err = "truncated: no end of the header section"
                out.append(
                    SourceMessage(
                        f"mbox:{digest[:40]}#{rank}",
                        where,
                        end - start,
                        frozenset(),
                        from_line_date(from_line),
                        0,
                        err,
                        (start, end - start),
                    )
                )

            has_sep = False
            last = b""
            for line in f:
                if line.startswith(b"From ") and prev_blank and FROM_LINE.match(line.rstrip(b"\r\n")):
                    if start >= 0:
                        finish(pos - len(pending_blank), True, has_sep)
                    start, from_line, h, has_sep = pos + len(line), line, hashlib.sha256(), False
                    pending_blank = b""
                elif start >= 0:
                    h.update(pending_blank)
                    pending_blank = b""
                    if line in (b"\n", b"\r\n"):
                        pending_blank = line  # held back: it belongs to the next separator, or the body
                        has_sep = True
                    else:
                        h.update(line)
                prev_blank = line in (b"\n", b"\r\n")
                pos += len(line)
                last = line
            if start >= 0:
                # the final empty line ends the last message (mboxrd writers add it)
                finish(pos - len(pending_blank), last.endswith(b"\n"), has_sep)
        return iter(out)

    def read(self, msg: SourceMessage, max_size: int) -> tuple[bytes, SourceMessage]:
        assert isinstance(msg.ref, tuple)
        offset, length = msg.ref
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(min(length, max_size + 1))
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
