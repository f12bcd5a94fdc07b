"""`mailhouse export maildir|mbox DIR [USER…]`: every account's mail as files other software reads.

Maildir (Dovecot-compatible Maildir++, so a Dovecot with ``mail_location = maildir:DIR/%d/%n``
serves the result with the same folders, flags, keywords, INTERNALDATEs and UIDs):

    DIR/<domain>/<local>/                  INBOX (cur/ new/ tmp/, dovecot-uidlist, dovecot-keywords)
    DIR/<domain>/<local>/.Archive.2025/    folder "Archive/2025" (+ an empty ``maildirfolder`` file)

- Folder names on disk are modified UTF-7 (RFC 3501 §5.1.3), Dovecot's default; a name with
  a "." (the Maildir++ separator) cannot be represented and is reported, not exported.
- Each message is ``cur/<internaldate>.M<uid>P0.mailhouse,S=<size>:2,<letters>`` (the octets as
  stored, mtime = INTERNALDATE, which Dovecot reports as INTERNALDATE). Info letters
  (https://cr.yp.to/proto/maildir.html, ASCII order): D \\Draft, F \\Flagged, R \\Answered,
  S \\Seen, T \\Deleted; keywords are the letters a…z indexed by the folder's
  ``dovecot-keywords`` ("<n> <keyword>" lines); at most 26 keywords per folder (Dovecot's limit),
  further ones are reported and dropped.
- ``dovecot-uidlist`` (version 3): ``3 V<uidvalidity> N<uidnext>`` then ``<uid> :<base name>``
  per message, so UIDVALIDITY and every UID are kept (clients need not re-download).

mbox (mboxrd): ``DIR/<address>/<folder>.mbox`` (``Archive/2025`` → ``Archive/2025.mbox``), per
message a ``From <sender> <asctime INTERNALDATE, UTC>`` line (sender: the Return-Path, else
MAILER-DAEMON), the header section with ``Status:`` (R = \\Seen, O = old), ``X-Status:``
(A \\Answered, F \\Flagged, T \\Draft, D \\Deleted) and ``X-Keywords:`` added at its end, the
body with every line matching ``^>*From `` quoted by one more ">" (mboxrd), then an empty line.
Readers drop that empty line, so the octets come back as stored; a message that does not end
with a line break (the store's CRLF invariant, `store/crlf.py`, says none does) gets one, or the
empty line would not be one: mbox cannot say otherwise (and the import adds the CRLF anyway).

Streaming: messages are read in slices of `CHUNK` octets (`BlobStore.read_range`), so memory
does not grow with message size; only one folder's message records are in memory at once.
"""

from __future__ import annotations

import enum
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mailhouse.accounts.mailbox_names import DELIM
from mailhouse.proto.imap import mutf7
from mailhouse.store.api import Account, Mailbox, MessageRecord, Store

CHUNK = 1024 * 1024  # octets read per step: memory stays flat in message size
MAX_KEYWORDS = 26  # Dovecot's Maildir keyword letters a…z
HEADER_PEEK = 64 * 1024  # octets searched for the end of the header section / Return-Path

# https://cr.yp.to/proto/maildir.html: info letters, in ASCII order when written
MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
X_STATUS = {"\\Answered": "A", "\\Flagged": "F", "\\Draft": "T", "\\Deleted": "D"}  # mutt/Thunderbird
_FROM = re.compile(rb"^>*From ")


class Format(enum.Enum):
    MAILDIR = "maildir"
    MBOX = "mbox"


@dataclass
class ExportResult:
    accounts: int = 0
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)  # per folder or message, the rest still exported


async def _chunks(store: Store, m: MessageRecord) -> AsyncIterator[bytes]:
    off = 0
    while off < m.size:
        data = await store.blobs.read_range(m.blob_key, off, min(CHUNK, m.size - off))
        if not data:
            raise OSError(f"blob {m.blob_key} ended after {off} of {m.size} octets")
        off += len(data)
        yield data


def maildir_folder(name: str) -> str:
    """The Maildir++ directory name of folder NAME ("" for INBOX)."""
    if name.upper() == "INBOX":
        return ""
    parts = [mutf7.encode(p).decode("ascii") for p in name.split(DELIM)]
    if any("." in p for p in parts):
        raise ValueError(f"folder {name!r}: a '.' in a folder name has no Maildir++ form")
    return "." + ".".join(parts)


def maildir_info(flags: frozenset[str], keywords: dict[str, int]) -> str:
    letters = sorted(MAILDIR_FLAGS[f] for f in flags if f in MAILDIR_FLAGS)
    letters += sorted(chr(ord("a") + keywords[k]) for k in flags if k in keywords)
    return ":2," + "".join(letters)


def _keywords(msgs: Sequence[MessageRecord]) -> list[str]:
    return sorted({f for m in msgs for f in m.flags if not f.startswith("\\")})


async def _export_maildir_folder(store: Store, root: Path, mb: Mailbox, res: ExportResult) -> None:
    d = root / maildir_folder(mb.name)
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    if d != root:
        (d / "maildirfolder").touch()
    msgs = await store.list_messages(mb.id)
    kws = _keywords(msgs)
    if len(kws) > MAX_KEYWORDS:
        res.problems.append(f"{mb.name}: {len(kws) - MAX_KEYWORDS} keywords beyond Dovecot's 26 dropped")
    index = {k: i for i, k in enumerate(kws[:MAX_KEYWORDS])}
    (d / "dovecot-keywords").write_text("".join(f"{i} {k}\n" for k, i in index.items()))
    lines = [f"3 V{mb.uidvalidity} N{mb.uidnext}\n"]
    for m in msgs:
        base = f"{int(m.internaldate)}.M{m.uid}P0.mailhouse,S={m.size}"
        path = d / "cur" / (base + maildir_info(m.flags, index))
        tmp = d / "tmp" / base
        try:
            with open(tmp, "wb") as f:
                async for piece in _chunks(store, m):
                    f.write(piece)
            os.utime(tmp, (m.internaldate, m.internaldate))  # Dovecot: mtime = INTERNALDATE
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            res.problems.append(f"{mb.name} UID {m.uid}: {e}")
            continue
        lines.append(f"{m.uid} :{base}\n")
        res.messages += 1
        res.bytes += m.size
    (d / "dovecot-uidlist").write_text("".join(lines))


def mbox_from_line(sender: str, when: float) -> bytes:
    t = time.gmtime(when)
    return f"From {sender or 'MAILER-DAEMON'} {time.strftime('%a %b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S %Y', t)}\n".encode()


def mbox_status(flags: frozenset[str]) -> tuple[bytes, bytes, bytes]:
    status = ("R" if "\\Seen" in flags else "") + "O"
    xstatus = "".join(v for k, v in X_STATUS.items() if k in flags)
    kws = " ".join(sorted(f for f in flags if not f.startswith("\\")))
    return status.encode(), xstatus.encode(), kws.encode()


def _sender(head: bytes) -> str:
    m = re.search(rb"(?im)^Return-Path:[ \t]*<?([^>\r\n\s]*)>?", head)
    return m.group(1).decode("ascii", "replace") if m and m.group(1) else "MAILER-DAEMON"


async def _write_mbox_message(store: Store, out: BinaryIO, m: MessageRecord) -> None:
    """One mboxrd entry: From line, headers + Status/X-Status/X-Keywords, quoted body, blank line."""
    first = True
    carry = b""
    eol = b"\n"
    async for piece in _chunks(store, m):
        buf = carry + piece
        if first:  # the status fields go at the end of the header section
            end = buf.find(b"\r\n\r\n")
            lf = buf.find(b"\n\n")
            if end < 0 and lf < 0 and len(buf) < min(m.size, HEADER_PEEK):
                carry = buf
                continue
            if end >= 0 and (lf < 0 or end < lf):
                eol, cut = b"\r\n", end + 2
            elif lf >= 0:
                cut = lf + 1
            else:  # no header/body separator: fields at the very start
                cut = 0
                eol = b"\r\n" if b"\r\n" in buf[:HEADER_PEEK] else b"\n"
            out.write(mbox_from_line(_sender(buf[:cut] if cut else buf[:HEADER_PEEK]), m.internaldate))
            status, xstatus, kws = mbox_status(m.flags)
            fields = b"Status: " + status + eol + (b"X-Status: " + xstatus + eol if xstatus else b"")
            fields += b"X-Keywords: " + kws + eol if kws else b""
            head, buf = buf[:cut], buf[cut:]
            out.write(_quote(head)[0] + fields)
            first = False
        done, carry = _quote(buf)
        out.write(done)
    if carry:  # a last line without a line break gets one: else the empty line below would not be
        out.write(_quote(carry + b"\n")[0])  # one, and the next entry's From_ line would not split
    out.write(b"\n")  # mboxrd: an empty line ends the entry


def _quote(buf: bytes) -> tuple[bytes, bytes]:
    """(BUF's complete lines, mboxrd-quoted; the incomplete last line, to carry to the next chunk)."""
    cut = buf.rfind(b"\n") + 1
    lines = buf[:cut].splitlines(keepends=True)
    return b"".join(b">" + ln if _FROM.match(ln) else ln for ln in lines), buf[cut:]


async def _export_mbox_folder(store: Store, root: Path, mb: Mailbox, res: ExportResult) -> None:
    path = root / (mb.name + ".mbox")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for m in await store.list_messages(mb.id):
            try:
                await _write_mbox_message(store, out, m)
            except OSError as e:
                res.problems.append(f"{mb.name} UID {m.uid}: {e}")
                continue
            res.messages += 1
            res.bytes += m.size


async def export(store: Store, fmt: Format, dest: Path, users: Sequence[str] = ()) -> ExportResult:
    """Export USERS' mail (all accounts when empty) from STORE into DEST as FMT."""
    res = ExportResult()
    wanted = {u.lower() for u in users}
    accounts: list[Account] = [a for a in await store.list_accounts() if not wanted or a.address in wanted]
    missing = wanted - {a.address for a in accounts}
    if missing:
        raise ValueError(f"no such account: {', '.join(sorted(missing))}")
    for acc in accounts:
        local, _, domain = acc.address.rpartition("@")
        root = dest / domain / local if fmt is Format.MAILDIR else dest / acc.address
        root.mkdir(parents=True, exist_ok=True)
        res.accounts += 1
        for mb in sorted(await store.list_mailboxes(acc.id), key=lambda b: b.name):
            try:
                if fmt is Format.MAILDIR:
                    await _export_maildir_folder(store, root, mb, res)
                else:
                    await _export_mbox_folder(store, root, mb, res)
            except ValueError as e:
                res.problems.append(f"{acc.address}: {e}")
                continue
            res.folders += 1
    return res


__all__ = [
    "ExportResult",
    "Format",
    "export",
    "maildir_folder",
    "maildir_info",
    "mbox_from_line",
    "mbox_status",
]
