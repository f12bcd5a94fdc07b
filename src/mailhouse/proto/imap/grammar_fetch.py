"""IMAP grammar: FETCH and its attributes.

FETCH / UID FETCH (RFC 9051 §6.4.5, §6.4.9), macros ALL/FAST/FULL, body sections and partials
(RFC 9051 §9 section, section-binary, partial), BINARY / BINARY.PEEK / BINARY.SIZE (RFC 3516
§4.2), CHANGEDSINCE and VANISHED modifiers (RFC 7162 §3.1.4.1, §3.2.6), EMAILID / THREADID
(RFC 8474), SAVEDATE (RFC 8514), PREVIEW (RFC 8970). :func:`fetch_att` is also used by NOTIFY's
``MessageNew`` fetch attributes (RFC 5465 §5.2).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

No recursion: every parenthesised construct here has a fixed grammar depth.
"""

from __future__ import annotations

import re

from mailhouse.proto.imap.commands import (
    Fetch,
    FetchAtt,
    Section,
)
from mailhouse.proto.imap.reader import Reader

_SIMPLE_FETCH = frozenset(
    "ENVELOPE FLAGS INTERNALDATE RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT BODY BODYSTRUCTURE UID "
    "MODSEQ EMAILID THREADID SAVEDATE PREVIEW".split()
)
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
# section-msgtext / "MIME" (RFC 9051 §9): HEADER, HEADER.FIELDS[.NOT], TEXT, MIME
_SECTION_TEXT = re.compile(rb"[A-Za-z.]+")
_FETCH_MACROS = {  # RFC 9051 §6.4.5 macros
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


def _section_part(r: Reader) -> tuple[int, ...]:
    part = [r.nz_number()]
    while r.peek() == 0x2E and 0x30 <= r.peek(1) <= 0x39:  # section-part = nz-number *("." nz-number)
        r.expect(b".")
        part.append(r.nz_number())
    return tuple(part)


def _section(r: Reader, binary: bool) -> Section:
    """section = "[" [section-spec] "]"; section-binary = "[" [section-part] "]" (RFC 9051 §9)."""
    r.expect(b"[")
    if r.try_take(b"]"):
        return Section()
    part: tuple[int, ...] = ()
    if 0x30 <= r.peek() <= 0x39:
        part = _section_part(r)
        if r.try_take(b"]"):
            return Section(part)
        if binary:
            r.error("Bad BINARY section")
        r.expect(b".")
    if binary:
        r.error("Bad BINARY section")
    word = r.match(_SECTION_TEXT)
    text = (word or b"").decode("ascii").upper()
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()  # header-list = "(" header-fld-name *(SP header-fld-name) ")"
        r.expect(b"(")
        names = [r.astring_str()]
        while not r.try_take(b")"):
            r.sp()
            names.append(r.astring_str())
        fields = tuple(names)
    elif text == "MIME":
        if not part:  # RFC 9051 §6.4.5: MIME only with a part number
            r.error("MIME requires a part number")
    elif text not in ("HEADER", "TEXT"):
        r.error("Bad section")
    r.expect(b"]")
    return Section(part, text, fields)


def _lazy_follows(r: Reader) -> bool:
    """`` (LAZY`` next: PREVIEW's modifier list, not the fetch-modifiers of RFC 7162 (``FETCH 1
    PREVIEW (CHANGEDSINCE 5)``) that may follow a lone fetch-att."""
    want = b" (lazy"
    if (
        any((r.peek(i) | 0x20) != c for i, c in enumerate(want) if i >= 2)
        or r.peek() != 0x20
        or r.peek(1) != 0x28
    ):
        return False
    return r.peek(len(want)) in (0x20, 0x29)


def fetch_att(r: Reader) -> FetchAtt:
    tok = r.match(_FETCH_NAME)
    if tok is None:
        r.error("Expected fetch attribute")
    name = tok.decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE") and r.peek() == 0x5B:
        binary = name.startswith("BINARY")
        section = _section(r, binary)
        partial: tuple[int, int] | None = None
        if name != "BINARY.SIZE" and r.try_take(b"<"):  # partial = "<" number64 "." nz-number64 ">"
            start = r.number64()
            r.expect(b".")
            length = r.number64()
            if length == 0:
                r.error("Partial length must be non-zero")
            r.expect(b">")
            partial = (start, length)
        return FetchAtt(name, section, partial)
    if name not in _SIMPLE_FETCH:
        r.error(f"Unknown fetch attribute {name[:40]}")
    if name == "PREVIEW" and _lazy_follows(r):
        # RFC 8970 §6: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod = "LAZY"
        r.sp()
        r.expect(b"(")
        mods = [r.atom().upper()]
        while r.try_take(b" "):
            mods.append(r.atom().upper())
        r.expect(b")")
        if any(m != "LAZY" for m in mods):
            r.error("Unknown PREVIEW modifier")
        return FetchAtt(name, modifiers=tuple(dict.fromkeys(mods)))
    return FetchAtt(name)


def parse_fetch(r: Reader, uid: bool) -> Fetch:
    r.sp()
    seq = r.seqset()
    r.sp()
    macro: str | None = None
    items: list[FetchAtt] = []
    if r.try_take(b"("):
        items.append(fetch_att(r))
        while not r.try_take(b")"):
            r.sp()
            items.append(fetch_att(r))
    else:
        for m, expansion in _FETCH_MACROS.items():
            if r.try_take_ci(m.encode()):
                macro = m
                items.extend(FetchAtt(x) for x in expansion)
                break
        else:
            items.append(fetch_att(r))
    if uid and not any(i.name == "UID" for i in items):
        items.insert(0, FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always returns UID
    changedsince: int | None = None
    vanished = False
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 7162 §3.1.4.1 / §3.2.6: fetch-modifiers
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            mod = r.atom().upper()
            if mod == "CHANGEDSINCE":
                r.sp()
                changedsince = r.number64()
            elif mod == "VANISHED" and uid:  # RFC 7162 §3.2.6: only in UID FETCH
                vanished = True
            else:
                r.error(f"Unknown FETCH modifier {mod[:40]}")
        if vanished and changedsince is None:
            r.error("VANISHED requires CHANGEDSINCE")  # RFC 7162 §3.2.6
    return Fetch(uid, seq, tuple(items), macro, changedsince, vanished)
