"""IMAP ENVELOPE (RFC 9051 §7.5.2) and RFC 5322 address-list parsing on raw bytes.

Shape of :func:`envelope`: a 10-element list ``[date, subject, from, sender, reply-to, to, cc,
bcc, in-reply-to, message-id]``. Strings are ``bytes`` (unfolded raw header values; encoded
words are *not* decoded, IMAP sends them as-is) or ``None`` (NIL). Address fields are
:class:`AddressList` (a ``list`` of 4-element lists ``[name, adl, mailbox, host]``) or ``None``.

Rules implemented (RFC 9051 §7.5.2 ENVELOPE):
- sender and reply-to default to from when absent or empty;
- group syntax: ``[None, None, b"group", None]`` starts a group, ``[None, None, None, None]``
  ends it (RFC 5322 §3.4 group ``display-name ":" [mailbox-list] ";"``);
- route (obs-route, RFC 5322 §4.4) goes to ``adl`` as ``b"@a,@b"``;
- a mailbox without a domain gets host ``b"MISSING_DOMAIN"`` and an address without local-part
  gets mailbox ``b"MISSING_MAILBOX"``, as Dovecot does, so that a NIL host keeps meaning
  "group syntax"; the first occurrence of each header is used.

:func:`imap_encode` serialises these nested values to IMAP wire syntax (nil, number, string or
literal, parenthesised list); :class:`AddressList` and :class:`MultipartBody` are list types
whose members are written without separating spaces, as the grammar requires
(``env-from = "(" 1*address ")"``, ``body-type-mpart = 1*body SP media-subtype``).

:func:`address_search_text` writes an address field the way SEARCH FROM/TO/CC/BCC compare it
(RFC 9051 §6.4.4 "contains the specified string in the … field"): each address as
``name <local@domain>`` with comments dropped and quoting normalised, groups as
``name: …;``, then RFC 2047 words decoded — the form Dovecot matches, so display name, local
part, domain and the whole ``local@domain`` are all substrings of it.

Invariants: never raises on any header bytes; never decodes charsets (except
:func:`address_search_text`, whose result is text).
"""

from __future__ import annotations

import re
from typing import Any

from mailhouse.message.headers import decode_words, unfold
from mailhouse.message.parse import MessagePart

__all__ = [
    "AddressList",
    "address_search_text",
    "MultipartBody",
    "parse_addresses",
    "envelope",
    "imap_encode",
    "first_mailbox",
]


class AddressList(list[list[Any]]):
    """A list of addresses; written ``((...)(...))`` with no space between addresses."""


class MultipartBody(list):  # type: ignore[type-arg]
    """A multipart BODY: leading child bodies written back to back, then SP-separated rest."""


_SPECIALS = b'()<>@,;:\\"[]'


def _tokenize(s: bytes) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """Tokens: ("atom", b), ("qs", b), ("lit", b"[...]"), ("sp", b) for specials; plus comments."""
    toks: list[tuple[str, bytes]] = []
    comments: list[bytes] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:  # comment
            depth, j, buf = 0, i, bytearray()
            while j < n:
                cj = s[j]
                if cj == 0x5C and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                    continue
                if cj == 0x28:
                    depth += 1
                    if depth > 1:
                        buf.append(cj)
                elif cj == 0x29:
                    depth -= 1
                    if depth == 0:
                        j += 1
                        break
                    buf.append(cj)
                else:
                    buf.append(cj)
                j += 1
            comments.append(bytes(buf).strip())
            toks.append(("comment", bytes(buf).strip()))
            i = j
        elif c == 0x22:  # quoted string
            j, buf = i + 1, bytearray()
            while j < n:
                cj = s[j]
                if cj == 0x5C and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                    continue
                if cj == 0x22:
                    j += 1
                    break
                if cj not in (0x0D, 0x0A):
                    buf.append(cj)
                j += 1
            toks.append(("qs", bytes(buf)))
            i = j
        elif c == 0x5B:  # domain literal
            j = s.find(b"]", i)
            j = n if j < 0 else j + 1
            toks.append(("atom", s[i:j]))
            i = j
        elif c in _SPECIALS:
            toks.append(("sp", bytes([c])))
            i += 1
        else:
            j = i
            while j < n and s[j] not in _SPECIALS and s[j] not in b" \t\r\n":
                j += 1
            toks.append(("atom", s[i:j]))
            i = j
    return toks, comments


def _addr(name: bytes | None, adl: bytes | None, mailbox: bytes | None, host: bytes | None) -> list[Any]:
    return [
        name or None,
        adl or None,
        mailbox if mailbox else b"MISSING_MAILBOX",
        host if host else b"MISSING_DOMAIN",
    ]


def parse_addresses(value: bytes | None) -> AddressList | None:
    """Parse an RFC 5322 address-list (lenient) into ENVELOPE address structures; None if empty."""
    if value is None:
        return None
    toks, _ = _tokenize(unfold(value))
    out = AddressList()
    i, n = 0, len(toks)
    in_group = False

    while i < n:
        # collect a phrase / local-part up to a structural special
        words: list[tuple[str, bytes]] = []
        comments: list[bytes] = []
        while i < n and not (toks[i][0] == "sp" and toks[i][1] in b"<@:,;"):
            k, b = toks[i]
            if k == "comment":
                comments.append(b)
            elif k == "sp":
                words.append(("atom", b))  # stray special such as "." or ">"
            else:
                words.append((k, b))
            i += 1
        if i >= n:
            if words:
                # bare local-part without domain, e.g. "From: root"
                out.append(
                    _addr(comments[-1] if comments else None, None, b"".join(b for _, b in words), None)
                )
            break
        sp = toks[i][1]
        if sp == b":" and not in_group:  # RFC 5322 §3.4: group start
            out.append([None, None, b" ".join(b for _, b in words) if words else b"", None])
            in_group = True
            i += 1
            continue
        if sp == b";":
            if words:
                out.append(
                    _addr(comments[-1] if comments else None, None, b"".join(b for _, b in words), None)
                )
            if in_group:
                out.append([None, None, None, None])
                in_group = False
            i += 1
            continue
        if sp == b",":
            if words:
                out.append(
                    _addr(comments[-1] if comments else None, None, b"".join(b for _, b in words), None)
                )
            i += 1
            continue
        if sp == b"<":
            name = b" ".join(b for _, b in words) if words else None
            i += 1
            # obs-route: "@a,@b:" (RFC 5322 §4.4)
            adl_parts: list[bytes] = []
            while i < n and toks[i] == ("sp", b"@"):
                j = i + 1
                dom = toks[j][1] if j < n and toks[j][0] == "atom" else b""
                adl_parts.append(b"@" + dom)
                i = j + 1 if dom else j
                if i < n and toks[i] == ("sp", b","):
                    i += 1
                    continue
                if i < n and toks[i] == ("sp", b":"):
                    i += 1
                break
            local: list[bytes] = []
            while i < n and not (toks[i][0] == "sp" and toks[i][1] in b"@>"):
                if toks[i][0] != "comment":
                    local.append(toks[i][1])
                i += 1
            host = b""
            if i < n and toks[i] == ("sp", b"@"):
                i += 1
                hostp: list[bytes] = []
                while i < n and toks[i] != ("sp", b">"):
                    if toks[i][0] != "comment":
                        hostp.append(toks[i][1])
                    i += 1
                host = b"".join(hostp)
            if i < n and toks[i] == ("sp", b">"):
                i += 1
            if name is None and comments:
                name = comments[-1]
            out.append(_addr(name, b",".join(adl_parts), b"".join(local), host))
            # skip anything up to the next separator
            while i < n and not (toks[i][0] == "sp" and toks[i][1] in b",;"):
                if toks[i][0] == "comment" and out[-1][0] is None:
                    out[-1][0] = toks[i][1] or None
                i += 1
            continue
        if sp == b"@":  # addr-spec: words are the local-part
            i += 1
            hostp = []
            while i < n and not (toks[i][0] == "sp" and toks[i][1] in b",;<"):
                k, b = toks[i]
                if k == "comment":
                    comments.append(b)
                elif b != b"@":
                    hostp.append(b)
                i += 1
            out.append(
                _addr(
                    comments[-1] if comments else None, None, b"".join(b for _, b in words), b"".join(hostp)
                )
            )
            continue
        # ":" inside a group or other stray special: skip it
        i += 1
    if in_group:
        out.append([None, None, None, None])  # unterminated group: close it
    return out or None


def _first(part: MessagePart, name: bytes) -> bytes | None:
    for n, v in part.headers:
        if n.lower() == name:
            return unfold(v)
    return None


def envelope(msg: MessagePart) -> list[Any]:
    """ENVELOPE of the message whose root (or embedded root) is ``msg``."""
    date = _first(msg, b"date")
    subject = _first(msg, b"subject")
    frm = parse_addresses(_first(msg, b"from"))
    sender = parse_addresses(_first(msg, b"sender")) or frm  # RFC 9051 §7.5.2: default to from
    reply_to = parse_addresses(_first(msg, b"reply-to")) or frm
    to = parse_addresses(_first(msg, b"to"))
    cc = parse_addresses(_first(msg, b"cc"))
    bcc = parse_addresses(_first(msg, b"bcc"))
    in_reply_to = _first(msg, b"in-reply-to")
    message_id = _first(msg, b"message-id")
    return [date, subject, frm, sender, reply_to, to, cc, bcc, in_reply_to, message_id]


def first_mailbox(addrs: AddressList | None) -> list[Any] | None:
    """First real (non-group-marker) address of a list, or None."""
    for a in addrs or ():
        if a[2] is not None and a[3] is not None:
            return a
    return None


# RFC 5322 §3.2.3 atext (8-bit octets count as atext, RFC 6532 §3.2): a word made only of these
# is written bare, anything else as a quoted-string.
_ATEXT = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
) | frozenset(range(0x80, 0x100))
# Escaped inside the quoted-string (Dovecot also escapes the apostrophe; the written form is
# what a SEARCH needle is compared with, so we write what it writes).
_ESCAPED = frozenset(b"\\\"'")


def _word(b: bytes, *, dots: bool) -> bytes:
    """``b`` bare if it is atext (``.`` allowed inside a local part unless ``dots``), else quoted
    (RFC 5322 §3.2.4) with ``\\`` before each of :data:`_ESCAPED`."""
    if not b:
        return b'""'
    dots = dots or b[:1] == b"." or b[-1:] == b"."
    if all(c in _ATEXT or (c == 0x2E and not dots) for c in b):
        return b
    if not any(c in _ESCAPED for c in b):
        return b'"' + b + b'"'
    return b'"' + bytes(x for c in b for x in ((0x5C, c) if c in _ESCAPED else (c,))) + b'"'


def _phrase(b: bytes) -> bytes:
    # RFC 2047 §5: an encoded-word may not sit inside a quoted-string, so a phrase holding one
    # is written as the (obsolete, RFC 5322 §4.1) bare phrase
    return b if b"=?" in b else _word(b, dots=True)


def address_search_text(value: bytes | None) -> str:
    """An address field as SEARCH FROM/TO/CC/BCC compare it (see the module docstring):
    ``"Doe, John" <john@example.com>, Team: <a@example.org>;``, RFC 2047 words decoded."""
    addrs = parse_addresses(value)
    if not addrs:
        return ""
    out = bytearray()
    first, in_group = True, False
    for name, adl, mailbox, host in addrs:
        if not first:
            out += b", "
        first = False
        if host is None:  # group marker (RFC 9051 §7.5.2): start (mailbox = name) or end
            if not in_group:
                out += (_phrase(mailbox) if mailbox else b'""') + b": "
                first = True
            else:  # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
                del out[-2 if out.endswith(b", ") else -1 :]
                out += b";"
            in_group = not in_group
            continue
        local = b"" if mailbox == b"MISSING_MAILBOX" else mailbox
        domain = b"" if host == b"MISSING_DOMAIN" else host
        if name:
            out += _phrase(name) + b" "
        out += b"<" + (adl + b":" if adl else b"") + _word(local, dots=False)
        out += (b"@" + domain if domain else b"") + b">"
    return decode_words(bytes(out))


#: RFC 9051 §4.3: quoted strings cannot hold CR, LF, NUL; 8-bit goes as a literal too.
_NOT_QUOTABLE = re.compile(rb"[\x00\n\r\x80-\xff]")


def _quote(b: bytes) -> bytes:
    if len(b) > 4096 or _NOT_QUOTABLE.search(b):  # one C scan (was a per-octet generator)
        return b"{%d}\r\n" % len(b) + b
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def imap_encode(value: Any) -> bytes:
    """Serialise nested None/int/bytes/str/list values to IMAP syntax (iteratively)."""
    out: list[bytes] = []
    # stack of ("item", value) or ("lit", bytes)
    stack: list[tuple[bool, Any]] = [(False, value)]
    while stack:
        is_lit, v = stack.pop()
        if is_lit:
            out.append(v)
            continue
        if v is None:
            out.append(b"NIL")
        elif isinstance(v, bool):
            out.append(b"1" if v else b"0")
        elif isinstance(v, int):
            out.append(str(v).encode())
        elif isinstance(v, str):
            out.append(_quote(v.encode("utf-8")))
        elif isinstance(v, bytes | bytearray):
            out.append(_quote(bytes(v)))
        elif isinstance(v, list | tuple):
            items: list[tuple[bool, Any]] = [(True, b"(")]
            lead = isinstance(v, MultipartBody)
            for k, item in enumerate(v):
                if k:
                    tight = isinstance(v, AddressList) or (
                        lead and isinstance(item, list) and isinstance(v[k - 1], list)
                    )
                    if not tight:
                        items.append((True, b" "))
                if lead and not isinstance(item, list):
                    lead = False
                items.append((False, item))
            items.append((True, b")"))
            stack.extend(reversed(items))
        else:
            raise TypeError(f"cannot IMAP-encode {type(v).__name__}")
    return b"".join(out)
