"""The parsed-message cache and the search index built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhouse.message.cache import CachedMessage, MessageCache, entry_cost
from mailhouse.message.parse import parse_message
from mailhouse.message.search import SearchIndex, body_matches, header_matches, normalize_needle

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.eml"))
NEEDLES = ["the", "hello", "Grüße", "boundary", "attachment", "zzz-not-there", "subject", "a"]


def test_cache_is_bounded_by_bytes_and_lru() -> None:
    raw = b"Subject: x\r\n\r\n" + b"y" * 10_000
    cache = MessageCache(max_bytes=entry_cost(raw) * 8)  # room for exactly eight
    for k in "abcdefgh":
        cache.put(k, CachedMessage(raw))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("i", CachedMessage(raw))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 8
    assert cache.total <= cache.max_bytes
    huge = CachedMessage(b"z" * (cache.max_bytes // 8 + 1))
    assert cache.put("huge", huge) is huge and cache.get("huge") is None  # too big to keep


def test_concurrent_put_keeps_one_copy() -> None:
    cache = MessageCache()
    first = cache.put("k", CachedMessage(b"Subject: 1\r\n\r\n"))
    assert cache.put("k", CachedMessage(b"Subject: 1\r\n\r\n")) is first


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_search_index_agrees_with_direct_matching(path: Path) -> None:
    raw = path.read_bytes()
    tree = parse_message(raw)
    index = SearchIndex(raw, tree)
    for needle in NEEDLES:
        n = normalize_needle(needle)
        assert index.body(n) == body_matches(raw, tree, needle), (path.name, needle)
        for name in ("Subject", "From", "To"):
            assert index.header(name, n) == header_matches(raw, tree, name, needle), (path.name, name, needle)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_envelope_from_the_header_section_equals_the_full_parse(path: Path) -> None:
    """Issue 13 §2: ENVELOPE is computed from the header fields alone (``head``), without the
    MIME walk, and is the same as from the full tree; asking for it parses nothing more."""
    from mailhouse.message.envelope import envelope, imap_encode

    raw = path.read_bytes()
    msg = CachedMessage(raw)
    head = msg.head
    assert msg._tree is None  # noqa: SLF001 - the point: no full parse happened
    assert imap_encode(envelope(head)) == imap_encode(envelope(parse_message(raw)))
    assert head.headers == parse_message(raw).headers


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_top_level_sections_from_the_header_section_equal_the_full_parse(path: Path) -> None:
    """BODY[], [HEADER], [TEXT], [HEADER.FIELDS (...)] and .NOT, with and without a partial,
    answered from ``head`` (what FETCH does for them) are the full tree's octets."""
    from mailhouse.message.sections import SectionSpec, fetch_section

    raw = path.read_bytes()
    head, tree = CachedMessage(raw).head, parse_message(raw)
    specs = [
        SectionSpec(),
        SectionSpec(text="HEADER"),
        SectionSpec(text="TEXT"),
        SectionSpec(text="HEADER.FIELDS", fields=(b"SUBJECT", b"FROM", b"X-NOT-THERE")),
        SectionSpec(text="HEADER.FIELDS.NOT", fields=(b"SUBJECT", b"RECEIVED")),
    ]
    for spec in specs:
        for partial in (None, (0, 10), (7, 1000)):
            assert fetch_section(raw, head, spec, partial) == fetch_section(raw, tree, spec, partial), spec
