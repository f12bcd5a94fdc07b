"""imapserver.query under issue 12 item 4: batches on the search pool, the time budget
(``SearchTooLong`` → ``NO [LIMIT]``), and the same answers inline and on the pool."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailhouse.imapserver import query
from mailhouse.imapserver.query import MessageView, SearchTooLong
from mailhouse.proto.imap.commands import SortCriterion
from mailhouse.store.api import MessageRecord
from tests.imapserver.test_query import Box, crit


def _big_box(n: int, size: int) -> tuple[list[MessageView], dict[str, bytes]]:
    raw: dict[str, bytes] = {}
    views = []
    for i in range(n):
        body = (b"filler line %d\r\n" % i) * (size // 16) + (b"Marker%d\r\n" % (i % 3))
        data = b"Subject: m%03d\r\nMessage-ID: <%d@x>\r\n\r\n" % (n - i, i) + body
        raw[str(i)] = data
        rec = MessageRecord(1, i + 1, 1, frozenset(), 0.0, len(data), str(i))
        views.append(MessageView(i + 1, rec))
    return views, raw


def test_batches_on_the_pool_same_answers_and_bounded_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "BATCH_BYTES", 300_000)
    views, raw = _big_box(12, 100_000)
    loads: list[str] = []

    async def load(rec: MessageRecord) -> bytes:
        loads.append(rec.blob_key)
        return raw[rec.blob_key]

    found = asyncio.run(query.search(views, crit('BODY "marker1"'), load=load))
    assert [v.seq for v in found] == [2, 5, 8, 11]
    assert len(loads) == 12  # each message loaded once
    found = asyncio.run(query.search(views, crit('OR BODY "marker2" TEXT "marker0"'), load=load))
    assert [v.seq for v in found] == [1, 3, 4, 6, 7, 9, 10, 12]
    ordered = asyncio.run(query.sort(views, [SortCriterion("SUBJECT")], crit("ALL"), load=load))
    assert [v.seq for v in ordered] == list(range(12, 0, -1))
    data = asyncio.run(query.thread(views, "ORDEREDSUBJECT", crit('BODY "marker0"'), uid=True, load=load))
    assert data == b"(1)(4)(7)(10)"  # no Date: internal dates tie, then ids


def test_time_budget_raises_search_too_long() -> None:
    views, raw = _big_box(4, 200_000)

    async def load(rec: MessageRecord) -> bytes:
        return raw[rec.blob_key]

    with pytest.raises(SearchTooLong) as ei:
        asyncio.run(query.search(views, crit('BODY "nowhere"'), load=load, time_budget=0.0001))
    assert (ei.value.status, ei.value.code, ei.value.text) == ("NO", "LIMIT", "Search took too long")
    with pytest.raises(SearchTooLong):
        asyncio.run(query.sort(views, [SortCriterion("SUBJECT")], crit("ALL"), load=load, time_budget=0.0001))
    # keys the index decides need no message and no budget
    assert len(asyncio.run(query.search(views, crit("LARGER 10"), load=load, time_budget=0.0001))) == 4


def test_slow_loads_count_against_the_budget() -> None:
    views, raw = _big_box(6, 1000)

    async def load(rec: MessageRecord) -> bytes:
        await asyncio.sleep(0.05)
        return raw[rec.blob_key]

    t0 = time.monotonic()
    with pytest.raises(SearchTooLong):
        asyncio.run(query.search(views, crit('BODY "nowhere"'), load=load, time_budget=0.02))
    assert time.monotonic() - t0 < 5


def test_corpus_answers_unchanged_with_tiny_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    box = Box()
    before = {t: box.search(t) for t in ('TEXT "café"', 'BODY "straße"', 'TEXT "alice"', "NOT BODY x")}
    monkeypatch.setattr(query, "BATCH_BYTES", 1)
    monkeypatch.setattr(query, "INLINE_BYTES", 0)  # every batch on the pool
    assert {t: box.search(t) for t in before} == before
