"""IMAP search keys as a tree of typed nodes, and their parser.

RFCs: RFC 9051 §6.4.4 (search-key), RFC 3501 §6.4.4 (NEW, OLD, RECENT), RFC 7162 §3.1.5
(MODSEQ), RFC 5032 (OLDER, YOUNGER), RFC 5182 (``$``), RFC 8514 (SAVEDBEFORE, SAVEDON,
SAVEDSINCE, SAVEDATESUPPORTED), RFC 8474 (EMAILID, THREADID).

Invariants:

* The tree is a pure syntax tree; evaluation lives in ``message/`` and ``store/``.
* Nesting (NOT, OR, parentheses) is bounded by :data:`MAX_SEARCH_DEPTH`; deeper input is a
  syntax error (BAD), never a ``RecursionError``: the recursion depth of
  :func:`parse_search_program` is at most ``MAX_SEARCH_DEPTH`` frames per nesting level.
* A search program with several keys is an :class:`SearchAnd`.
* Tokens come through :class:`~mailhouse.proto.imap.reader.Reader`, which lives below this
  module (``reader.py`` imports neither the grammar nor this module): no import circle.

Hand-written because no Python library parses IMAP search programs server-side.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from mailhouse.proto.imap.reader import Reader
from mailhouse.proto.imap.sequence import SequenceSet

# Limit: 64 levels cover every real client (they send flat key lists, OR chains of a few
# dozen at most) while keeping the recursive-descent parser far below Python's recursion limit.
MAX_SEARCH_DEPTH = 64


@dataclass(frozen=True, slots=True)
class SearchFlagKey:
    """Argument-less keys: ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED
    UNDELETED UNDRAFT UNFLAGGED UNSEEN SAVEDATESUPPORTED."""

    key: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """BCC BODY CC FROM SUBJECT TEXT TO (substring keys, RFC 9051 §6.4.4); value as sent."""

    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """HEADER field-name string."""

    field: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchKeyword:
    """KEYWORD / UNKEYWORD (``negated``)."""

    flag: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE SAVEDBEFORE SAVEDON SAVEDSINCE."""

    key: str
    date: datetime.date


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER / SMALLER n."""

    key: str
    size: int


@dataclass(frozen=True, slots=True)
class SearchInterval:
    """OLDER / YOUNGER seconds (RFC 5032 §3)."""

    key: str
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchObjectId:
    """EMAILID / THREADID objectid (RFC 8474 §6)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """A bare sequence set (message numbers) or ``UID set``; ``$`` shows as ``sequence.saved``."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] modseq (RFC 7162 §3.1.5)."""

    modseq: int
    entry_name: bytes | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """Parenthesised group or the top-level key list: all keys must match."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchFlagKey
    | SearchText
    | SearchHeader
    | SearchKeyword
    | SearchDate
    | SearchSize
    | SearchInterval
    | SearchObjectId
    | SearchSequence
    | SearchModSeq
    | SearchNot
    | SearchOr
    | SearchAnd
)

FLAG_KEYS = frozenset(
    "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT "
    "UNFLAGGED UNSEEN SAVEDATESUPPORTED".split()
)
TEXT_KEYS = frozenset("BCC BODY CC FROM SUBJECT TEXT TO".split())
DATE_KEYS = frozenset("BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE SAVEDBEFORE SAVEDON SAVEDSINCE".split())
# RFC 7162 §3.1.5: entry-type-req = "priv" / "shared" / "all"
_ENTRY_TYPES = frozenset(("PRIV", "SHARED", "ALL"))


def parse_search_program(r: Reader) -> SearchKey:
    """Parse ``search-key *(SP search-key)`` up to the end of the command."""
    keys = [parse_search_key(r, 0)]
    while not r.eol():
        r.sp()
        keys.append(parse_search_key(r, 0))
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def parse_search_key(r: Reader, depth: int) -> SearchKey:
    """Parse one search-key; ``depth`` counts enclosing NOT/OR/parentheses."""
    if depth >= MAX_SEARCH_DEPTH:
        r.error("Search keys nested too deeply")
    c = r.peek()
    if c == 0x28:  # "(" search-key *(SP search-key) ")"
        r.expect(b"(")
        keys = [parse_search_key(r, depth + 1)]
        while not r.try_take(b")"):
            r.sp()
            keys.append(parse_search_key(r, depth + 1))
        return SearchAnd(tuple(keys))
    if c == 0x24 or 0x30 <= c <= 0x39 or c == 0x2A:  # "$", digit, "*": sequence-set
        return SearchSequence(r.seqset())
    key = r.atom().upper()
    if key in FLAG_KEYS:
        return SearchFlagKey(key)
    r.sp()
    if key in TEXT_KEYS:
        return SearchText(key, r.astring())
    if key in DATE_KEYS:
        return SearchDate(key, r.date())
    if key == "NOT":
        return SearchNot(parse_search_key(r, depth + 1))
    if key == "OR":
        left = parse_search_key(r, depth + 1)
        r.sp()
        return SearchOr(left, parse_search_key(r, depth + 1))
    if key == "HEADER":
        field = r.astring_str()
        r.sp()
        return SearchHeader(field, r.astring())
    if key in ("KEYWORD", "UNKEYWORD"):
        return SearchKeyword(r.flag_keyword(), key == "UNKEYWORD")
    if key in ("LARGER", "SMALLER"):
        return SearchSize(key, r.number64())
    if key in ("OLDER", "YOUNGER"):
        return SearchInterval(key, r.nz_number())
    if key in ("EMAILID", "THREADID"):
        return SearchObjectId(key, r.atom())
    if key == "UID":
        return SearchSequence(r.seqset(), uid=True)
    if key == "MODSEQ":
        entry: bytes | None = None
        etype: str | None = None
        if r.peek() == 0x22 or r.at_literal():  # RFC 7162 §3.1.5: entry-name is a quoted string
            entry = r.string()
            r.sp()
            etype = r.atom().upper()
            if etype not in _ENTRY_TYPES:
                r.error("Bad MODSEQ entry type")
            r.sp()
        return SearchModSeq(r.number64(), entry, etype)
    r.error(f"Unknown search key {key[:40]}")
