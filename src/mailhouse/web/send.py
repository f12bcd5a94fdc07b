"""Sending from the webmail through the same path as port 587 (RFC 6409).

`submit()` asks the node's envelope service (`delivery.accept.EnvelopeService`) what an SMTP
session asks command by command — the envelope sender must be owned by the user
(`may_send_as`), each recipient goes through `check_recipient` (hosted, alias, quota,
remote) — then hands the message to its `accept`, the same path port 587 uses (checks,
repairs, DKIM, local delivery, queue); the queue id comes from `queue.ids`. Only then does a copy (with Bcc, unsigned) land in the user's
Sent folder, flagged \\Seen.

`build_message()` makes the RFC 5322 message from the compose form with the stdlib
`email` package (policy SMTP: CRLF, RFC 2047/2231 encoding of non-ASCII).
`build_message_file()` does the same for attachments kept in files (`web.uploads`, issue 12
item 2): the `email` package builds the message around a 57-octet placeholder per attachment
(one base64 line), and the placeholders are replaced by the base64 of the files, streamed
into a spool file — the same octets as `build_message` with the data inline (line endings
normalised to CRLF, RFC 5322 §2.1, as the store would), never more than one chunk of an
attachment in memory.

`spooled_file()` turns that file into a `store.spool.SpooledMessage` (the header section in
memory, the body a byte range of the file, as `Spool.finish` makes one for SMTP DATA), and
`submit()` / `store_copy()` hand it on as it is: the MSA rewrites and DKIM-signs the header
section only (the body hashed in pieces off the loop), local delivery, the queue and the
Sent/Drafts copy make their blobs from the file with `put_file` — nothing O(message size) in
memory (issue 12 item 2). The file must live until they return (the caller's `RequestUploads`).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import mimetypes
import secrets
import time
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import TYPE_CHECKING

from mailhouse.delivery.policy import NOT_OWNER
from mailhouse.log import safe
from mailhouse.proto.smtp import Reply
from mailhouse.proto.smtp_address import parse_path
from mailhouse.queue.ids import new_queue_id
from mailhouse.store.api import Account, NewMessage
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import HEAD_MAX, SPOOL_MEMORY_MAX, BodyFile, SpooledMessage, body_offset

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

SENT = "Sent"
DRAFTS = "Drafts"


class SendError(Exception):
    pass


class SendLimited(SendError):
    """A per-account sending limit refused the send (HTTP 429, the draft is kept)."""


@dataclass(slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    path: Path | None = None  # the octets are in this file (an upload), not in ``data``


#: Octets of an attachment file encoded at a time: a multiple of 57 (one 76-character base64
#: line, RFC 2045 §6.8), so the streamed lines are exactly those of the one-shot encoding.
B64_CHUNK = 57 * 16 * 1024


@dataclass(slots=True)
class Draft:
    sender: str
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    name: str = ""  # the sender's display name (settings): From: Name <sender>
    reply_to: str = ""  # addresses for Reply-To (settings)


def parse_recipients(value: str) -> list[str]:
    """Addresses of a To/Cc/Bcc field as typed (commas or semicolons); raises SendError."""
    out = []
    for name, addr in email.utils.getaddresses([value.replace(";", ",")]):
        addr = addr.strip()
        if not addr and not name:
            continue
        if not addr or "@" not in addr or parse_path(addr.encode("utf-8"), smtputf8=True) is None:
            raise SendError(f"not an e-mail address: {safe(addr or name, 80)}")
        out.append(addr)
    return out


def _field(value: str) -> str:
    """A header value typed by the user: one line."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def build_message(d: Draft, hostname: str, *, message_id: str | None = None) -> bytes:
    if any(c in d.sender for c in "\r\n\0"):
        raise SendError("not an e-mail address")  # one header line (RFC 5322 §2.2), not a 500
    msg = EmailMessage(policy=SMTP)
    name = _field(d.name)
    # RFC 5322 §3.4 name-addr; the policy quotes or RFC 2047-encodes the display name as needed
    msg["From"] = email.utils.formataddr((name, d.sender)) if name else d.sender
    for name, value in (("To", d.to), ("Cc", d.cc), ("Bcc", d.bcc)):
        addrs = parse_recipients(value)
        if addrs:
            msg[name] = ", ".join(addrs)
    reply_to = parse_recipients(d.reply_to)
    if reply_to:
        msg["Reply-To"] = ", ".join(reply_to)  # RFC 5322 §3.6.2
    msg["Subject"] = _field(d.subject)
    msg["Date"] = email.utils.formatdate(localtime=False)  # RFC 5322 §3.6.1
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain=hostname)
    if d.in_reply_to:
        msg["In-Reply-To"] = _field(d.in_reply_to)  # RFC 5322 §3.6.4
    if d.references:
        msg["References"] = _field(d.references)
    msg["User-Agent"] = "Mailhouse webmail"
    msg.set_content(d.body.replace("\r\n", "\n"), subtype="plain", charset="utf-8")
    for a in d.attachments:
        ctype = a.content_type if "/" in a.content_type else ""
        if not ctype or ctype == "application/octet-stream":
            ctype = mimetypes.guess_type(a.filename)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        if maintype == "message" or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
    return msg.as_bytes()


def build_message_file(d: Draft, hostname: str, out: Path, *, message_id: str | None = None) -> int:
    """``build_message(d)`` written to OUT, attachments with a ``path`` streamed from their
    files; returns the message's size. Blocking: run it in a worker thread."""
    marks: list[tuple[bytes, Path]] = []
    parts = []
    for a in d.attachments:
        if a.path is None:
            parts.append(a)
            continue
        token = secrets.token_bytes(57)  # RFC 2045 §6.8: exactly one 76-character line
        marks.append((base64.b64encode(token) + b"\r\n", a.path))
        parts.append(replace(a, data=token, path=None))
    # RFC 5322 §2.1: CRLF only, as the store keeps it (the base64 lines below are CRLF already),
    # so the file may become a blob as it is (store.spool invariant)
    skeleton = to_crlf(build_message(replace(d, attachments=parts), hostname, message_id=message_id))
    size, pos = 0, 0
    view = memoryview(skeleton)
    with open(out, "wb") as f:
        for line, path in marks:
            i = skeleton.index(line, pos)  # random: occurs once, where the data goes
            size += f.write(view[pos:i])
            pos = i + len(line)
            with open(path, "rb") as src:
                while chunk := src.read(B64_CHUNK):
                    size += f.write(base64.encodebytes(chunk).replace(b"\n", b"\r\n"))
        size += f.write(view[pos:])
    return size


def spooled_file(path: Path, size: int, memory_max: int = SPOOL_MEMORY_MAX) -> SpooledMessage:
    """The message ``build_message_file`` wrote to PATH (SIZE octets) as a `SpooledMessage`:
    read whole when it is small (the in-memory fast path, as `Spool`), else its header section
    in memory and its body as a byte range of PATH. Blocking: run it in a worker thread."""
    if size <= memory_max:
        return SpooledMessage.from_bytes(path.read_bytes())
    with open(path, "rb") as f:
        first = f.read(HEAD_MAX)
    off = body_offset(first)  # RFC 5322 §2.1: the header section ends at the first empty line
    if off < 0:
        if size > len(first):
            raise SendError("header section too long")  # cannot happen: our fields are bounded
        off = len(first)
    return SpooledMessage(first[:off], BodyFile(path, off, size - off))


@dataclass(slots=True)
class Sent:
    queue_id: str
    local: int
    remote: int


async def submit(
    svc: Services, user: Account, sender: str, recipients: list[str], message: bytes | SpooledMessage, ip: str
) -> Sent:
    """Submit MESSAGE for USER exactly as port 587 would; raises SendError with the refusal.

    A spooled MESSAGE stays spooled all the way (``EnvelopeService.accept`` takes it as SMTP
    DATA hands it over); the file behind it must exist until this returns."""
    size = message.size if isinstance(message, SpooledMessage) else len(message)
    envelope = svc.envelope
    if not await envelope.may_send_as(user, sender):
        raise SendError(_text(NOT_OWNER))
    if not recipients:
        raise SendError("no recipients")
    unique = len(dict.fromkeys(r.lower() for r in recipients))
    # per-account limits against compromised accounts (delivery/sendlimits.py), as on port 587
    if not await envelope.recipient_room(user, ip, unique):
        raise SendLimited("Daily recipient limit reached; your message was kept here, try again later.")
    if await envelope.start_send(user, ip) is not None:
        raise SendLimited("Sending rate limit exceeded; your message was kept here, try again in a minute.")
    if len(recipients) > svc.cfg.max_recipients:
        raise SendError(f"too many recipients (at most {svc.cfg.max_recipients})")
    if size > svc.cfg.max_message_size:
        raise SendError("message too big")  # RFC 1870
    local: dict[int, Account] = {}
    remote: list[tuple[str, dict[str, str | None]]] = []
    for rcpt in dict.fromkeys(r.lower() for r in recipients):
        addr = parse_path(rcpt.encode("utf-8"), smtputf8=True)
        if addr is None:
            raise SendError(f"not an e-mail address: {safe(rcpt, 80)}")
        verdict = await envelope.check_recipient(addr, user, size)
        if verdict.reply.code != 250:
            raise SendError(f"{rcpt}: {_text(verdict.reply)}")
        for acc in verdict.local:
            local[acc.id] = acc
        remote += [(a, {}) for a in verdict.remote]
    await envelope.add_recipients(user, ip, unique)
    queue_id = new_queue_id()
    received = _received(svc, ip, queue_id)  # on top, the body untouched (RFC 5321 §4.4)
    message = message.prepend(received) if isinstance(message, SpooledMessage) else received + message
    reply = await envelope.accept(
        message, sender, list(local.values()), remote, queue_id=queue_id, submitted_by=user
    )
    if reply.code != 250:
        raise SendError(_text(reply))
    log.info(
        "[%s] webmail submission by %s: %d local, %d remote", queue_id, user.address, len(local), len(remote)
    )
    return Sent(queue_id, len(local), len(remote))


def _text(r: Reply) -> str:
    t = r.text if isinstance(r.text, str) else " ".join(r.text)
    return f"{r.code} {r.enhanced or ''} {t}".replace("  ", " ")


def _received(svc: Services, ip: str, queue_id: str) -> bytes:
    """RFC 5321 §4.4 trace field for a message submitted over the web."""
    return (
        f"Received: from [{ip}]\r\n\tby {svc.cfg.hostname} (Mailhouse webmail) id {queue_id};\r\n"
        f"\t{email.utils.formatdate(localtime=False)}\r\n"
    ).encode()


async def store_copy(
    svc: Services, user: Account, folder: str, message: bytes | SpooledMessage, flags: frozenset[str]
) -> int:
    """Append MESSAGE to the user's FOLDER (created when missing); returns the new UID.

    A spooled MESSAGE on disk becomes its blob with the blob store's ``put_file``."""
    mb = await svc.store.get_mailbox(user.id, folder)
    if mb is None:
        mb = await svc.store.create_mailbox(user.id, folder, "\\" + folder)
    if isinstance(message, bytes):
        message = to_crlf(message)
    size = message.size if isinstance(message, SpooledMessage) else len(message)
    recs = await svc.store.deliver(message, [NewMessage(mb.id, "", size, flags, time.time())])
    return recs[0].uid
