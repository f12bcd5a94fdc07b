"""Message submission checks and repairs, the MSA's part after DATA (RFC 6409 §§5–8).

`Submission.prepare` is called once per submitted message by the accept path
(``delivery.accept.EnvelopeService``) with the message as received (our ``Received:`` trace field
on top), the authenticated account and the envelope sender. Returns the repaired, DKIM-signed
message, or the ``Reply`` refusing it. One `Submission` per node, built in `services.build` with
the node's resolver, host name and DKIM signer.

In order:
1. header syntax (RFC 5322 §2.1.1, §2.2, §2.2.3) — refuse ``554 5.6.0`` naming the line;
2. exactly one ``From:`` holding a valid mailbox-list (RFC 5322 §3.6, §3.6.2; RFC 6409 §6.2),
   a ``Sender:`` when it lists several mailboxes — refuse ``554 5.6.0`` saying what is wrong;
3. every ``From:`` (and ``Sender:``) address owned by the user (RFC 6409 §6.1) — ``553 5.7.1``,
   the same answer MAIL FROM gets for an address the user does not own;
4. ``Bcc:`` removed (RFC 5322 §3.6.3; RFC 6409 §8 — blind recipients must not be disclosed);
5. ``Date:`` and ``Message-ID: <random@hostname>`` added when missing (RFC 6409 §8.2, §8.3),
   placed just below the trace block so ``Received:`` stays on top (RFC 5321 §4.4);
6. DKIM signatures with every key of the From domain (RFC 6409 §8.5; RFC 6376, RFC 8463),
   inserted at the very top, above our ``Received:`` (RFC 6376 §5.6 — what OpenDKIM behind
   Postfix does too; Received is not signed, so later trace fields never break it).

Reply codes: RFC 6409 §5.1 names 554 for a submission refused at end of data unless a more
precise code applies; RFC 3463 X.6.0 "other or undefined media error" is the enhanced code for
a malformed message (Postfix's header checks, Exim's header syntax ACL use 5.6.0 / 5.7.1 too),
X.7.1 "delivery not authorized" for a From the user may not use. A signing failure is ours,
so it is temporary: ``451 4.3.0`` (as OpenDKIM's ``On-SignatureError tempfail``).

A spooled message (``store.spool.SpooledMessage``, a big one on disk) is checked and rewritten in
its header section only; its body is read once, in pieces, for the DKIM body hash.

Invariants: wire bytes in, wire bytes out; fields we do not touch stay byte-identical, which
keeps any signature a client already made valid; reply texts are ASCII with untrusted input
escaped.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import secrets
import time
from collections.abc import Callable
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import HeaderRegistry

from mailhouse.accounts.resolve import Resolver
from mailhouse.log import safe
from mailhouse.mailauth.dkim import DkimSigner
from mailhouse.message.headers import check_header_syntax, remove_header, split_header_block
from mailhouse.proto.smtp import Reply
from mailhouse.store.api import Account
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

__all__ = ["Submission", "check_from", "add_missing_fields", "SubmissionRefused"]

TRACE_FIELDS = frozenset({b"received", b"return-path"})  # RFC 5321 §4.4 / RFC 5322 §3.6.7
MAX_REPLY_DETAIL = 160  # keep replies short: one line, never longer than RFC 5321 §4.5.3.1.5 allows

_registry = HeaderRegistry()


class SubmissionRefused(Exception):
    """A message the MSA refuses; carries the SMTP reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _q(value: str | bytes) -> str:
    """Untrusted text made safe for a one-line ASCII reply."""
    return safe(value, MAX_REPLY_DETAIL).encode("ascii", "backslashreplace").decode("ascii")


def _malformed(what: str) -> SubmissionRefused:
    return SubmissionRefused(Reply(554, "5.6.0", f"Message refused: {what}"))  # RFC 6409 §5.1, RFC 3463 X.6.0


# The common shapes of an originator field, matched in one step: ``addr@dom``, ``<addr@dom>``
# and ``Name <addr@dom>`` / ``"Name" <addr@dom>`` with a dot-atom local part and domain
# (RFC 5322 §3.2.3, §3.4, §3.4.1), on one line, ASCII only. The display name is kept to atext
# without "=", "?" or "." (no encoded words, no obs-phrase) so nothing matched here can carry a
# defect the full parser would report; every other value goes through the email package's
# header registry below. A test holds both paths to the same answers.
_ATOM = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = _ATOM + rb"(?:\." + _ATOM + rb")*"
_ADDR = rb"(" + _DOT_ATOM + rb")@(" + _DOT_ATOM + rb")"
_SIMPLE_MAILBOX = re.compile(
    rb"[ \t]*(?:"
    + _ADDR
    + rb"|(?:[A-Za-z0-9!#$%&'*+/^_`{|}~ \t-]*|\"[ !#-\[\]-~]*\")[ \t]*<"
    + _ADDR
    + rb">)[ \t]*"
)
_SIMPLE_NAME_OK = re.compile(rb"[^=?]*")


def _mailboxes(field: str, raw: bytes) -> list[str]:
    """Parse a mailbox-list (From, RFC 5322 §3.6.2) or mailbox (Sender); addresses lower-cased."""
    m = _SIMPLE_MAILBOX.fullmatch(raw)
    if m is not None and (m.group(1) is not None or _SIMPLE_NAME_OK.fullmatch(raw, 0, m.start(3))):
        local, domain = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        return [(local + b"@" + domain).decode("ascii").lower()]
    return _mailboxes_parsed(field, raw)


def _mailboxes_parsed(field: str, raw: bytes) -> list[str]:
    """:func:`_mailboxes` through the email package's header registry (any syntax)."""
    try:
        text = raw.decode("utf-8")  # RFC 6532 §3.2: 8-bit header text is UTF-8
    except UnicodeDecodeError:
        raise _malformed(f"{field}: is neither ASCII nor UTF-8 (RFC 6532 §3.2)") from None
    try:
        parsed = _registry(field, text)
    except Exception:  # the stdlib parser raises on a few pathological inputs
        raise _malformed(f"{field}: cannot be parsed: {_q(text)}") from None
    defects = [d for d in parsed.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise _malformed(
            f"{field}: {_q(text)} is not a valid address ({_q(str(defects[0]))}) (RFC 5322 §3.4)"
        )
    groups = getattr(parsed, "groups", ())
    if any(g.display_name is not None for g in groups):
        raise _malformed(f"{field}: must list mailboxes, not a group (RFC 5322 §3.6.2)")
    addrs = list(getattr(parsed, "addresses", ()))
    if not addrs:
        raise _malformed(f"{field}: has no address (RFC 5322 §3.6.2)")
    out = []
    for a in addrs:
        if not a.username or not a.domain:
            raise _malformed(f"{field}: {_q(text)} lacks a local part or domain (RFC 5322 §3.4.1)")
        out.append(f"{a.username}@{a.domain}".lower())
    return out


def check_from(message: bytes) -> tuple[list[str], str | None]:
    """Validate the originator fields; return (From addresses, Sender address or None).

    Raises :class:`SubmissionRefused` (554 5.6.0) saying what is wrong.
    """
    fields, _, _ = split_header_block(message)
    froms = [v for n, v in fields if n.lower() == b"from"]
    senders = [v for n, v in fields if n.lower() == b"sender"]
    if not froms:
        raise _malformed("no From: header field (RFC 5322 §3.6: From is required)")
    if len(froms) > 1:
        raise _malformed("more than one From: header field (RFC 5322 §3.6: at most one)")
    if len(senders) > 1:
        raise _malformed("more than one Sender: header field (RFC 5322 §3.6: at most one)")
    from_addrs = _mailboxes("From", froms[0])
    sender: str | None = None
    if senders:
        s = _mailboxes("Sender", senders[0])
        if len(s) != 1:
            raise _malformed("Sender: must hold exactly one mailbox (RFC 5322 §3.6.2)")
        sender = s[0]
    if len(from_addrs) > 1 and sender is None:
        raise _malformed("From: lists several mailboxes but there is no Sender: (RFC 5322 §3.6.2)")
    return from_addrs, sender


def _eol(raw: bytes) -> bytes:
    nl = raw.find(b"\n")
    return b"\n" if nl >= 0 and (nl == 0 or raw[nl - 1] != 0x0D) else b"\r\n"


def add_missing_fields(message: bytes, hostname: str, *, now: float | None = None) -> bytes:
    """Add ``Date`` and ``Message-ID`` when missing (RFC 6409 §8.2, §8.3), below the trace block.

    Existing fields are never changed; the new ones go right after the leading
    Received/Return-Path fields (RFC 5322 §3.6.7: trace fields stay a block at the top).
    """
    fields, spans, _ = split_header_block(message)
    names = {n.lower() for n, _ in fields}
    eol = _eol(message)
    new: list[bytes] = []
    if b"date" not in names:
        # RFC 5322 §3.3 date-time; RFC 6409 §8.2: the MSA's own clock
        new.append(
            b"Date: "
            + email.utils.formatdate(now if now is not None else time.time(), localtime=True).encode()
        )
    if b"message-id" not in names:
        # RFC 5322 §3.6.4: "<" id-left "@" id-right ">", id-left unique; 128 random bits suffice
        left = f"{int(time.time() * 1000):x}.{secrets.token_hex(16)}"
        new.append(f"Message-ID: <{left}@{hostname}>".encode())
    if not new:
        return message
    pos = 0
    for (name, _), (_, end) in zip(fields, spans, strict=True):
        if name.lower() not in TRACE_FIELDS:
            break
        pos = end
    block = b"".join(line + eol for line in new)
    return message[:pos] + block + message[pos:]


class Submission:
    """The MSA's checks, repairs and signing; CLOCK (seconds since the epoch) dates what it adds."""

    def __init__(
        self, resolver: Resolver, hostname: str, signer: DkimSigner, clock: Callable[[], float] = time.time
    ) -> None:
        self.resolver = resolver
        self.hostname = hostname
        self.signer = signer
        self.clock = clock

    async def prepare(
        self, message: bytes | SpooledMessage, user: Account | None, sender: str
    ) -> bytes | SpooledMessage | Reply:
        """Check, repair and sign a submitted MESSAGE for USER; the message to queue (bytes in,
        bytes out; a spooled message stays spooled: only its header section is rewritten), or
        the refusal."""
        if user is None:
            return Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6; the session checks first
        spooled = message if isinstance(message, SpooledMessage) else None
        head = spooled.head if spooled is not None else message
        assert isinstance(head, bytes)
        problems = check_header_syntax(head)
        if problems:
            log.info("submission by %s refused: %s", user.address, safe(problems[0]))
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return Reply(554, "5.6.0", f"Message refused: header syntax error: {_q(problems[0])}{more}")
        try:
            from_addrs, sender_field = check_from(head)
        except SubmissionRefused as e:
            log.info("submission by %s refused: %s", user.address, e.reply.text)
            return e.reply
        owned = await self.resolver.owned_addresses(user)
        for addr in [*from_addrs, *([sender_field] if sender_field else [])]:
            if addr not in owned:  # RFC 6409 §6.1: enforce submission rights
                log.info("submission by %s refused: header address %s not owned", user.address, safe(addr))
                return Reply(
                    553, "5.7.1", f"Sender address rejected: <{_q(addr)}> in the header is not owned by user"
                )
        head = remove_header(head, b"Bcc")  # RFC 5322 §3.6.3: Bcc recipients stay hidden
        head = add_missing_fields(head, self.hostname, now=self.clock())
        domain = from_addrs[0].rpartition("@")[2]
        keys = await self.resolver.dkim_keys(domain)
        if not keys:
            log.warning("no DKIM keys for %s; message from %s leaves unsigned", domain, user.address)
            return spooled.with_head(head) if spooled is not None else head
        try:
            if spooled is None:
                # Inline: both signatures cost ~0.7 ms of CPU with the keys loaded in OpenSSL, less
                # than the hand-off to a thread and back (and no more CPU is to be had there)
                return self.signer.sign(head, domain, keys)
            spooled = spooled.with_head(head)
            if spooled.in_memory:
                return spooled.prepend(self.signer.sign_spooled(spooled, domain, keys))
            # a body on disk is hashed piece by piece, off the event loop (RFC 6376 §3.7)
            sigs = await asyncio.to_thread(self.signer.sign_spooled, spooled, domain, keys)
            return spooled.prepend(sigs)
        except ValueError:
            log.exception("DKIM signing for %s failed", domain)
            return Reply(451, "4.3.0", "Error: cannot sign the message now, try again later")
