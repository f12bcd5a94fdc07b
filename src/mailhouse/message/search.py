"""Per-message SEARCH predicates (RFC 9051 §6.4.4) over raw bytes and the parsed tree.

The IMAP server composes these into a search program; each function here answers one key for
one message:

- :func:`header_matches` — ``HEADER name string`` and the address/subject keys (``FROM``,
  ``TO``, ``CC``, ``BCC``, ``SUBJECT``): case-insensitive substring of the field value after
  unfolding and RFC 2047 decoding (any charset → ``str``). An empty needle matches every message
  that has the field (RFC 9051 §6.4.4 HEADER).
- :func:`body_matches` — ``BODY string``: the decoded text of every ``text/*`` part (nested
  messages included), Content-Transfer-Encoding removed and charset decoded.
- :func:`text_matches` — ``TEXT string``: header or body.
- :func:`sent_date` — the date part of the Date header in its own zone, for ``SENTBEFORE``,
  ``SENTON``, ``SENTSINCE`` (RFC 9051: "disregarding time and timezone").
- :func:`address_text` — an address field as display text.

Matching uses Unicode case folding (a superset of the i;ascii-casemap comparator RFC 9051
requires). Needles given as ``bytes`` are decoded with the SEARCH CHARSET (default UTF-8).

Invariants: never raises on any message; never loads anything but the given bytes.
"""

from __future__ import annotations

import datetime as dt
import email.utils

from mailhouse.message.headers import decode_bytes, decode_words, unfold
from mailhouse.message.parse import MessagePart, iter_parts
from mailhouse.message.sections import UnknownCTE, decode_transfer_encoding

__all__ = [
    "header_matches",
    "body_matches",
    "text_matches",
    "sent_date",
    "parse_date",
    "address_text",
    "part_text",
    "normalize_needle",
    "SearchIndex",
]


def normalize_needle(needle: str | bytes, charset: str = "utf-8") -> str:
    """The needle as case-folded ``str`` (RFC 9051 §6.4.4 SEARCH CHARSET)."""
    if isinstance(needle, bytes):
        needle = decode_bytes(needle, charset)
    return needle.casefold()


def _fold(s: str) -> str:
    return " ".join(s.split()).casefold() if "\t" in s else s.casefold()


def header_matches(
    raw: bytes, tree: MessagePart, name: str | bytes, needle: str | bytes, charset: str = "utf-8"
) -> bool:
    """Does any top-level ``name`` field contain ``needle`` (decoded, case-insensitive)?"""
    want = (name.encode() if isinstance(name, str) else name).lower()
    n = normalize_needle(needle, charset)
    for fname, value in tree.headers:
        if fname.lower() != want:
            continue
        if not n:
            return True
        if n in _fold(decode_words(unfold(value))):
            return True
    return False


def part_text(raw: bytes, part: MessagePart) -> str:
    """Decoded text of a leaf part (CTE removed, charset applied); ``""`` if undecodable."""
    data = raw[part.body_start : part.body_end]
    try:
        data = decode_transfer_encoding(data, part.cte)
    except UnknownCTE:
        pass
    return decode_bytes(data, part.params.get("charset"))


def _text_parts(tree: MessagePart) -> list[MessagePart]:
    return [p for p in iter_parts(tree) if not p.children and p.type == "text"]


def body_matches(raw: bytes, tree: MessagePart, needle: str | bytes, charset: str = "utf-8") -> bool:
    """``BODY needle``: substring of the decoded text parts (case-insensitive)."""
    n = normalize_needle(needle, charset)
    if not n:
        return True
    return any(n in _fold(part_text(raw, p)) for p in _text_parts(tree))


def text_matches(raw: bytes, tree: MessagePart, needle: str | bytes, charset: str = "utf-8") -> bool:
    """``TEXT needle``: in the header (any field, decoded) or in the body."""
    n = normalize_needle(needle, charset)
    if not n:
        return True
    for fname, value in tree.headers:
        line = fname.decode("latin-1") + ": " + decode_words(unfold(value))
        if n in _fold(line):
            return True
    return body_matches(raw, tree, n)


def _line_fold(s: str) -> str:
    return " ".join(s.split()).casefold()


class SearchIndex:
    """One message's decoded, case-folded searchable text, computed once and matched many times.

    Gives the same answers as :func:`header_matches`, :func:`body_matches`,
    :func:`text_matches` and :meth:`mime_headers` for a needle already passed through
    :func:`normalize_needle`. Header text is built eagerly (small); the decoded bodies on the
    first BODY/TEXT query that reaches them. Kept by :mod:`mailhouse.message.cache`.
    """

    __slots__ = ("fields", "lines", "_raw", "_tree", "_bodies", "_mime")

    def __init__(self, raw: bytes, tree: MessagePart) -> None:
        self._raw: bytes | None = raw
        self._tree: MessagePart | None = tree
        fields: list[tuple[bytes, str]] = []
        lines: list[str] = []
        for fname, value in tree.headers:
            dec = decode_words(unfold(value))
            fields.append((fname.lower(), _fold(dec)))
            lines.append(_fold(fname.decode("latin-1") + ": " + dec))
        self.fields: tuple[tuple[bytes, str], ...] = tuple(fields)
        self.lines: tuple[str, ...] = tuple(lines)
        self._bodies: tuple[str, ...] | None = None
        self._mime: tuple[str, ...] | None = None

    def _build(self) -> None:
        raw, tree = self._raw, self._tree
        assert raw is not None and tree is not None
        self._bodies = tuple(_fold(part_text(raw, p)) for p in _text_parts(tree))
        mime: list[str] = []
        for part in iter_parts(tree)[1:]:
            for fname, value in part.headers:
                mime.append(_line_fold(fname.decode("latin-1") + ": " + decode_words(unfold(value))))
        self._mime = tuple(mime)
        self._raw = self._tree = None  # the cache entry keeps them; no need to here

    @property
    def bodies(self) -> tuple[str, ...]:
        if self._bodies is None:
            self._build()
        assert self._bodies is not None
        return self._bodies

    @property
    def mime_lines(self) -> tuple[str, ...]:
        if self._mime is None:
            self._build()
        assert self._mime is not None
        return self._mime

    def header(self, name: str | bytes, n: str) -> bool:
        """``HEADER name n`` / FROM / TO / CC / BCC / SUBJECT (see :func:`header_matches`)."""
        want = (name.encode() if isinstance(name, str) else name).lower()
        for fname, value in self.fields:
            if fname == want and (not n or n in value):
                return True
        return False

    def body(self, n: str) -> bool:
        """``BODY n`` (see :func:`body_matches`)."""
        return not n or any(n in b for b in self.bodies)

    def text(self, n: str) -> bool:
        """``TEXT n``: top-level header lines or body (see :func:`text_matches`)."""
        return not n or any(n in x for x in self.lines) or self.body(n)

    def mime_headers(self, n: str) -> bool:
        """The header fields of the MIME parts below the top level, "Name: value" with white
        space collapsed (RFC 9051 §6.4.4 TEXT includes MIME header fields)."""
        return not n or any(n in x for x in self.mime_lines)


def parse_date(value: bytes | str | None) -> dt.datetime | None:
    """RFC 5322 §3.3 date-time → aware datetime (naive zone ``-0000`` treated as UTC); None if bad."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        d = email.utils.parsedate_to_datetime(unfold(value.encode("latin-1")).decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d


def sent_date(tree: MessagePart) -> dt.date | None:
    """Date of the Date header, in the header's own time zone (RFC 9051 SENT* keys)."""
    d = parse_date(tree.get(b"date"))
    return d.date() if d is not None else None


def address_text(tree: MessagePart, name: str | bytes) -> str:
    """An address header (From/To/Cc/Bcc/...) as decoded display text; ``""`` if absent."""
    return ", ".join(decode_words(v) for v in tree.get_all(name))
