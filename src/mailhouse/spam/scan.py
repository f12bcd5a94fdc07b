"""The content scan of one message, bounded in octets and parts, run once in a worker thread.

The content rules (`spam.content`) and the body-URL domain lists (`spam.dnslists`) read its
result instead of the message: the message may be spooled to disk (`store.spool`), so only the
header section and the first `BODY_SCAN_MAX` octets of the body are read, and at most
`MAX_PARTS` MIME parts are looked at. Parsing is the standard library's `email` package over
that prefix (a cut multipart simply ends early); nothing here touches the network.

Invariants: `scan` reads at most ``len(head) + BODY_SCAN_MAX`` octets and never raises for a
malformed message (it scans what it can); URLs are reduced to lower-case host names.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import re
from dataclasses import dataclass
from email.message import Message

from mailhouse.store.spool import SpooledMessage

__all__ = ["BODY_SCAN_MAX", "GTUBE", "MAX_PARTS", "MAX_URLS", "Scan", "scan"]

#: Octets of the body read: SpamAssassin's default body_part_scan_size is 50 000 per part;
#: a bounded prefix keeps the cost per message flat whatever its size.
BODY_SCAN_MAX = 256 * 1024
#: MIME parts looked at: a message with thousands of empty parts costs no more than this.
MAX_PARTS = 100
#: Distinct URL hosts kept (the domain lists look up fewer still).
MAX_URLS = 50
#: The Generic Test for Unsolicited Bulk Email (SpamAssassin; Rspamd knows it too).
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

_URL = re.compile(r"\bhttps?://([A-Za-z0-9.\-]{1,253})", re.IGNORECASE)
_ANCHOR = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>(.{0,300}?)</a\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")
_DOMAINISH = re.compile(r"^(?:https?://)?(?:www\.)?([a-z0-9\-]+(?:\.[a-z0-9\-]+)+)(?:[/:?#].*)?$", re.I)


@dataclass(frozen=True, slots=True)
class Scan:
    gtube: bool = False
    has_text: bool = False  # a text/plain part
    has_html: bool = False  # a text/html part
    url_hosts: tuple[str, ...] = ()
    # (domain the link text shows, domain the link goes to)
    link_mismatches: tuple[tuple[str, str], ...] = ()
    attachments: tuple[str, ...] = ()  # file names as declared (RFC 2183 filename / RFC 2045 name)
    truncated: bool = False  # the body was longer than BODY_SCAN_MAX


def _prefix(message: SpooledMessage) -> tuple[bytes, bool]:
    out = [message.head]
    left = BODY_SCAN_MAX
    for piece in message.body_chunks(64 * 1024):
        out.append(piece[:left])
        left -= len(out[-1])
        if left <= 0:
            break
    return b"".join(out), message.body_size > BODY_SCAN_MAX


def host_of(url: str) -> str:
    m = _DOMAINISH.match(url.strip())
    return m.group(1).lower().rstrip(".") if m else ""


def _payload_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def scan(message: SpooledMessage) -> Scan:
    """Scan MESSAGE's head and body prefix (blocking: file reads; call it in a thread)."""
    raw, truncated = _prefix(message)
    gtube = GTUBE in raw
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except Exception:  # the parser is lenient; belt and braces for a malformed message
        return Scan(gtube=gtube, truncated=truncated)
    has_text = has_html = False
    hosts: dict[str, None] = {}
    mismatches: list[tuple[str, str]] = []
    names: list[str] = []
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS:
            break
        if part.is_multipart():
            continue
        try:
            filename = part.get_filename()
        except Exception:
            filename = None
        if filename:
            names.append(str(filename))
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        text = _payload_text(part)
        if not gtube and GTUBE.decode() in text:  # GTUBE inside base64 or quoted-printable
            gtube = True
        if ctype == "text/plain":
            has_text = True
        else:
            has_html = True
            for href, label in _ANCHOR.findall(text):
                target = host_of(html.unescape(href))
                shown = host_of(html.unescape(_TAG.sub("", label)))
                if target and shown and not _same_site(shown, target):
                    mismatches.append((shown, target))
        for h in _URL.findall(html.unescape(text) if ctype == "text/html" else text):
            if len(hosts) >= MAX_URLS:
                break
            hosts.setdefault(h.lower().rstrip("."), None)
    return Scan(
        gtube=gtube,
        has_text=has_text,
        has_html=has_html,
        url_hosts=tuple(hosts),
        link_mismatches=tuple(mismatches[:10]),
        attachments=tuple(names[:MAX_PARTS]),
        truncated=truncated,
    )


def _same_site(a: str, b: str) -> bool:
    """Whether A and B share their last two labels (a cheap stand-in for the registrable domain)."""
    return a.split(".")[-2:] == b.split(".")[-2:] or a.endswith("." + b) or b.endswith("." + a)
