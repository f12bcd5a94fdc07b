"""A bounded cache of parsed messages, keyed by blob key (the IMAP server keeps one per node).

Blobs are immutable (a key names one octet string forever; a changed message gets a new key),
so an entry never goes stale: it only has to be evicted for memory. One entry holds

* the raw octets and their MIME tree (:func:`mailhouse.message.parse.parse_message`),
* the SEARCH index (:class:`mailhouse.message.search.SearchIndex`: header text decoded and
  case-folded once, body-scan answers per needle; built on first use),
* encoded per-message FETCH items (ENVELOPE, BODYSTRUCTURE, BODY; THREADID, PREVIEW) in
  ``structs``; ENVELOPE needs only the header section (``head``), so a header FETCH parses no
  MIME tree,
* the address fields as SEARCH FROM/TO/CC/BCC compare them (:meth:`CachedMessage.addresses`:
  :func:`mailhouse.message.envelope.address_search_text`, case-folded, once per field).

The cache is an LRU bounded by an *estimate* of the bytes an entry keeps alive
(:func:`entry_cost`); an entry bigger than an eighth of the budget is returned but not kept, so
one huge message cannot flush the working set. Not thread-safe: one event loop per process.
"""

from __future__ import annotations

import collections

from mailhouse.message.envelope import address_search_text
from mailhouse.message.headers import split_header_block
from mailhouse.message.parse import MessagePart, parse_message
from mailhouse.message.search import SearchIndex

__all__ = ["PARSED_CACHE_BYTES", "CachedMessage", "MessageCache", "entry_cost"]

# 64 MiB: the raw octets, trees and decoded text of ~4,000 typical (8 KiB) messages, i.e. the
# whole working set of a few busy mailboxes, so repeated SEARCH BODY/TEXT and FETCH ENVELOPE
# never re-read or re-parse; small next to the worker's other memory, and a fixed bound per
# process (not per connection) so idle connections cost nothing here.
PARSED_CACHE_BYTES = 64 * 1024 * 1024
# Rough allowance for the Python objects of the MIME tree (slots, header lists, tuples) and the
# SEARCH index's header strings, per entry: part of the estimate below.
_TREE_OVERHEAD = 4096


def entry_cost(raw: bytes) -> int:
    """Estimated bytes one entry keeps alive: the octets, the decoded text (at most about the
    octets again: decoding never grows ASCII text, and text parts are a subset of the message)
    and the tree's objects. Known before parsing, so an entry's cost never changes."""
    return 2 * len(raw) + _TREE_OVERHEAD


class CachedMessage:
    """One message and what was derived from it; immutable as its blob. The MIME tree is
    parsed on first use (an entry made at APPEND costs no parse until someone reads it)."""

    __slots__ = ("raw", "structs", "cost", "_tree", "_index", "_addresses")

    def __init__(self, raw: bytes, tree: MessagePart | None = None) -> None:
        self.raw = raw
        self._tree = tree
        self.structs: dict[str, bytes] = {}
        self.cost = entry_cost(raw)
        self._index: SearchIndex | None = None
        self._addresses: dict[bytes, tuple[str, ...]] | None = None

    @property
    def tree(self) -> MessagePart:
        if self._tree is None:
            self._tree = parse_message(self.raw)
        return self._tree

    def addresses(self, name: bytes) -> tuple[str, ...]:
        """The top-level ``name`` fields (lower-case name) written as addresses and case-folded
        (SEARCH FROM/TO/CC/BCC, RFC 9051 §6.4.4), computed once per field. Safe from one worker
        thread at a time (a race only computes twice)."""
        got = self._addresses.get(name) if self._addresses is not None else None
        if got is None:
            got = tuple(address_search_text(v).casefold() for v in self.tree.get_all(name))
            if self._addresses is None:
                self._addresses = {}
            self._addresses[name] = got
        return got

    @property
    def head(self) -> MessagePart:
        """The root's header fields and ranges only (no MIME walk): enough for ENVELOPE (RFC
        9051 §7.5.2 reads the top-level header) and for the top-level sections ``BODY[]``,
        ``[HEADER]``, ``[TEXT]``, ``[HEADER.FIELDS ...]``, so header and whole-message FETCHes
        never parse bodies. The full tree when already parsed; else made for the caller, not kept."""
        if self._tree is not None:
            return self._tree
        n = len(self.raw)
        fields, spans, end = split_header_block(self.raw, 0, n)
        # the root's ranges as parse_message sets them: header [0, end), body [end, n)
        return MessagePart(
            header_start=0, header_end=end, body_start=end, body_end=n, headers=fields, header_spans=spans
        )

    @property
    def index(self) -> SearchIndex:
        """The SEARCH text index, built on first use."""
        if self._index is None:
            self._index = SearchIndex(self.raw, self.tree)
        return self._index


class MessageCache:
    """LRU of :class:`CachedMessage` by blob key, bounded by the sum of ``cost``."""

    def __init__(self, max_bytes: int = PARSED_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._d: collections.OrderedDict[str, CachedMessage] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: str) -> CachedMessage | None:
        hit = self._d.get(key)
        if hit is not None:
            self._d.move_to_end(key)
        return hit

    def put(self, key: str, entry: CachedMessage) -> CachedMessage:
        """Keep ``entry`` (unless too big) and return what the cache now holds for ``key``."""
        old = self._d.get(key)
        if old is not None:
            self._d.move_to_end(key)
            return old  # a concurrent load won: keep one copy (same immutable blob)
        if entry.cost > self.max_bytes // 8:
            return entry
        self._d[key] = entry
        self.total += entry.cost
        while self.total > self.max_bytes and self._d:
            _, gone = self._d.popitem(last=False)
            self.total -= gone.cost
        return entry

    def clear(self) -> None:
        self._d.clear()
        self.total = 0
