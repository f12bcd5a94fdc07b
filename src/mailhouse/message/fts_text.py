"""What the full-text index stores for a message, and how a search string becomes an index query.

Issue 13 §4. The store keeps the documents and answers queries (`store/fts.py`); this module
decides their content, so both sides use ONE tokeniser and the index can be proven to narrow
without losing a match of the exact matcher (`message/search.py`, RFC 9051 §6.4.4 substring
semantics).

Text. The searchable texts are exactly those the exact matcher reads, through its own code:
the top-level header fields decoded and case-folded (`SearchIndex.fields`: SUBJECT, FROM, TO,
CC, BCC), every header line "Name: value" of the message and its MIME parts (`SearchIndex.lines`
and `mime_lines`: TEXT, HEADER), and the text/* parts decoded window by window
(`iter_text_windows`: transfer encoding removed, charset converted, case-folded; BODY, TEXT).
HTML is indexed as the decoded HTML text the exact matcher scans (tags included), not stripped:
stripping would drop words the scan finds. A message with an inline text/html part also gets
the marker term `HTML_MARKER`, because the webmail matches the stripped HTML too (`web/search.py`):
such messages stay candidates for its body words. No stemming, no stop words.

Words. A word is a maximal run of Unicode letters and digits (``[^\\W_]+``) of the case-folded
text. A document holds, per tag, every word and every suffix of a word that is at least
`MIN_SUFFIX` characters long, each cut to `MAX_WORD` characters. Then, for a case-folded search
string n and a word w of n (the letters/digits in n are the same runs in the text where n occurs):

- w bounded on both sides inside n is a whole word of the text: the term w;
- w at the start of n (and not its end) is a word's suffix: the term w, if len(w) >= MIN_SUFFIX;
- w at the end of n is a word's prefix: the prefix query w*, if len(w) >= MIN_SUFFIX;
- w that is all of n may sit anywhere inside a word: w* (a suffix starting with w), if long enough;

(a word over `MAX_WORD` is asked as the prefix query of its first `MAX_WORD` characters). The
AND of these is therefore true of every document whose text contains n: the index narrows,
never loses a match. When n is one run of letters/digits (MIN_SUFFIX..MAX_WORD characters) and
the key reads exactly the tagged text (BODY, TEXT, SUBJECT), a hit is a match: some indexed
suffix starts with n, so n is in the text (`FtsQuery.exact`).

Bounds: at most `MAX_TEXT` decoded octets of text parts and `MAX_TERM_BYTES` of terms per
message; past either the document is PARTIAL (scanned by every search) — never cut silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailhouse.message.parse import iter_parts, parse_message
from mailhouse.message.search import (
    SearchIndex,
    SearchLimits,
    _Budget,
    _text_parts,
    iter_text_windows,
)
from mailhouse.store.api import DocState, FtsQuery, FtsTerm, IndexDoc, Tag
from mailhouse.store.fts import HTML_MARKER

__all__ = [
    "MAX_TEXT",
    "MAX_TERM_BYTES",
    "MAX_WORD",
    "MIN_SUFFIX",
    "extract",
    "query_for",
    "words",
]

# Decoded octets of text parts indexed per message (issue 13 §4: "bounded per message"); a
# message with more text is PARTIAL and scanned. 1 MiB is far above ordinary mail.
MAX_TEXT = 1024 * 1024
# Octets of terms per document: PostgreSQL's tsvector must stay under 1 MB.
MAX_TERM_BYTES = 512 * 1024
# Suffixes shorter than this are not indexed (a 1-2 letter infix matches nearly everything).
MIN_SUFFIX = 3
# Terms are cut to this many characters (bounds the suffixes of long runs such as base64).
MAX_WORD = 32

_WORD = re.compile(r"[^\W_]+")
_TAG_OF_FIELD = {
    b"subject": Tag.SUBJECT,
    b"from": Tag.FROM,
    b"to": Tag.TO,
    b"cc": Tag.CC,
    b"bcc": Tag.BCC,
}
_LIMITS = SearchLimits(max_decoded_bytes=MAX_TEXT)


def words(text: str) -> list[str]:
    """The words of (already case-folded) TEXT."""
    return _WORD.findall(text)


def _expand(ws: Iterable[str], tag: str, out: set[str]) -> None:
    for w in set(ws):
        out.add(tag + w[:MAX_WORD])
        for i in range(1, len(w) - MIN_SUFFIX + 1):
            out.add(tag + w[i : i + MAX_WORD])


def extract(raw: bytes) -> IndexDoc:
    """The index document of a message's octets. Never raises (FAILED instead)."""
    try:
        return _extract(raw)
    except Exception:  # noqa: BLE001 - a message that cannot be indexed is scanned, never refused
        return IndexDoc(DocState.FAILED)


def _extract(raw: bytes) -> IndexDoc:
    tree = parse_message(raw)
    idx = SearchIndex(raw, tree)
    terms: set[str] = set()
    for name, value in idx.fields:
        tag = _TAG_OF_FIELD.get(name)
        if tag is not None:
            _expand(words(value), tag.value, terms)
    _expand((w for line in idx.lines + idx.mime_lines for w in words(line)), Tag.HEADERS.value, terms)
    budget = _Budget(MAX_TEXT)
    for part in _text_parts(tree, _LIMITS):
        # one part's text whole (at most MAX_TEXT decoded octets), so no word is cut at a window
        text = "".join(iter_text_windows(raw, part, _LIMITS, budget))
        _expand(words(text), Tag.BODY.value, terms)
        if budget.left <= 0:
            return IndexDoc(DocState.PARTIAL)
    for p in iter_parts(tree):
        if not p.children and p.type == "text" and p.subtype == "html" and p.disposition != "attachment":
            terms.add(HTML_MARKER)
            break
    out = " ".join(sorted(terms))
    if len(out.encode()) > MAX_TERM_BYTES:
        return IndexDoc(DocState.PARTIAL)
    return IndexDoc(DocState.INDEXED, out)


# What each search key reads (tags), and whether a hit on those tags is a match.
_KEY_TAGS: dict[str, tuple[tuple[Tag, ...], bool]] = {
    "BODY": ((Tag.BODY,), True),
    "TEXT": ((Tag.HEADERS, Tag.BODY), True),
    "SUBJECT": ((Tag.SUBJECT,), True),
    "FROM": ((Tag.FROM,), False),  # the address keys' matching may read more than the text
    "TO": ((Tag.TO,), False),
    "CC": ((Tag.CC,), False),
    "BCC": ((Tag.BCC,), False),
    "HEADER": ((Tag.HEADERS,), False),
}


def query_for(key: str, needle: str, *, field: str | None = None) -> FtsQuery | None:
    """The index query for search KEY (BODY, TEXT, SUBJECT, FROM, TO, CC, BCC, or HEADER with
    FIELD) and a case-folded NEEDLE; None when the index cannot narrow it (scan everything)."""
    if key == "HEADER" and field is not None:
        tag = _TAG_OF_FIELD.get(field.lower().encode("utf-8", "replace"))
        tags, exact = ((tag,), False) if tag is not None else _KEY_TAGS["HEADER"]
    elif key in _KEY_TAGS:
        tags, exact = _KEY_TAGS[key]
    else:
        return None
    runs = list(_WORD.finditer(needle))
    out: list[FtsTerm] = []
    for m in runs:
        w = m.group()
        open_left, open_right = m.start() == 0, m.end() == len(needle)
        if open_left or open_right:
            if len(w) < MIN_SUFFIX:
                continue  # too short an infix, suffix or prefix to be indexed: no narrowing by it
            prefix = open_right  # a prefix or an infix: some indexed suffix starts with w
        else:
            prefix = False  # a whole word
        if len(w) > MAX_WORD:
            w, prefix = w[:MAX_WORD], True
        out.append(FtsTerm(tags, w, prefix))
    if not out:
        return None
    one = len(runs) == 1 and runs[0].group() == needle and MIN_SUFFIX <= len(needle) <= MAX_WORD
    return FtsQuery(tuple(out), exact=exact and one)
