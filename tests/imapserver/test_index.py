"""The per-process shared mailbox index (imapserver.index) and the views that follow it."""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.imapserver import index as index_mod
from mailhouse.imapserver.index import IndexRegistry, SharedIndex
from mailhouse.imapserver.query import MessageView
from mailhouse.imapserver.selected import RecentClaims, SelectedMailbox
from mailhouse.store.api import FlagMode, Mailbox, NewMessage
from mailhouse.store.sqlite.backend import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "index.db", tmp_path / "blobs")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _inbox(store: SqliteStore) -> Mailbox:
    await store.add_domain("example.org")
    acc = await store.add_account("a@example.org", "x")
    mb = await store.get_mailbox(acc.id, "INBOX")  # special mailboxes come with the account
    assert mb is not None
    return mb


async def _add(store: SqliteStore, mb: Mailbox, n: int) -> list[int]:
    recs = await store.deliver(b"Subject: hi\r\n\r\nbody\r\n", [NewMessage(mb.id, "", 0) for _ in range(n)])
    return [r.uid for r in recs]


# The registry a node would hold (ImapNode.index), one per test store; weak keys, so this
# helper keeps no store alive either.
_registries: weakref.WeakKeyDictionary[SqliteStore, IndexRegistry] = weakref.WeakKeyDictionary()


def registry(store: SqliteStore) -> IndexRegistry:
    got = _registries.get(store)
    if got is None:
        got = _registries[store] = IndexRegistry(store)
    return got


async def _open(store: SqliteStore, mb: Mailbox, *, rev2: bool = True) -> SelectedMailbox:
    fresh = await store.get_mailbox_by_id(mb.id)
    assert fresh is not None
    return await SelectedMailbox.open(
        store,
        fresh,
        RecentClaims(store),
        readonly=False,
        rev2=rev2,
        condstore=True,
        qresync=False,
        registry=registry(store),
    )


def _fresh_views(view: SelectedMailbox) -> list[tuple[int, int, frozenset[str], int, bool]]:
    return [
        (i + 1, u, view.records[u].flags, view.records[u].modseq, u in view.recent)
        for i, u in enumerate(view.uids)
    ]


def _as_tuples(views: list[MessageView]) -> list[tuple[int, int, frozenset[str], int, bool]]:
    return [(v.seq, v.record.uid, v.record.flags, v.record.modseq, v.recent) for v in views]


async def _store_state(store: SqliteStore, mb: Mailbox) -> dict[int, tuple[frozenset[str], int]]:
    return {r.uid: (r.flags, r.modseq) for r in await store.list_messages(mb.id)}


async def test_sessions_share_one_index_and_follow_changes(store: SqliteStore) -> None:
    mb = await _inbox(store)
    await _add(store, mb, 5)
    a = await _open(store, mb)
    b = await _open(store, mb)
    assert a.index is b.index and a.index is not None
    assert a.uids == [1, 2, 3, 4, 5] and a.records is not a.index.records  # a snapshot, not the index
    await store.store_flags(mb.id, [2], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.expunge(mb.id, [3])
    await _add(store, mb, 2)
    await a.refresh()
    assert a.pending_expunge == {3} and sorted(a.pending_new) == [6, 7] and 2 in a.pending_flags
    out = await a.updates(None, allow_expunge=True)
    assert b"* 3 EXPUNGE" in out and b"* 6 EXISTS" in out and b"FLAGS (\\Seen)" in out
    assert a.uids == [1, 2, 4, 5, 6, 7]
    # b consumes the same log later, from its own position
    await b.refresh()
    await b.updates(None, allow_expunge=True)
    assert b.uids == a.uids
    assert {u: (r.flags, r.modseq) for u, r in b.records.items()} == await _store_state(store, mb)
    assert b.known_modseq == (await store.get_mailbox_by_id(mb.id)).highestmodseq  # type: ignore[union-attr]


async def test_reselect_reuses_the_index_and_sees_new_mail(store: SqliteStore) -> None:
    mb = await _inbox(store)
    await _add(store, mb, 3)
    a = await _open(store, mb)
    idx = a.index
    del a  # no session holds it now: the registry's recent list keeps it
    await _add(store, mb, 1)
    b = await _open(store, mb)
    assert b.index is idx
    assert b.uids == [1, 2, 3, 4]
    assert b.mailbox.uidnext == 5 and b.known_modseq == b.mailbox.highestmodseq


async def test_deleted_mailbox_is_reported(store: SqliteStore) -> None:
    mb = await _inbox(store)
    await _add(store, mb, 2)
    a = await _open(store, mb)
    await store.delete_mailbox(mb.id)
    await a.refresh()
    assert a.deleted
    again = await store.create_mailbox(mb.account_id, "INBOX")
    b = await _open(store, again)  # a new index for the new UIDVALIDITY
    assert b.index is not a.index and b.uids == []


async def test_session_behind_a_trimmed_log_reads_the_store(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_mod, "LOG_KEEP", 4)
    mb = await _inbox(store)
    await _add(store, mb, 3)
    slow = await _open(store, mb)
    fast = await _open(store, mb)
    for i in range(6):  # each sync adds to the log; fast keeps up, slow does not
        await store.store_flags(mb.id, [1 + i % 3], FlagMode.REPLACE, frozenset({f"k{i}"}))
        await fast.refresh()
        await fast.updates(None, allow_expunge=True)
    assert slow.index is not None and slow.index.since(slow.index_pos) is None  # trimmed past it
    await store.expunge(mb.id, [2])
    await slow.refresh()
    await slow.updates(None, allow_expunge=True)
    assert slow.uids == [1, 3]
    assert {u: (r.flags, r.modseq) for u, r in slow.records.items()} == await _store_state(store, mb)


async def test_sync_is_coalesced_but_never_misses_an_earlier_commit(store: SqliteStore) -> None:
    mb = await _inbox(store)
    await _add(store, mb, 1)
    idx = SharedIndex(store, mb)
    await idx.sync()
    calls = 0
    gate = asyncio.Event()
    real = store.get_mailbox_by_id

    async def counted(mailbox_id: int) -> Mailbox | None:
        nonlocal calls
        calls += 1
        got = await real(mailbox_id)
        if calls == 1:
            await gate.wait()  # hold the first sync after it read the row
        return got

    store.get_mailbox_by_id = counted  # type: ignore[method-assign]
    # a commit, so the next sync reads the row (with nothing committed it would skip the read)
    await store.store_flags(mb.id, [1], FlagMode.ADD, frozenset({"\\Seen"}))
    first = asyncio.ensure_future(idx.sync())
    for _ in range(500):  # until the first sync has read the row (bounded)
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == 1
    await _add(store, mb, 1)  # committed after the running sync read the row
    late = [asyncio.ensure_future(idx.sync()) for _ in range(5)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *late)
    assert calls == 2  # one running sync plus one shared by the five that came later
    assert idx.uids == [1, 2]  # the later callers saw the message committed before they asked


async def test_views_stay_equal_to_a_fresh_build(store: SqliteStore) -> None:
    rng = random.Random(7)
    mb = await _inbox(store)
    await _add(store, mb, 30)
    view = await _open(store, mb, rev2=False)
    claims = RecentClaims(store)
    assert _as_tuples(view.views()) == _fresh_views(view)
    for _ in range(40):
        op = rng.choice(["flag", "own-flag", "append", "expunge", "sync", "sync-noexpunge"])
        live = view.uids
        if op == "flag" and live:
            await store.store_flags(
                mb.id, [rng.choice(live)], FlagMode.ADD, frozenset({rng.choice(["\\Seen", "x"])})
            )
        elif op == "own-flag" and live:
            res = await store.store_flags(
                mb.id, [rng.choice(live)], FlagMode.REPLACE, frozenset({"\\Flagged"})
            )
            for rec in res.updated:
                view.set_record(rec)
        elif op == "append":
            await _add(store, mb, rng.randint(1, 3))
        elif op == "expunge" and live:
            await store.expunge(mb.id, rng.sample(live, min(len(live), rng.randint(1, 3))))
        else:
            await view.refresh()
            await view.updates(claims, allow_expunge=op == "sync")
        views = view.views()
        assert _as_tuples(views) == _fresh_views(view)
    await view.refresh()
    await view.updates(claims, allow_expunge=True)
    assert {u: (r.flags, r.modseq) for u, r in view.records.items()} == await _store_state(store, mb)
    assert registry(store).live.get(mb.id) is view.index


async def test_reselect_adopts_the_previous_views(store: SqliteStore) -> None:
    mb = await _inbox(store)
    await _add(store, mb, 20)
    old = await _open(store, mb, rev2=False)
    first = old.views()
    await store.store_flags(mb.id, [3], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.expunge(mb.id, [19, 20])
    await _add(store, mb, 2)
    fresh = await store.get_mailbox_by_id(mb.id)
    assert fresh is not None
    new = await SelectedMailbox.open(
        store,
        fresh,
        RecentClaims(store),
        readonly=False,
        rev2=False,
        condstore=True,
        qresync=False,
        registry=registry(store),
        previous=old,
    )
    views = new.views()
    assert views[0] is first[0]  # the common prefix (UIDs 1-18) was taken over
    assert _as_tuples(views) == _fresh_views(new)
    assert views[2].record.flags == frozenset({"\\Seen"}) and [v.record.uid for v in views[-3:]] == [
        18,
        21,
        22,
    ]


async def test_registry_does_not_keep_a_store_alive(tmp_path: Path) -> None:
    import gc
    import weakref

    s = SqliteStore(tmp_path / "x.db", tmp_path / "xb")
    await s.open()
    mb = await _inbox(s)
    await _add(s, mb, 2)
    view = await _open(s, mb)
    assert view.index is not None and view.index in registry(s).recent.values()
    await s.close()
    gone = weakref.ref(s)
    del s, view
    gc.collect()
    assert gone() is None


class _CountingStore(SqliteStore):
    """A real store that counts the mailbox-row reads a sync makes."""

    row_reads = 0

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        self.row_reads += 1
        return await super().get_mailbox_by_id(mailbox_id)


async def test_sync_skips_the_row_read_until_something_commits(tmp_path: Path) -> None:
    """issue 13 §2: a command's sync reads the mailbox row only when the store committed anything
    since the last sync began (SQLite's data_version), yet still sees every commit — this
    process's, and another worker's through its own connection to the same file."""
    store = _CountingStore(tmp_path / "index.db", tmp_path / "blobs")
    other = SqliteStore(tmp_path / "index.db", tmp_path / "blobs")  # another worker process's store
    await store.open()
    await other.open()
    try:
        mb = await _inbox(store)
        await _add(store, mb, 3)
        view = await _open(store, mb)
        await view.refresh()  # the first sync after SELECT takes its mark
        before = store.row_reads
        for _ in range(5):
            await view.refresh()
        assert store.row_reads == before  # nothing committed: no row read
        await _add(other, mb, 1)
        await view.refresh()
        assert sorted(view.pending_new) == [4] and store.row_reads == before + 1
        await other.store_flags(mb.id, [1], FlagMode.ADD, frozenset({"\\Flagged"}))
        await view.refresh()
        assert 1 in view.pending_flags
        await store.expunge(mb.id, [2])
        await view.refresh()
        assert view.pending_expunge == {2}
        reads = store.row_reads
        await view.refresh()
        assert store.row_reads == reads
        await other.delete_mailbox(mb.id)
        await view.refresh()
        assert view.deleted
    finally:
        await other.close()
        await store.close()
