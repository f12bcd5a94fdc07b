"""The webmail's message search: bounded in memory and time, off the event loop.

Issue 12 items 1 and 4. A query (``from:``, ``to:``, ``subject:``, ``body:`` or bare words, all
of which must match) is matched one message at a time on this module's pool (:func:`pool`, a
bounded :class:`mailhouse.runtime.offload.Offload`): the MIME parse, the header keys and the
windowed body scan of :mod:`mailhouse.message.search` (which never decodes or folds a part
whole). HTML parts are also matched as text: the first HTML part's decoded text, at most
:data:`MAX_HTML_SEARCH` characters, through :func:`mailhouse.web.sanitize.html_to_text`.

Invariants: at most one message's octets per search are held at a time; a search runs at most
``[limits] search_time_budget`` seconds and then returns what it found so far with
``too_long`` set (the page says so); nothing here runs message-sized work on the event loop.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from mailhouse.message import fts_text
from mailhouse.message.parse import MessagePart, iter_parts, parse_message
from mailhouse.message.search import (
    SearchLimits,
    SearchTimeout,
    body_matches,
    header_matches,
    iter_text_windows,
)
from mailhouse.runtime.offload import Offload, Overloaded, TimedOut
from mailhouse.store.api import FtsQuery, FtsTerm, MessageRecord, Store, Tag
from mailhouse.web.sanitize import MAX_HTML_INPUT, html_to_text

__all__ = ["MAX_HTML_SEARCH", "TOO_LONG_NOTICE", "SearchResult", "match_message", "pool", "search", "terms"]

# Characters of an HTML part turned into text for matching (the sanitiser's own input cap).
MAX_HTML_SEARCH = MAX_HTML_INPUT
POOL_WORKERS = 2
POOL_QUEUE = 16
TOO_LONG_NOTICE = "The search took too long and was stopped; these are the messages found so far."

_pool: Offload | None = None
_pool_lock = threading.Lock()


def pool() -> Offload:
    """The per-process webmail search pool, made on first use (after any fork); each job stops
    itself at its search's deadline, the pool's own budget is a backstop."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Offload(workers=POOL_WORKERS, queue=POOL_QUEUE, budget=3600.0, name="websearch")
        return _pool


def terms(q: str) -> list[tuple[str, str]]:
    """``from:x to:"a b" word`` → ``[("from", "x"), ("to", "a b"), ("any", "word")]``."""
    out = []
    for m in re.finditer(r'(?:(from|to|subject|body):)?(?:"([^"]*)"|(\S+))', q):
        out.append((m.group(1) or "any", m.group(2) if m.group(2) is not None else m.group(3)))
    return [(k, v) for k, v in out if v]


def _html_text(raw: bytes, tree: MessagePart, limits: SearchLimits) -> str:
    """The first inline HTML part as text, from at most ``MAX_HTML_SEARCH`` decoded characters."""
    for p in iter_parts(tree):
        if p.children or p.type != "text" or p.subtype != "html" or p.disposition == "attachment":
            continue
        got: list[str] = []
        n = 0
        for w in iter_text_windows(raw, p, limits):
            got.append(w[: MAX_HTML_SEARCH - n])
            n += len(got[-1])
            if n >= MAX_HTML_SEARCH:
                break
        return html_to_text("".join(got))
    return ""


def match_message(raw: bytes, query: list[tuple[str, str]], limits: SearchLimits) -> bool:
    """Does the message match every term? (Runs on the pool; SearchTimeout past the deadline.)"""
    tree = parse_message(raw)
    html: str | None = None
    for kind, needle in query:
        hit = False
        if kind in ("any", "subject"):
            hit = header_matches(raw, tree, "subject", needle)
        if kind in ("any", "from") and not hit:
            hit = header_matches(raw, tree, "from", needle)
        if kind in ("any", "to") and not hit:
            hit = any(header_matches(raw, tree, h, needle) for h in ("to", "cc"))
        if kind in ("any", "body") and not hit:
            hit = body_matches(raw, tree, needle, limits=limits)
            if not hit:
                if html is None:
                    html = _html_text(raw, tree, limits).casefold()
                hit = needle.casefold() in html
        if not hit:
            return False
    return True


@dataclass(frozen=True, slots=True)
class SearchResult:
    found: list[MessageRecord]
    too_long: bool = False


async def search(
    store: Store,
    recs: list[MessageRecord],
    q: str,
    *,
    time_budget: float,
    max_decoded_bytes: int,
) -> SearchResult:
    """The records matching ``q``, in the given order; stops at the time budget."""
    query = terms(q)
    if not query:
        return SearchResult(list(recs))
    deadline = time.monotonic() + time_budget
    limits = SearchLimits(max_decoded_bytes=max_decoded_bytes, deadline=deadline)
    found: list[MessageRecord] = []
    narrowed = await _narrow(store, recs, query, exact_ok=max_decoded_bytes >= fts_text.MAX_TEXT)
    for r in recs:
        if narrowed is not None:  # issue 13 §4: the word index narrows, match_message confirms
            if r.uid in narrowed[1]:
                found.append(r)
                continue
            if r.uid not in narrowed[0]:
                continue
        try:
            if await _one(store, r, query, limits, deadline):
                found.append(r)
        except (SearchTimeout, TimedOut, TimeoutError):
            return SearchResult(found, too_long=True)
        except FileNotFoundError:
            continue  # expunged meanwhile
    return SearchResult(found)


# The store's keys a webmail term reads (`match_message`): "body" also matches the stripped HTML,
# which the index does not hold — a message with an inline HTML part stays a candidate.
_TERM_KEYS = {
    "any": ("SUBJECT", "FROM", "TO", "CC", "BODY"),
    "subject": ("SUBJECT",),
    "from": ("FROM",),
    "to": ("TO", "CC"),
    "body": ("BODY",),
}
_HTML = FtsQuery((FtsTerm((Tag.HTML,), "html", False),))


async def _narrow(
    store: Store, recs: list[MessageRecord], query: list[tuple[str, str]], *, exact_ok: bool
) -> tuple[frozenset[int], frozenset[int]] | None:
    """(candidate UIDs, UIDs known to match) from the full-text index, or None (scan all)."""
    if not recs or any(r.mailbox_id != recs[0].mailbox_id for r in recs):
        return None
    plan: list[list[FtsQuery]] = []  # per term, the queries whose union is its candidates
    for kind, needle in query:
        asked = [fts_text.query_for(k, needle.casefold()) for k in _TERM_KEYS[kind]]
        if any(q is None for q in asked):
            continue  # this term cannot narrow; the others still may
        plan.append([q for q in asked if q is not None] + ([_HTML] if kind in ("any", "body") else []))
    if not plan:
        return None
    try:
        got = await store.search_index(recs[0].mailbox_id, [q for qs in plan for q in qs])
    except Exception:  # noqa: BLE001 - an index fault costs speed, never a result
        return None
    cand: frozenset[int] | None = None
    sure: frozenset[int] | None = None
    hits = iter(got.hits)
    for qs in plan:
        term_hits = [next(hits) for _ in qs]
        c = frozenset().union(*term_hits) | got.unindexed
        s = frozenset().union(*(h for q, h in zip(qs, term_hits, strict=True) if q.exact and exact_ok))
        cand = c if cand is None else cand & c
        sure = s if sure is None else sure & s
    if len(plan) < len(query):
        sure = frozenset()  # a term the index cannot answer must be matched by the scan
    assert cand is not None and sure is not None
    return cand, sure


async def _one(
    store: Store, r: MessageRecord, query: list[tuple[str, str]], limits: SearchLimits, deadline: float
) -> bool:
    raw: Any = await store.blobs.get(r.blob_key)  # one message's octets at a time
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SearchTimeout
        try:
            return bool(await asyncio.wait_for(pool().run(match_message, raw, query, limits), left + 1.0))
        except Overloaded:
            await asyncio.sleep(min(0.05, left))
