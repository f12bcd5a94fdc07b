"""vCard 4.0 (RFC 6350) reading and writing for the webmail's address book.

Only the properties a mail address book uses are kept: UID, FN (or N when FN is missing),
EMAIL, NOTE and CATEGORIES (the groups); the others are read past. Cards of version 3.0
(RFC 2426, what many phones and Gmail export) have the same syntax for these and are read too;
2.1 (quoted-printable, bare parameters) is refused with a clear error.

Why not the `vobject` library: it models vCard 3.0 (its 4.0 support is partial: no 4.0
escaping rules, 3.0 serialisation, N required), it has no input limits, and it builds a tree of
every property of a file that may come from anyone. What is needed here is a few properties, a
bounded reader with line-numbered errors, and a writer that folds at 75 octets; that is small.

Invariants:
- The reader never keeps more than MAX_CARDS cards or a line longer than MAX_LINE characters,
  and reports the line of the first syntax error (`VCardError`).
- The writer emits CRLF lines (RFC 6350 §3.2) folded at 75 octets without splitting a UTF-8
  sequence (§3.2), VERSION right after BEGIN (§6.7.9), and escapes text values (§3.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_BYTES = 2 * 1024 * 1024  # an import file: a few thousand cards
MAX_CARDS = 5000  # cards per file (store/contacts.py keeps at most 5000 contacts)
MAX_LINE = 10_000  # characters of one unfolded content line
FOLD = 75  # RFC 6350 §3.2: lines SHOULD NOT be longer than 75 octets, excluding the line break
VERSIONS = ("4.0", "3.0")
NAME_RE = re.compile(r"[A-Za-z0-9-]+")  # RFC 6350 §3.3: name = iana-token / x-name


class VCardError(ValueError):
    """A vCard file that cannot be read; the message names the line."""


@dataclass(slots=True)
class Card:
    uid: str = ""
    name: str = ""
    emails: list[str] = field(default_factory=list)
    notes: str = ""
    groups: list[str] = field(default_factory=list)
    line: int = 0  # where the card begins, for messages


# ------------------------------------------------------------------ writing
def escape(value: str) -> str:
    """RFC 6350 §3.4: backslash, comma and semicolon escaped, newlines as \\n."""
    out = value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def fold(line: str) -> bytes:
    """One content line as UTF-8 octets, folded (RFC 6350 §3.2: CRLF then one space)."""
    raw = line.encode()
    out, start, width = [], 0, FOLD
    while len(raw) - start > width:
        end = start + width
        while end > start and (raw[end] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            end -= 1
        out.append(raw[start:end])
        start, width = end, FOLD - 1  # continuation lines begin with the folding space
    out.append(raw[start:])
    return b"\r\n ".join(out) + b"\r\n"


def write(cards: Iterable[Card]) -> bytes:
    lines: list[str] = []
    for c in cards:
        lines += ["BEGIN:VCARD", "VERSION:4.0"]  # RFC 6350 §6.7.9: VERSION right after BEGIN
        if c.uid:
            lines.append("UID:" + escape(c.uid))  # §6.7.6 (a URI: text escaping is harmless)
        lines.append("FN:" + escape(c.name))  # §6.2.1: FN is required
        lines += ["EMAIL:" + escape(e) for e in c.emails]  # §6.4.2
        if c.groups:
            lines.append("CATEGORIES:" + ",".join(escape(g) for g in c.groups))  # §6.7.1
        if c.notes:
            lines.append("NOTE:" + escape(c.notes))  # §6.7.2
        lines.append("END:VCARD")
    return b"".join(fold(line) for line in lines)


# ------------------------------------------------------------------ reading
def _unfold(text: str) -> list[tuple[int, str]]:
    """Content lines with their first physical line number (RFC 6350 §3.2)."""
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if line[:1] in (" ", "\t") and out:
            no, prev = out[-1]
            out[-1] = (no, prev + line[1:])
        elif line.strip():
            out.append((n, line))
        if out and len(out[-1][1]) > MAX_LINE:
            raise VCardError(f"line {out[-1][0]}: longer than {MAX_LINE} characters")
    return out


def _split_values(value: str, sep: str) -> list[str]:
    """A text value split at unescaped SEP and unescaped (RFC 6350 §3.4)."""
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            cur.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _content_line(no: int, line: str) -> tuple[str, list[str], str]:
    """(NAME upper-cased, parameters, value) of a content line (RFC 6350 §3.3); the group
    prefix is dropped. The name part ends at the first ':' outside a quoted parameter value."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1 :]
            break
    else:
        raise VCardError(f"line {no}: not a vCard content line (no ':')")
    name, *params = head.split(";")
    name = name.rpartition(".")[2]  # group "." name
    if not NAME_RE.fullmatch(name):
        raise VCardError(f"line {no}: bad property name {name[:40]!r}")
    return name.upper(), params, value


def read(data: bytes) -> list[Card]:
    """The cards of a .vcf file; raises VCardError (too big, not UTF-8, bad syntax, version)."""
    if len(data) > MAX_BYTES:
        raise VCardError(f"the file is larger than {MAX_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8-sig")  # RFC 6350 §3.1: UTF-8
    except UnicodeDecodeError as e:
        raise VCardError(f"not UTF-8 text (byte {e.start})") from None
    cards: list[Card] = []
    card: Card | None = None
    version = ""
    for no, line in _unfold(text):
        name, params, value = _content_line(no, line)
        if name == "BEGIN" and value.strip().upper() == "VCARD":
            if card is not None:
                raise VCardError(f"line {no}: BEGIN:VCARD inside a card (nested cards are not supported)")
            if len(cards) >= MAX_CARDS:
                raise VCardError(f"more than {MAX_CARDS} cards")
            card, version = Card(line=no), ""
            continue
        if card is None:
            raise VCardError(f"line {no}: {name} outside BEGIN:VCARD … END:VCARD")
        if name == "END":
            if not version:
                raise VCardError(f"line {card.line}: the card has no VERSION")
            if not card.name and card.emails:
                card.name = card.emails[0]
            cards.append(card)
            card = None
        elif name == "VERSION":
            version = value.strip()
            if version not in VERSIONS:
                raise VCardError(f"line {no}: vCard version {version[:10]!r} is not supported (4.0 or 3.0)")
        elif any("ENCODING=" in p.upper() and "QUOTED" in p.upper() for p in params):
            raise VCardError(f"line {no}: quoted-printable values (vCard 2.1) are not supported")
        elif name == "UID":
            card.uid = value.strip()
        elif name == "FN":
            card.name = _split_values(value, "\0")[0].strip()
        elif name == "N" and not card.name:  # §6.2.2: family;given;additional;prefixes;suffixes
            parts = [p.strip() for p in _split_values(value, ";")]
            card.name = " ".join(p for p in (parts[3:4] + parts[1:3] + parts[0:1] + parts[4:5]) if p)
        elif name == "EMAIL":
            card.emails.append(_split_values(value, "\0")[0].strip())
        elif name == "NOTE":
            card.notes = (card.notes + "\n" if card.notes else "") + _split_values(value, "\0")[0]
        elif name == "CATEGORIES":
            card.groups += [g.strip() for g in _split_values(value, ",") if g.strip()]
    if card is not None:
        raise VCardError(f"line {card.line}: the card has no END:VCARD")
    return cards
