"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3, kept by RFC 9051 §5.1.3 for
clients that have not enabled UTF8=ACCEPT / IMAP4rev2, RFC 6855 §3).

Rules implemented (all from RFC 3501 §5.1.3):

* printable US-ASCII (0x20-0x7e) represents itself, except ``&`` which is ``&-``;
* every other character is UTF-16BE, base64-encoded with ``,`` instead of ``/``, without
  ``=`` padding, between ``&`` and ``-``;
* the decoder is strict: bytes outside 0x20-0x7e, an unterminated shift, printable ASCII
  inside a shift, non-zero padding bits, odd UTF-16 length, unpaired surrogates, and two
  adjacent shifts (non-canonical) all raise :class:`MUTF7Error`, so the server can answer
  NO/BAD instead of creating a second spelling of the same mailbox.

A LIST/LSUB *pattern* is not a name (:func:`decode_pattern`): only the ``&``-sequences that
form a valid, canonical shift are decoded; any other ``&`` stands for itself, so a pattern such
as ``!#$&'+,-.*`` matches the names spelled with those characters instead of being refused
(Dovecot does the same: a pattern it cannot decode is matched as written).

Invariant: for any ``str`` without lone surrogates ``decode(encode(s)) == s``, and for any
``b`` that ``decode`` accepts ``encode(decode(b)) == b`` (one spelling per name).

Hand-written: Python's ``utf-7`` codec is RFC 2152 UTF-7, not IMAP's variant.
"""

from __future__ import annotations

import base64
import binascii
import re

_B64_CHARS = re.compile(rb"[A-Za-z0-9+,]+")
_SHIFT = re.compile(rb"&[A-Za-z0-9+,]*-")  # a candidate shift: "&" base64-chars "-"


class MUTF7Error(ValueError):
    """The bytes are not valid (canonical) modified UTF-7."""


def _b64(chars: str) -> bytes:
    try:
        raw = chars.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise MUTF7Error("unpaired surrogate cannot be encoded") from exc
    return base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")


def encode(name: str) -> bytes:
    """Encode a mailbox name to modified UTF-7 bytes."""
    out = bytearray()
    run: list[str] = []
    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:  # RFC 3501 §5.1.3: printable ASCII represents itself
            if run:
                out += b"&" + _b64("".join(run)) + b"-"
                run.clear()
            out += b"&-" if ch == "&" else bytes((o,))
        else:
            run.append(ch)
    if run:
        out += b"&" + _b64("".join(run)) + b"-"
    return bytes(out)


def decode(data: bytes) -> str:
    """Decode modified UTF-7 strictly; raise :class:`MUTF7Error` on anything non-canonical."""
    out: list[str] = []
    i, n = 0, len(data)
    last_shift_end = -1
    while i < n:
        c = data[i]
        if c < 0x20 or c > 0x7E:  # RFC 3501 §5.1.3: only printable US-ASCII on the wire
            raise MUTF7Error(f"byte 0x{c:02x} not allowed in modified UTF-7")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            continue
        j = data.find(b"-", i + 1)
        if j < 0:
            raise MUTF7Error("unterminated '&' shift")
        if j == i + 1:  # "&-" is "&"
            out.append("&")
            i = j + 1
            continue
        if i == last_shift_end:
            raise MUTF7Error("adjacent base64 shifts are not canonical")
        chunk = data[i + 1 : j]
        if not _B64_CHARS.fullmatch(chunk) or len(chunk) % 4 == 1:
            raise MUTF7Error("invalid modified base64")
        try:
            raw = base64.b64decode(chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MUTF7Error("invalid modified base64") from exc
        if len(raw) % 2 or base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") != chunk:
            raise MUTF7Error("non-canonical base64 (padding bits or odd UTF-16 length)")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise MUTF7Error("invalid UTF-16 in shift") from exc
        if any(0x20 <= ord(ch) <= 0x7E for ch in text):
            # RFC 3501 §5.1.3: printable ASCII MUST represent itself
            raise MUTF7Error("printable ASCII encoded in base64")
        out.append(text)
        i = last_shift_end = j + 1
    return "".join(out)


def decode_pattern(data: bytes) -> str:
    """Decode a LIST/LSUB pattern (RFC 3501 §6.3.8, §5.1.3): each ``&...-`` that is a valid
    canonical shift is decoded as :func:`decode` would; every other octet, ``&`` included,
    stands for itself. Bytes outside printable US-ASCII still raise :class:`MUTF7Error`."""
    for c in data:
        if c < 0x20 or c > 0x7E:  # RFC 3501 §5.1.3: only printable US-ASCII on the wire
            raise MUTF7Error(f"byte 0x{c:02x} not allowed in modified UTF-7")
    out: list[str] = []
    pos = 0
    prev_end = -1  # end of the last decoded base64 shift (adjacent shifts stay literal)
    for m in _SHIFT.finditer(data):
        out.append(data[pos : m.start()].decode("ascii"))
        chunk = m.group()
        try:
            if chunk != b"&-" and m.start() == prev_end:
                raise MUTF7Error("adjacent base64 shifts are not canonical")
            out.append(decode(chunk))
            if chunk != b"&-":
                prev_end = m.end()
        except MUTF7Error:
            out.append(chunk.decode("ascii"))  # not a shift: the characters stand for themselves
        pos = m.end()
    out.append(data[pos:].decode("ascii"))
    return "".join(out)
