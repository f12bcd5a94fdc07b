"""The full-text index (issue 13 §4) on every backend: written with the messages, removed with
the blobs, backfilled, cleared; searches see unindexed messages as candidates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.message import fts_text
from mailhouse.store import open_store
from mailhouse.store.api import DocState, FlagMode, FtsQuery, IndexDoc, NewMessage, Store
from mailhouse.store.backend import FtsDocIds
from mailhouse.store.fts import Indexer


def _open(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest, indexer: Indexer | None
) -> Store:
    if store_backend == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path, indexer=indexer)
    return open_store(request.getfixturevalue("postgres_db_url"), tmp_path, indexer=indexer)


@pytest.fixture
async def store(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    s = _open(store_backend, tmp_path, request, fts_text.extract)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _inbox(store: Store) -> int:
    await store.add_domain("example.org")
    acc = await store.add_account("alice@example.org", "hash")
    mb = await store.get_mailbox(acc.id, "INBOX")
    assert mb is not None
    return mb.id


def _q(key: str, needle: str) -> FtsQuery:
    q = fts_text.query_for(key, needle)
    assert q is not None
    return q


MSG1 = b"Subject: Quarterly report\r\nFrom: Bob <bob@remote.test>\r\n\r\nThe swordfish swims north.\r\n"
MSG2 = b"Subject: lunch\r\nFrom: Carol <carol@remote.test>\r\n\r\nPizza at noon?\r\n"


async def test_delivered_messages_are_indexed(store: Store) -> None:
    mb = await _inbox(store)
    await store.deliver(MSG1, [NewMessage(mb, "", 0)])
    await store.deliver(MSG2, [NewMessage(mb, "", 0)])
    got = await store.search_index(
        mb, [_q("BODY", "swordfish"), _q("BODY", "word"), _q("SUBJECT", "lunch"), _q("BODY", "at noon")]
    )
    assert got.hits == [{1}, {1}, {2}, {2}]
    assert got.unindexed == set()
    assert await store.index_backlog(10) == []


async def test_append_with_bodies_copy_and_expunge(store: Store) -> None:
    mb = await _inbox(store)
    key = await store.blobs.put(MSG1)
    await store.append([NewMessage(mb, key, len(MSG1))], bodies=[MSG1])
    acc = await store.get_account("alice@example.org")
    assert acc is not None
    other = await store.create_mailbox(acc.id, "Other")
    await store.copy(mb, [1], other.id)  # the blob's document serves the copy
    assert (await store.search_index(other.id, [_q("BODY", "swordfish")])).hits == [{1}]
    await store.expunge(mb, [1])
    assert (await store.search_index(other.id, [_q("BODY", "swordfish")])).hits == [{1}]
    await store.expunge(other.id, [1])  # the blob is freed: its document goes in the same transaction
    assert (await store.search_index(other.id, [_q("BODY", "swordfish")])).hits == [set()]


async def test_unindexed_messages_are_candidates_until_backfilled(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    plain = _open(store_backend, tmp_path, request, None)  # a store from before the index
    await plain.open()
    try:
        mb = await _inbox(plain)
        await plain.deliver(MSG1, [NewMessage(mb, "", 0)])
        await plain.deliver(MSG2, [NewMessage(mb, "", 0)])
        got = await plain.search_index(mb, [_q("BODY", "swordfish")])
        assert got.hits == [set()] and got.unindexed == {1, 2}
        keys = await plain.index_backlog(10)
        assert len(keys) == 2
        docs = [(k, fts_text.extract(await plain.blobs.get(k))) for k in keys]
        assert await plain.add_index_docs(docs + [("gone-key", IndexDoc(DocState.FAILED))]) == 2
        got = await plain.search_index(mb, [_q("BODY", "swordfish")])  # the generation moved: no stale cache
        assert got.hits == [{1}] and got.unindexed == set()
        assert await plain.index_backlog(10) == []
        assert await plain.clear_index() == 2
        assert (await plain.search_index(mb, [_q("BODY", "swordfish")])).unindexed == {1, 2}
    finally:
        await plain.close()


async def test_unindexable_message_is_delivered_and_scanned(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    def broken(raw: bytes) -> IndexDoc:
        raise RuntimeError("indexer bug")

    s = _open(store_backend, tmp_path, request, broken)
    await s.open()
    try:
        mb = await _inbox(s)
        recs = await s.deliver(MSG1, [NewMessage(mb, "", 0)])  # never fails a delivery
        assert [r.uid for r in recs] == [1]
        got = await s.search_index(mb, [_q("BODY", "swordfish")])
        assert got.hits == [set()] and got.unindexed == {1}
        assert await s.index_backlog(10) == []  # marked FAILED, not left for the backfill
    finally:
        await s.close()


async def test_text_over_the_cap_is_partial(store: Store) -> None:
    mb = await _inbox(store)
    big = b"Subject: big\r\n\r\n" + b"word " * (fts_text.MAX_TEXT // 5 + 10) + b"\r\n"
    await store.deliver(big, [NewMessage(mb, "", 0)])
    got = await store.search_index(mb, [_q("BODY", "word")])
    assert got.hits == [set()] and got.unindexed == {1}


async def test_document_ids_map_index_hits_to_uids(store: Store, store_backend: str) -> None:
    """The id primitives a search answers from (`store/fts.py` `_Snapshot`): one row per
    message, its INDEXED document's id (None: unindexed); a match gives document ids only."""
    mb = await _inbox(store)
    await store.deliver(MSG1, [NewMessage(mb, "", 0)])
    await store.deliver(MSG2, [NewMessage(mb, "", 0)])
    backend = store.backend  # type: ignore[attr-defined]
    if store_backend == "postgres":  # documents keyed by blob key: the search joins in SQL

        async def has_ids(tx: object) -> bool:
            return isinstance(tx, FtsDocIds)

        assert not await backend.read(has_ids)
        return
    rows = await backend.read(lambda tx: tx.fts_doc_uids(mb))
    assert sorted(u for u, _ in rows) == [1, 2] and all(d is not None for _, d in rows)
    doc_of = dict(rows)
    assert await backend.read(lambda tx: tx.fts_match_docs(_q("BODY", "swordfish"))) == [doc_of[1]]


async def test_search_follows_copies_expunges_and_flags(store: Store) -> None:
    """The per-mailbox snapshot of a search is renewed by every MODSEQ: a blob copied within the
    mailbox hits under both UIDs, an expunged UID goes, a new message comes."""
    mb = await _inbox(store)
    await store.deliver(MSG1, [NewMessage(mb, "", 0)])
    q = [_q("BODY", "swordfish")]
    assert (await store.search_index(mb, q)).hits == [{1}]
    await store.copy(mb, [1], mb)
    assert (await store.search_index(mb, q)).hits == [{1, 2}]
    await store.expunge(mb, [1])
    assert (await store.search_index(mb, q)).hits == [{2}]
    await store.deliver(MSG1.replace(b"north", b"south"), [NewMessage(mb, "", 0)])
    assert (await store.search_index(mb, q)).hits == [{2, 3}]


async def test_flag_changes_keep_the_search_maps(store: Store) -> None:
    """Flags change no document and no UID: a STORE must not cost the next search an
    O(mailbox) rebuild of its maps (issue 13 §4, p99 on 100,000 messages)."""
    mb = await _inbox(store)
    await store.deliver(MSG1, [NewMessage(mb, "", 0)])
    await store.deliver(MSG2, [NewMessage(mb, "", 0)])
    q = [_q("BODY", "swordfish")]
    assert (await store.search_index(mb, q)).hits == [{1}]
    cache = store._unindexed  # type: ignore[attr-defined]
    before = cache[mb]
    await store.store_flags(mb, [1, 2], FlagMode.ADD, frozenset({"\\Seen", "$Label1"}))
    assert (await store.search_index(mb, q)).hits == [{1}]
    after = cache[mb]
    assert after.modseq > before.modseq
    assert after.uid_of is before.uid_of and after.unindexed is before.unindexed


async def test_updated_search_maps_equal_a_rebuild(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The maps brought forward change by change (copies within the mailbox, expunges of a
    first or a further UID of one document, new and unindexed messages) answer as maps built
    from scratch do, on both backends."""

    def extract(raw: bytes) -> IndexDoc:  # a message marked "unindexable" gets no document
        return IndexDoc(DocState.FAILED) if b"unindexable" in raw else fts_text.extract(raw)

    store = _open(store_backend, tmp_path, request, extract)
    await store.open()
    try:
        mb = await _inbox(store)
        qs = [_q("BODY", "swordfish"), _q("BODY", "pizza"), _q("SUBJECT", "lunch")]
        cache = store._unindexed  # type: ignore[attr-defined]

        async def same() -> None:
            got = await store.search_index(mb, qs)
            cache.clear()
            fresh = await store.search_index(mb, qs)
            assert got.hits == fresh.hits and got.unindexed == fresh.unindexed

        await store.deliver(MSG1, [NewMessage(mb, "", 0)])  # 1
        await store.deliver(MSG2, [NewMessage(mb, "", 0)])  # 2
        await same()
        await store.copy(mb, [1, 2], mb)  # 3, 4: the same documents again
        await same()
        await store.copy(mb, [1], mb)  # 5
        await store.expunge(mb, [1])  # the first UID of a document with two more
        await same()
        await store.expunge(mb, [5])  # a further UID
        await store.store_flags(mb, [3], FlagMode.ADD, frozenset({"\\Flagged"}))
        await same()
        await store.deliver(MSG2 + b"unindexable\r\n", [NewMessage(mb, "", 0)])  # 6: no document
        assert (await store.search_index(mb, qs)).unindexed == {6}
        await same()
        await store.expunge(mb, [3, 4, 6])
        await same()
        got = await store.search_index(mb, qs)
        assert got.hits == [set(), {2}, {2}] and got.unindexed == set()
    finally:
        await store.close()


async def test_sqlite_fts5_buffers_a_batch_in_memory(tmp_path: Path) -> None:
    """FTS5's ``hashsize`` is raised from its 1 MiB default (store/sqlite/fts.py: a backfill or an
    import spent 2/3 of its time flushing and merging small segments), also in an existing database."""
    import sqlite3

    from mailhouse.store.sqlite import fts as sqlite_fts

    def hashsize() -> object:
        c = sqlite3.connect(tmp_path / "mh.db")
        try:
            row = c.execute("SELECT v FROM fts_terms_config WHERE k = 'hashsize'").fetchone()
            return row[0] if row else None
        finally:
            c.close()

    for _ in range(2):  # a new database, then the same one reopened (nothing to change)
        s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
        await s.open()
        await s.close()
        assert hashsize() == sqlite_fts.HASHSIZE
