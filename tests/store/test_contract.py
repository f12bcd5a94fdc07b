"""The store contract: every backend must pass these (DESIGN.md §store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store import contacts, open_store
from mailhouse.store.api import (
    AlreadyExists,
    Change,
    ChangeKind,
    Contact,
    ContactError,
    FlagMode,
    NewMessage,
    NotFound,
    QueueEntry,
    QueueRecipient,
    QueueStatus,
    Store,
    SuggestionKind,
)


@pytest.fixture
async def store(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if store_backend == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    else:
        pg = request.getfixturevalue("postgres_db_url")
        s = open_store(pg, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _account(store: Store, addr: str = "alice@example.org") -> int:
    domain = addr.split("@")[1]
    if not await store.get_domain(domain):
        await store.add_domain(domain)
    acc = await store.add_account(addr, "hash")
    return acc.id


async def test_domains(store: Store) -> None:
    await store.add_domain("example.org")
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.org")
    assert [d.name for d in await store.list_domains()] == ["example.org"]
    await store.remove_domain("example.org")
    assert await store.get_domain("example.org") is None
    with pytest.raises(NotFound):
        await store.remove_domain("example.org")


async def test_account_gets_special_mailboxes(store: Store) -> None:
    acc = await _account(store)
    boxes = {m.name: m.special_use for m in await store.list_mailboxes(acc)}
    assert boxes == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    with pytest.raises(AlreadyExists):
        await store.add_account("alice@example.org", "x")
    with pytest.raises(NotFound):
        await store.add_account("bob@nowhere.test", "x")


async def test_domain_with_accounts_cannot_be_removed(store: Store) -> None:
    await _account(store)
    with pytest.raises(AlreadyExists):
        await store.remove_domain("example.org")


async def test_uids_increase_and_modseq(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox is not None
    recs = await store.deliver(b"Subject: a\r\n\r\nbody\r\n", [NewMessage(inbox.id, "", 0)])
    recs += await store.deliver(b"Subject: b\r\n\r\nbody\r\n", [NewMessage(inbox.id, "", 0)])
    assert [r.uid for r in recs] == [1, 2]
    assert recs[1].modseq > recs[0].modseq
    assert recs[0].size == len(b"Subject: a\r\n\r\nbody\r\n")
    assert await store.blobs.get(recs[0].blob_key) == b"Subject: a\r\n\r\nbody\r\n"
    mb = await store.get_mailbox_by_id(inbox.id)
    assert mb is not None and mb.uidnext == 3 and mb.highestmodseq == recs[1].modseq
    # expunge the last one: its UID is never reused
    gone, keys = await store.expunge(inbox.id, [2])
    assert gone == [2] and keys == [recs[1].blob_key]
    with pytest.raises(FileNotFoundError):
        await store.blobs.get(recs[1].blob_key)
    r3 = await store.deliver(b"x\r\n", [NewMessage(inbox.id, "", 0)])
    assert r3[0].uid == 3
    assert await store.expunged_since(inbox.id, recs[1].modseq) == [2]


async def test_delivery_key_is_idempotent(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    a = await store.deliver(b"m\r\n", [NewMessage(inbox.id, "", 0, delivery_key="Q1:alice")])
    b = await store.deliver(b"m\r\n", [NewMessage(inbox.id, "", 0, delivery_key="Q1:alice")])
    assert a[0].uid == b[0].uid
    assert len(await store.list_messages(inbox.id)) == 1
    assert (await store.usage(acc)).messages == 1


async def test_flags_and_unchangedsince(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    recs = await store.deliver(b"m\r\n", [NewMessage(inbox.id, "", 0, flags=frozenset({"\\Seen"}))])
    uid, m0 = recs[0].uid, recs[0].modseq
    res = await store.store_flags(inbox.id, [uid], FlagMode.ADD, frozenset({"\\Flagged", "$Label1"}))
    assert res.updated[0].flags == {"\\Seen", "\\Flagged", "$Label1"} and res.updated[0].modseq > m0
    res2 = await store.store_flags(
        inbox.id, [uid], FlagMode.REMOVE, frozenset({"\\Seen"}), unchanged_since=m0
    )
    assert res2.failed_uids == [uid] and not res2.updated
    res3 = await store.store_flags(inbox.id, [uid], FlagMode.REPLACE, frozenset({"\\Answered"}))
    assert res3.updated[0].flags == {"\\Answered"}
    changed = await store.changed_since(inbox.id, m0)
    assert [c.uid for c in changed] == [uid]


async def test_copy_move_and_usage(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    arch = await store.get_mailbox(acc, "Archive")
    assert inbox and arch
    recs = await store.deliver(b"hello\r\n", [NewMessage(inbox.id, "", 0, flags=frozenset({"\\Seen"}))])
    pairs = await store.copy(inbox.id, [recs[0].uid], arch.id)
    assert pairs == [(1, 1)]
    assert (await store.usage(acc)).messages == 2
    moved = await store.move(inbox.id, [1], arch.id)
    assert moved == [(1, 2)]
    assert await store.list_messages(inbox.id) == []
    in_arch = await store.list_messages(arch.id)
    assert [m.flags for m in in_arch] == [frozenset({"\\Seen"})] * 2
    assert (await store.usage(acc)).messages == 2
    # the blob survives while a copy references it
    assert await store.blobs.get(in_arch[0].blob_key) == b"hello\r\n"


async def test_emailid_given_once_and_kept_by_copy_and_move(store: Store) -> None:
    """RFC 8474 §5.1: a new content instance gets an EMAILID (an objectid, §7), COPY and MOVE
    keep it, the same octets delivered again get another; reads from any path agree."""
    import re

    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    arch = await store.get_mailbox(acc, "Archive")
    assert inbox and arch
    first = (await store.deliver(b"same\r\n", [NewMessage(inbox.id, "", 0)]))[0]
    second = (await store.deliver(b"same\r\n", [NewMessage(inbox.id, "", 0)]))[0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", first.emailid) and first.emailid != second.emailid
    assert [m.emailid for m in await store.list_messages(inbox.id)] == [first.emailid, second.emailid]
    await store.copy(inbox.id, [first.uid], arch.id)
    await store.move(inbox.id, [second.uid], arch.id)
    assert [m.emailid for m in await store.list_messages(arch.id)] == [first.emailid, second.emailid]
    assert [m.emailid for m in await store.changed_since(arch.id, 0)] == [first.emailid, second.emailid]
    # a delivery to two mailboxes stores one blob: one content instance, one EMAILID
    both = await store.deliver(b"both\r\n", [NewMessage(inbox.id, "", 0), NewMessage(arch.id, "", 0)])
    assert both[0].emailid == both[1].emailid != first.emailid


async def test_mailbox_lifecycle_new_uidvalidity(store: Store) -> None:
    acc = await _account(store)
    mb = await store.create_mailbox(acc, "Projects/X")
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(acc, "Projects/X")
    await store.deliver(b"x\r\n", [NewMessage(mb.id, "", 0)])
    renamed = await store.rename_mailbox(mb.id, "Projects/Y")
    assert renamed.uidvalidity == mb.uidvalidity
    await store.delete_mailbox(mb.id)
    again = await store.create_mailbox(acc, "Projects/Y")
    assert again.uidvalidity > mb.uidvalidity
    assert (await store.usage(acc)).messages == 0


async def test_accounts_are_isolated(store: Store) -> None:
    a = await _account(store, "a@example.org")
    b = await _account(store, "b@example.org")
    assert {m.id for m in await store.list_mailboxes(a)}.isdisjoint(
        {m.id for m in await store.list_mailboxes(b)}
    )
    assert await store.get_mailbox(a, "INBOX") != await store.get_mailbox(b, "INBOX")


async def test_aliases(store: Store) -> None:
    await _account(store)
    await store.add_alias("sales@example.org", "alice@example.org")
    await store.add_alias("@example.org", "alice@example.org")
    with pytest.raises(AlreadyExists):
        await store.add_alias("sales@example.org", "alice@example.org")
    with pytest.raises(NotFound):
        await store.add_alias("x@elsewhere.test", "alice@example.org")
    assert [a.destination for a in await store.aliases_for("sales@example.org")] == ["alice@example.org"]
    assert len(await store.list_aliases("example.org")) == 2
    await store.remove_alias("sales@example.org")
    assert await store.aliases_for("sales@example.org") == []


async def test_change_feed_reports_delivery(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    feed = await store.subscribe(acc)  # live on return: no sleep needed
    first = asyncio.ensure_future(feed.__anext__())
    await store.deliver(b"x\r\n", [NewMessage(inbox.id, "", 0)])
    change = await asyncio.wait_for(first, 2.0)
    assert change.mailbox_id == inbox.id and change.kind == "append"
    await feed.aclose()


async def test_change_feed_reports_subscription_and_metadata(store: Store) -> None:
    # RFC 5465 §5.5-5.7 (NOTIFY SubscriptionChange, Mailbox/ServerMetadataChange) across
    # sessions and processes: the feed carries them; a no-op write is not a change.
    acc = await _account(store)
    feed = await store.subscribe(acc)  # live on return: no sleep needed

    async def next_kind() -> str:
        return (await asyncio.wait_for(feed.__anext__(), 3.0)).kind

    first = asyncio.ensure_future(next_kind())
    await store.set_subscribed(acc, "Lists/x", True)
    assert await first == "subscription"
    await store.set_subscribed(acc, "Lists/x", True)  # already subscribed: nothing
    await store.set_metadata(acc, "", "/private/comment", "hi")
    assert await next_kind() == "metadata"
    await store.set_metadata(acc, "", "/private/nothing", None)  # nothing removed: nothing
    await store.set_subscribed(acc, "Lists/x", False)
    assert await next_kind() == "subscription"
    await store.set_metadata(acc, "", "/private/comment", None)
    assert await next_kind() == "metadata"
    await feed.aclose()


async def test_recent_claims_are_exclusive(
    store: Store, store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # RFC 3501 §2.3.2: a message is \Recent for exactly one session, whichever process it is
    # in: claims through two store instances (two connections, as two worker processes have)
    # at the same time must hand out every UID exactly once.
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    uv = inbox.uidvalidity
    assert await store.recent_claimed(inbox.id, uv) == 0
    assert await store.claim_recent(inbox.id, uv, 3) == 0
    assert await store.claim_recent(inbox.id, uv, 2) == 3  # never lowered
    assert await store.recent_claimed(inbox.id, uv) == 3
    # another incarnation of the mailbox id (other UIDVALIDITY) starts from nothing
    assert await store.recent_claimed(inbox.id, uv + 1) == 0
    assert await store.claim_recent(inbox.id, uv + 1, 1) == 0
    assert await store.recent_claimed(inbox.id, uv) == 0
    if store_backend == "sqlite":
        other = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    else:
        other = open_store(request.getfixturevalue("postgres_db_url"), tmp_path)
    await other.open()
    try:
        uv2 = uv + 1
        ups = [(i * 7) % 40 + 1 for i in range(60)]  # many concurrent claims, mixed heights

        async def claim(s: Store, up: int) -> set[int]:
            prev = await s.claim_recent(inbox.id, uv2, up)
            return set(range(prev + 1, up + 1))

        got = await asyncio.gather(*(claim(store if i % 2 else other, up) for i, up in enumerate(ups)))
        seen: list[int] = [u for mine in got for u in mine]
        assert sorted(seen) == list(range(2, 41)), sorted(seen)  # 1 was claimed above; once each
        assert await other.recent_claimed(inbox.id, uv2) == 40
    finally:
        await other.close()


async def test_queue_claims_are_exclusive(store: Store) -> None:
    key = await store.blobs.put(b"queued\r\n")
    e = QueueEntry("Q1", "a@example.org", [QueueRecipient("x@remote.test")], key, 8, 1.0, 0.0)
    await store.enqueue(e)
    got = await store.claim_due(10.0, "node-a", 60.0, 10)
    assert [g.id for g in got] == ["Q1"]
    assert await store.claim_due(10.0, "node-b", 60.0, 10) == []
    # lease expired: another node takes it over
    assert [g.id for g in await store.claim_due(100.0, "node-b", 60.0, 10)] == ["Q1"]
    got[0].recipients[0].status = "delivered"
    got[0].next_attempt = 500.0
    await store.update(got[0])
    loaded = await store.get("Q1")
    assert loaded and loaded.recipients[0].status == "delivered" and loaded.next_attempt == 500.0
    assert await store.remove("Q1") == [key]
    assert await store.list() == []


async def test_queue_heartbeat_renews_only_the_owners_leases(store: Store) -> None:
    key = await store.blobs.put(b"queued\r\n")
    for qid, owner, until in (("H1", "n|i1|1", 70.0), ("H2", "n|i1|1", 70.0), ("H3", "m|i1|1", 70.0)):
        e = QueueEntry(qid, "a@example.org", [QueueRecipient("x@remote.test")], key, 8, 1.0, 0.0)
        e.lease_owner, e.lease_until = owner, until
        await store.enqueue(e)
    await store.enqueue(
        QueueEntry("H4", "a@example.org", [QueueRecipient("x@remote.test")], key, 8, 1.0, 0.0)
    )
    assert await store.renew_leases("n|i1|1", 130.0) == 2  # one statement, both of its entries
    got = {e.id: (e.lease_owner, e.lease_until) for e in await store.list()}
    assert got == {
        "H1": ("n|i1|1", 130.0),
        "H2": ("n|i1|1", 130.0),
        "H3": ("m|i1|1", 70.0),
        "H4": ("", 0.0),
    }
    assert await store.renew_leases("", 500.0) == 0  # never "renews" unleased entries
    # renewed: not due for another claimer before the new expiry (H3's lease, not renewed, is)
    assert sorted(e.id for e in await store.claim_due(100.0, "x|i|1", 60.0, 10)) == ["H3", "H4"]
    assert [e.id for e in await store.claim_due(131.0, "x|i|1", 60.0, 10)] == ["H1", "H2"]


async def test_queue_restart_releases_earlier_incarnations_leases(store: Store) -> None:
    key = await store.blobs.put(b"queued\r\n")
    owners = {
        "R1": "mx:n_1%|a1|10",  # this node, earlier incarnation
        "R2": "mx:n_1%|a2|11",  # this node, another earlier incarnation
        "R3": "mx:n_1%|b9|12",  # this node, current incarnation: kept
        "R4": "mx:n_12|a1|10",  # another node whose id extends this one's: kept
        "R5": "mx:nX1%|a1|10",  # LIKE wildcards in the node id match nothing else: kept
        "R6": "old-host:123:abcd",  # an owner id of an older release: kept (expires)
    }
    for qid, owner in owners.items():
        e = QueueEntry(qid, "a@example.org", [QueueRecipient("x@remote.test")], key, 8, 1.0, 0.0)
        e.lease_owner, e.lease_until = owner, 1000.0
        await store.enqueue(e)
    assert await store.release_previous("mx:n_1%|", "mx:n_1%|b9|") == 2
    got = {e.id: (e.lease_owner, e.lease_until) for e in await store.list()}
    assert got["R1"] == got["R2"] == ("", 0.0)
    assert {k: v[0] for k, v in got.items() if k not in ("R1", "R2")} == {
        k: owners[k] for k in ("R3", "R4", "R5", "R6")
    }
    # released entries are due at once
    assert sorted(e.id for e in await store.claim_due(10.0, "mx:n_1%|b9|12", 60.0, 10)) == ["R1", "R2"]
    with pytest.raises(ValueError):
        await store.release_previous("mx:n_1%|", "other|b9|")


async def test_concurrent_appends_get_unique_uids(store: Store) -> None:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    results = await asyncio.gather(
        *[store.deliver(f"m{i}\r\n".encode(), [NewMessage(inbox.id, "", 0)]) for i in range(50)]
    )
    uids = sorted(r[0].uid for r in results)
    assert uids == list(range(1, 51))


async def test_duplicate_queue_id_is_already_exists(store: Store) -> None:
    key = await store.blobs.put(b"q\r\n")
    e = QueueEntry("Q9", "", [QueueRecipient("x@remote.test")], key, 3, 1.0, 0.0)
    await store.enqueue(e)
    with pytest.raises(AlreadyExists):
        await store.enqueue(e)


async def test_enqueue_keeps_the_blob_with_the_row(store: Store) -> None:
    e = QueueEntry("Q10", "a@example.org", [QueueRecipient("x@remote.test")], "", 9, 1.0, 0.0)
    await store.enqueue(e, b"message\r\n")
    assert e.blob_key
    loaded = await store.get("Q10")
    assert loaded is not None and loaded.blob_key == e.blob_key
    assert await store.blobs.get(e.blob_key) == b"message\r\n"
    assert await store.remove("Q10") == [e.blob_key]
    with pytest.raises(FileNotFoundError):  # removed with its row
        await store.blobs.get(e.blob_key)
    big = b"x" * (1 << 20) + b"\r\n"  # beyond any inline limit: a blob file
    e2 = QueueEntry("Q11", "a@example.org", [QueueRecipient("x@remote.test")], "", len(big), 1.0, 0.0)
    await store.enqueue(e2, big)
    assert await store.blobs.get(e2.blob_key) == big
    assert await store.remove("Q11") == [e2.blob_key]
    with pytest.raises(FileNotFoundError):
        await store.blobs.get(e2.blob_key)


async def test_concurrent_flags_expunges_and_deliveries_never_error(store: Store) -> None:
    """Regression: under concurrent EXPUNGE load, group commit once failed a blob delete with
    "bad parameter or other API misuse" (SQLite executemany after other jobs in the batch)."""
    import random

    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    for i in range(150):
        await store.deliver(f"m{i}\r\n".encode(), [NewMessage(inbox.id, "", 0)])
    rng = random.Random(7)
    errors: list[str] = []

    async def worker() -> None:
        for _ in range(40):
            msgs = await store.list_messages(inbox.id)
            op = rng.random()
            try:
                if op < 0.3 and msgs:
                    await store.store_flags(
                        inbox.id, [rng.choice(msgs).uid], FlagMode.ADD, frozenset({"\\Seen"})
                    )
                elif op < 0.6 and msgs:
                    await store.expunge(inbox.id, [rng.choice(msgs).uid])
                else:
                    await store.deliver(b"x\r\n", [NewMessage(inbox.id, "", 0)])
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))

    await asyncio.gather(*[worker() for _ in range(10)])
    assert errors == []
    msgs = await store.list_messages(inbox.id)
    assert (await store.usage(acc)).messages == len(msgs)
    for m in msgs:
        assert await store.blobs.get(m.blob_key)


async def test_shared_secret_first_writer_wins(
    store: Store, store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert await store.shared_secret("web-session", "aa" * 32) == "aa" * 32
    assert await store.shared_secret("web-session", "bb" * 32) == "aa" * 32  # kept, not replaced
    assert await store.shared_secret("other", "cc") == "cc"  # names are independent
    # a second store instance on the same database (another worker or node) gets the same value
    if store_backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'mh.db'}"
    else:
        url = request.getfixturevalue("postgres_db_url")
    other = open_store(url, tmp_path)
    await other.open()
    try:
        got = await asyncio.gather(
            *(other.shared_secret(f"race{i}", f"{i:02x}") for i in range(5)),
            *(store.shared_secret(f"race{i}", "ff") for i in range(5)),
        )
        assert got[:5] == got[5:]  # each race has one winner, seen by both instances
        assert await other.shared_secret("web-session", "dd") == "aa" * 32
    finally:
        await other.close()


# ---------------------------------------------------------------- POP3 maildrop locks (RFC 1939 §8)
async def test_maildrop_lock_is_exclusive_and_released(store: Store) -> None:
    lease = await store.try_lock_maildrop(41)
    assert lease is not None
    assert await store.try_lock_maildrop(41) is None  # a second session of the same process
    other = await store.try_lock_maildrop(42)  # another maildrop is free
    assert other is not None
    await other.release()
    await lease.release()
    await lease.release()  # idempotent
    again = await store.try_lock_maildrop(41)
    assert again is not None
    await again.release()


async def test_maildrop_lock_excludes_another_store_instance(
    store: Store, store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A second store on the same data (another worker process, another node)."""
    url = (
        f"sqlite:///{tmp_path / 'mh.db'}"
        if store_backend == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    second = open_store(url, tmp_path)
    await second.open()
    try:
        lease = await store.try_lock_maildrop(7)
        assert lease is not None
        assert await second.try_lock_maildrop(7) is None
        await lease.release()
        taken = await second.try_lock_maildrop(7)
        assert taken is not None
        assert await store.try_lock_maildrop(7) is None
        await taken.release()
    finally:
        await second.close()


_LOCK_HOLDER = """
import asyncio, sys
from pathlib import Path
from mailhouse.store import open_store

async def main():
    store = open_store(sys.argv[1], Path(sys.argv[2]))
    await store.open()
    lease = await store.try_lock_maildrop(9)
    print("held" if lease else "busy", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_maildrop_lock_dies_with_its_process(
    store: Store, store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A holder killed with SIGKILL never leaves the maildrop locked."""
    import sys

    url = (
        f"sqlite:///{tmp_path / 'mh.db'}"
        if store_backend == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LOCK_HOLDER, url, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        assert await store.try_lock_maildrop(9) is None
    finally:
        holder.kill()  # SIGKILL
        await holder.wait()
    deadline = asyncio.get_running_loop().time() + 10
    while (lease := await store.try_lock_maildrop(9)) is None:
        assert asyncio.get_running_loop().time() < deadline, "lock not freed after the holder died"
        await asyncio.sleep(0.05)
    await lease.release()


async def test_expunge_many_frees_only_unreferenced_blobs(store: Store) -> None:
    """One call expunging a whole maildrop (POP3 UPDATE): UIDs in input order without
    duplicates, one modseq, usage and VANISHED data, blobs freed once nothing refers to them."""
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    other = await store.create_mailbox(acc, "Other")
    assert inbox
    shared = await store.blobs.put(b"shared\r\n")
    own = [await store.blobs.put(b"own %d\r\n" % i) for i in range(5)]
    recs = await store.append([NewMessage(inbox.id, k, 8) for k in own] + [NewMessage(inbox.id, shared, 8)])
    await store.append([NewMessage(other.id, shared, 8)])
    before = await store.usage(acc)
    uids = [r.uid for r in recs]
    gone, freed = await store.expunge(inbox.id, [uids[3], 999, *uids, uids[0]])
    assert gone == [uids[3], *[u for u in uids if u != uids[3]]]
    assert sorted(freed) == sorted(own)  # the shared blob is still used by "Other"
    for k in own:
        with pytest.raises(FileNotFoundError):
            await store.blobs.get(k)
    assert await store.blobs.get(shared) == b"shared\r\n"
    assert sorted(await store.expunged_since(inbox.id, 0)) == sorted(uids)
    after = await store.usage(acc)
    assert (before.messages - after.messages, before.bytes - after.bytes) == (6, 48)
    assert await store.list_messages(inbox.id) == []
    assert await store.expunge(inbox.id, uids) == ([], [])  # again: nothing


# ---------------------------------------------------------------- rules written once (issue 11)
# Cases for the rules that moved above the backends, especially where the two backends used to
# disagree: each runs on SQLite and PostgreSQL.
async def _inbox(store: Store) -> tuple[int, int]:
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    return acc, inbox.id


async def test_store_flags_with_duplicate_uids_updates_each_message_once(store: Store) -> None:
    # RFC 9051 §6.4.6: a UID named twice in a sequence set is one message: one update, one
    # FETCH, never both updated and failed (SQLite once reported it in both lists)
    _, inbox = await _inbox(store)
    recs = await store.append([NewMessage(inbox, await store.blobs.put(b"m\r\n"), 3) for _ in range(2)])
    u1, u2 = recs[0].uid, recs[1].uid
    m0 = max(r.modseq for r in recs)
    res = await store.store_flags(
        inbox, [u2, u1, u2, u1], FlagMode.ADD, frozenset({"\\Flagged"}), unchanged_since=m0
    )
    assert [r.uid for r in res.updated] == [u2, u1] and res.failed_uids == []
    assert len({r.modseq for r in res.updated}) == 1  # one modseq for the whole STORE
    mb = await store.get_mailbox_by_id(inbox)
    assert mb is not None and mb.highestmodseq == res.updated[0].modseq
    assert {r.uid: r.flags for r in await store.list_messages(inbox)} == {
        u1: frozenset({"\\Flagged"}),
        u2: frozenset({"\\Flagged"}),
    }


async def test_unchangedsince_mix_and_no_op_store(store: Store) -> None:
    # RFC 7162 §3.1.3: messages modified after UNCHANGEDSINCE fail, the others are updated
    _, inbox = await _inbox(store)
    recs = await store.append([NewMessage(inbox, await store.blobs.put(b"m\r\n"), 3) for _ in range(3)])
    m0 = max(r.modseq for r in recs)
    touched = await store.store_flags(inbox, [recs[1].uid], FlagMode.ADD, frozenset({"\\Seen"}))
    res = await store.store_flags(
        inbox, [r.uid for r in recs] + [999], FlagMode.ADD, frozenset({"\\Answered"}), unchanged_since=m0
    )
    assert res.failed_uids == [recs[1].uid]
    assert [r.uid for r in res.updated] == [recs[0].uid, recs[2].uid]
    assert res.updated[0].modseq > touched.updated[0].modseq
    # setting flags a message already has is no change: no new modseq, nothing reported
    before = await store.get_mailbox_by_id(inbox)
    same = await store.store_flags(inbox, [recs[0].uid], FlagMode.ADD, frozenset({"\\Answered"}))
    assert same.updated == [] and same.failed_uids == []
    after = await store.get_mailbox_by_id(inbox)
    assert before is not None and after is not None and after.highestmodseq == before.highestmodseq


async def test_expunge_keeps_a_blob_shared_with_a_copy(store: Store) -> None:
    acc, inbox = await _inbox(store)
    arch = await store.get_mailbox(acc, "Archive")
    assert arch
    (rec,) = await store.deliver(b"shared by a copy\r\n", [NewMessage(inbox, "", 0)])
    assert await store.copy(inbox, [rec.uid, rec.uid], arch.id) == [
        (rec.uid, 1)
    ]  # a UID named twice: one copy
    gone, freed = await store.expunge(inbox, [rec.uid])
    assert gone == [rec.uid] and freed == []  # the copy still references the blob
    assert await store.blobs.get(rec.blob_key) == b"shared by a copy\r\n"
    gone, freed = await store.expunge(arch.id, [1])
    assert gone == [1] and freed == [rec.blob_key]
    with pytest.raises(FileNotFoundError):
        await store.blobs.get(rec.blob_key)


async def test_delivery_key_repeats(store: Store) -> None:
    acc, inbox = await _inbox(store)
    other = await store.create_mailbox(acc, "Lists")
    # the same key twice in one delivery, and a later redelivery: one message in the mailbox;
    # a delivery key is per mailbox: the same key elsewhere is another message
    first = await store.deliver(
        b"m\r\n",
        [
            NewMessage(inbox, "", 0, delivery_key="Q7:alice"),
            NewMessage(inbox, "", 0, delivery_key="Q7:alice"),
            NewMessage(other.id, "", 0, delivery_key="Q7:alice"),
        ],
    )
    assert first[0] == first[1] and first[2].mailbox_id == other.id
    again = await store.deliver(b"m\r\n", [NewMessage(inbox, "", 0, delivery_key="Q7:alice")])
    assert again == [first[0]]
    assert len(await store.list_messages(inbox)) == 1 and len(await store.list_messages(other.id)) == 1
    assert await store.usage(acc) == type(await store.usage(acc))(2 * len(b"m\r\n"), 2)
    assert await store.blobs.get(again[0].blob_key) == b"m\r\n"


async def test_usage_after_copy_move_expunge_and_delete(store: Store) -> None:
    acc, inbox = await _inbox(store)
    work = await store.create_mailbox(acc, "Work")
    a = await store.deliver(b"a" * 10 + b"\r\n", [NewMessage(inbox, "", 0)])
    b = await store.deliver(b"b" * 20 + b"\r\n", [NewMessage(inbox, "", 0)])
    size_a, size_b = a[0].size, b[0].size

    async def usage() -> tuple[int, int]:
        u = await store.usage(acc)
        return u.messages, u.bytes

    assert await usage() == (2, size_a + size_b)
    await store.copy(inbox, [a[0].uid, b[0].uid], work.id)  # a copy counts again (RFC 9208 §5.1)
    assert await usage() == (4, 2 * (size_a + size_b))
    await store.move(inbox, [a[0].uid], work.id)  # a move does not
    assert await usage() == (4, 2 * (size_a + size_b))
    await store.expunge(work.id, [1])
    assert await usage() == (3, size_a + 2 * size_b)
    await store.delete_mailbox(work.id)
    assert await usage() == (1, size_b)
    with pytest.raises(NotFound):
        await store.usage(acc + 1000)


async def test_queue_lease_expiry_and_reclaim(store: Store) -> None:
    key = await store.blobs.put(b"q\r\n")
    for i, due in enumerate([5.0, 1.0, 3.0]):
        await store.enqueue(QueueEntry(f"L{i}", "", [QueueRecipient("x@remote.test")], key, 3, float(i), due))
    got = await store.claim_due(10.0, "node-a", 60.0, 2)  # oldest due first, at most LIMIT
    assert [g.id for g in got] == ["L1", "L2"] and all(g.lease_owner == "node-a" for g in got)
    assert [g.id for g in await store.claim_due(69.0, "node-b", 60.0, 10)] == ["L0"]  # the rest only
    assert await store.claim_due(69.5, "node-c", 60.0, 10) == []  # every lease still running
    loaded = await store.get("L1")
    assert loaded is not None and loaded.lease_owner == "node-a" and loaded.lease_until == 70.0
    retaken = await store.claim_due(71.0, "node-c", 60.0, 10)  # node-a died: its leases expired
    assert [g.id for g in retaken] == ["L1", "L2"]
    retaken[0].recipients[0].status = QueueStatus.DEFERRED
    retaken[0].next_attempt = 200.0
    await store.update(retaken[0])  # releases the lease
    again = await store.get("L1")
    assert again is not None and again.lease_owner == "" and again.lease_until == 0.0
    assert again.recipients[0].status is QueueStatus.DEFERRED and again.recipients[0].status == "deferred"
    assert await store.claim_due(120.0, "node-d", 60.0, 10) == []  # L1 not due yet; L0 and L2 leased
    assert [g.id for g in await store.claim_due(200.0, "node-d", 60.0, 10)] == ["L2", "L0", "L1"]
    assert await store.remove("L0") == [] and await store.remove("L1") == []  # the blob is shared
    assert await store.remove("L2") == [key]
    with pytest.raises(NotFound):
        await store.remove("L2")


async def test_claim_recent_across_uidvalidity_change(store: Store) -> None:
    # RFC 3501 §2.3.2 per mailbox incarnation: a new UIDVALIDITY starts over, and the old
    # incarnation's claims do not come back
    _, inbox = await _inbox(store)
    mb = await store.get_mailbox_by_id(inbox)
    assert mb
    uv = mb.uidvalidity
    assert await store.claim_recent(inbox, uv, 5) == 0
    assert await store.claim_recent(inbox, uv + 7, 3) == 0
    assert await store.recent_claimed(inbox, uv) == 0
    assert await store.recent_claimed(inbox, uv + 7) == 3
    assert await store.claim_recent(inbox, uv + 7, 2) == 3  # never lowered
    assert await store.claim_recent(inbox, uv, 1) == 0  # back to the old one: starts over too


async def test_subscribe_is_live_on_return(store: Store) -> None:
    # no sleep between subscribing and changing data (issue 11 item 3)
    acc, inbox = await _inbox(store)
    feed = await store.subscribe(acc)
    recs = await store.deliver(b"x\r\n", [NewMessage(inbox, "", 0)])
    change = await asyncio.wait_for(feed.__anext__(), 3.0)
    assert change == Change(acc, inbox, ChangeKind.APPEND, recs[0].modseq)
    assert change.kind is ChangeKind.APPEND and change.kind == "append"
    await feed.aclose()
    with pytest.raises(StopAsyncIteration):
        await feed.__anext__()
    async with store.subscribe(acc) as live:
        await store.set_subscribed(acc, "Lists/y", True)
        assert (await asyncio.wait_for(live.__anext__(), 3.0)).kind is ChangeKind.SUBSCRIPTION


async def test_remove_account_reports_its_mailboxes_and_frees_blobs(store: Store) -> None:
    acc, inbox = await _inbox(store)
    (rec,) = await store.deliver(b"bye\r\n", [NewMessage(inbox, "", 0)])
    async with store.subscribe(acc) as feed:
        await store.remove_account("alice@example.org")
        change = await asyncio.wait_for(feed.__anext__(), 3.0)
        while change.kind is ChangeKind.APPEND:  # a feed may also repeat changes from just before
            change = await asyncio.wait_for(feed.__anext__(), 3.0)
        assert change.kind is ChangeKind.MAILBOX and change.account_id == acc
    assert await store.get_account("alice@example.org") is None
    with pytest.raises(FileNotFoundError):
        await store.blobs.get(rec.blob_key)
    with pytest.raises(NotFound):
        await store.remove_account("alice@example.org")


async def test_limit_events_count_in_a_sliding_window(store: Store) -> None:
    assert await store.count_event("auth:ip:192.0.2.1", 100.0, 60.0) == 1
    assert await store.count_event("auth:ip:192.0.2.1", 110.0, 60.0, weight=2) == 3
    assert await store.count_event("auth:ip:192.0.2.9", 110.0, 60.0) == 1  # keys are separate
    assert await store.events_within("auth:ip:192.0.2.1", 120.0, 60.0) == 3
    # the first event left the window; the 110 ones are still in it
    assert await store.count_event("auth:ip:192.0.2.1", 165.0, 60.0) == 3
    assert await store.events_within("auth:ip:192.0.2.1", 500.0, 60.0) == 0
    await store.clear_events("auth:ip:192.0.2.9")
    assert await store.events_within("auth:ip:192.0.2.9", 110.0, 60.0) == 0


async def test_limit_marks_expire_and_list_by_prefix(store: Store) -> None:
    await store.set_mark("ban:192.0.2.1", "12 failed logins", 200.0)
    await store.set_mark("ban:192.0.2.2", "manual", 100.0)
    await store.set_mark("ban_:x", "a LIKE wildcard in a prefix matches nothing else", 900.0)
    await store.set_mark("pass:192.0.2.1", "", 900.0)
    m = await store.get_mark("ban:192.0.2.1", 150.0)
    assert m is not None and (m.value, m.expires) == ("12 failed logins", 200.0)
    assert await store.get_mark("ban:192.0.2.1", 200.0) is None  # expired: invisible at once
    assert [m.key for m in await store.list_marks("ban:", 50.0)] == ["ban:192.0.2.1", "ban:192.0.2.2"]
    assert [m.key for m in await store.list_marks("ban:", 150.0)] == ["ban:192.0.2.1"]
    await store.set_mark("ban:192.0.2.2", "renewed", 400.0)  # replaces
    assert [m.value for m in await store.list_marks("ban:", 150.0)] == ["12 failed logins", "renewed"]
    assert await store.remove_mark("ban:192.0.2.2") is True
    assert await store.remove_mark("ban:192.0.2.2") is False
    await store.count_event("old", 10.0, 1000.0)
    await store.count_event("new", 500.0, 1000.0)
    # marks expired by 300 (ban:192.0.2.1) and events before 100 ("old") go
    assert await store.purge_limits(300.0, 100.0) == 2
    assert await store.events_within("new", 500.0, 1000.0) == 1
    assert [m.key for m in await store.list_marks("", 0.0)] == ["ban_:x", "pass:192.0.2.1"]


async def test_limit_events_are_shared_between_store_instances(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'mh.db'}"
        if store_backend == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    a, b = open_store(url, tmp_path), open_store(url, tmp_path)
    await a.open()
    await b.open()
    try:  # two nodes (or workers) counting the same key concurrently each see every event
        results = await asyncio.gather(
            *(s.count_event("auth:acct:bob@example.org", 10.0, 60.0) for s in (a, b) for _ in range(10))
        )
        assert max(results) == 20 and sorted(results)[-1] == 20
        assert await a.events_within("auth:acct:bob@example.org", 10.0, 60.0) == 20
        await b.set_mark("pass:198.51.100.7", "", 99.0)
        m = await a.get_mark("pass:198.51.100.7", 1.0)
        assert m is not None
    finally:
        await a.close()
        await b.close()


async def test_spooled_message_delivered_and_queued_through_put_file(store: Store, tmp_path: Path) -> None:
    """Issue 12 item 2: a message spooled to disk becomes a blob piecewise (`BlobStore.put_file`)."""
    from mailhouse.store.spool import Spool

    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox is not None
    for size in (300 * 1024, 3 * 1024 * 1024):  # read into the transaction / put_file
        sp = Spool(tmp_path / "spool", memory_max=64 * 1024)
        head = b"Subject: spooled\r\n\r\n"
        sp.write(head)
        line = b"z" * 78 + b"\r\n"
        for _ in range(size // len(line)):
            sp.write(line)
        msg = sp.finish().prepend(b"Return-Path: <a@example.org>\r\n")
        expected = b"Return-Path: <a@example.org>\r\n" + head + line * (size // len(line))
        recs = await store.deliver(msg, [NewMessage(inbox.id, "", 0)])
        assert recs[0].size == len(expected)
        assert await store.blobs.get(recs[0].blob_key) == expected
        e = QueueEntry(
            f"QS{size}", "a@example.org", [QueueRecipient("x@remote.test")], "", msg.size, 1.0, 0.0
        )
        await store.enqueue(e, msg)
        assert await store.blobs.get(e.blob_key) == expected
        sp.discard()
        assert list((tmp_path / "spool").iterdir()) == []


async def test_blob_read_range_small_and_large(store: Store) -> None:
    """Issue 12 item 2 (read side): ranges of inline/database and file blobs, at and past the end."""
    small = b"Subject: r\r\n\r\n" + bytes(range(256)) * 4 + b"\r\n"
    big = b"Subject: R\r\n\r\n" + (b"0123456789abcdef" * 65536) + b"\r\n"  # > 512 KiB: a file on SQLite
    for data in (small, big):
        key = await store.blobs.put(data)
        for off, n in ((0, 10), (5, 1), (0, len(data)), (len(data) - 3, 10), (len(data), 5), (7, 0)):
            assert await store.blobs.read_range(key, off, n) == data[off : off + n]
        whole = b"".join([await store.blobs.read_range(key, o, 4096) for o in range(0, len(data), 4096)])
        assert whole == data
        await store.blobs.delete([key])
        with pytest.raises(FileNotFoundError):
            await store.blobs.read_range(key, 0, 10)


async def test_append_octets_stores_octets_and_rows(store: Store) -> None:
    """`append_octets` (IMAP APPEND): each message's octets under its own key, rows in order,
    small and large alike; what FETCH reads back is what was given."""
    acc = await _account(store)
    mb = await store.get_mailbox(acc, "INBOX")
    assert mb is not None
    small = b"Subject: small\r\n\r\nbody\r\n"
    large = b"Subject: large\r\n\r\n" + b"x" * 998 + b"\r\n" + b"y" * (600 * 1024) + b"\r\n"
    recs = await store.append_octets(
        [(small, NewMessage(mb.id, "", 0, frozenset({"\\Seen"}))), (large, NewMessage(mb.id, "", 0))]
    )
    assert [r.uid for r in recs] == [1, 2]
    assert [r.size for r in recs] == [len(small), len(large)]
    assert recs[0].flags == frozenset({"\\Seen"}) and recs[0].blob_key != recs[1].blob_key
    assert await store.blobs.get(recs[0].blob_key) == small
    assert await store.blobs.get(recs[1].blob_key) == large
    assert [r.uid for r in await store.list_messages(mb.id)] == [1, 2]


async def test_queue_size_counts_without_reading_entries(store: Store) -> None:
    assert await store.queue_size() == (0, None)
    key = await store.blobs.put(b"queued\r\n")
    for qid, created in (("Q2", 7.5), ("Q1", 3.25)):
        await store.enqueue(
            QueueEntry(qid, "a@example.org", [QueueRecipient("x@remote.test")], key, 8, created, 0.0)
        )
    assert await store.queue_size() == (2, 3.25)
    await store.remove("Q1")
    assert await store.queue_size() == (1, 7.5)


# ---------------------------------------------------------------- address book (store/contacts.py)
async def test_contacts_put_get_list_delete_per_account(store: Store) -> None:
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    c = await store.put_contact(
        a,
        Contact(
            "",
            "  Zoë  Müller ",
            ("zoe@Example.COM", "zoe@example.com", ""),
            "line1\r\nline2",
            ("Team", "Team"),
        ),
    )
    assert c.uid.startswith("urn:uuid:") and c.updated > 0
    assert (c.name, c.emails, c.notes, c.groups) == (
        "Zoë Müller",
        ("zoe@example.com",),
        "line1\nline2",
        ("Team",),
    )
    await store.put_contact(a, Contact("u-2", "", ("adam@example.net",)))
    assert [x.name for x in await store.list_contacts(a)] == ["adam@example.net", "Zoë Müller"]
    assert await store.get_contact(a, c.uid) == c
    assert await store.get_contact(b, c.uid) is None  # another account's contact is not there
    assert not await store.delete_contact(b, c.uid)
    edited = await store.put_contact(a, Contact(c.uid, "Zoe", ("z@example.com",)))
    assert (await store.get_contact(a, c.uid)) == edited and len(await store.list_contacts(a)) == 2
    assert await store.delete_contact(a, c.uid)
    assert await store.get_contact(a, c.uid) is None


@pytest.mark.parametrize(
    "contact",
    [
        Contact("", "x", ()),
        Contact("", "x", ("not an address",)),
        Contact("", "x", ("a@b.example",), groups=("a,b",)),
        Contact("", "x", tuple(f"u{i}@example.org" for i in range(21))),
        Contact("", "x", ("a@b.example",), notes="n" * 4001),
    ],
)
async def test_contact_rules_refuse_bad_contacts(store: Store, contact: Contact) -> None:
    a = await _account(store)
    with pytest.raises(ContactError):
        await store.put_contact(a, contact)
    assert await store.list_contacts(a) == []


async def test_collected_recipients_count_and_suggest(store: Store) -> None:
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    await store.collect_recipients(a, [("Pat@Example.org", "Pat Doe"), ("bogus", "x")], 100.0)
    await store.collect_recipients(a, [("pat@example.org", ""), ("paula@example.net", "Paula")], 200.0)
    got = await store.collected_recipients(a)
    assert [(r.address, r.name, r.last_used, r.count) for r in got] == [
        ("pat@example.org", "Pat Doe", 200.0, 2),
        ("paula@example.net", "Paula", 200.0, 1),
    ]
    assert await store.collected_recipients(b) == []
    await store.put_contact(
        a, Contact("c1", "Patrick Smith", ("pat@example.org", "ps@work.example"), groups=("Pals",))
    )
    await store.put_contact(a, Contact("c2", "Quinn", ("q@example.org",), groups=("pals", "Team")))
    s = await store.suggest_recipients(a, "pa", 10)
    assert [(x.kind, x.name, x.address) for x in s] == [
        (SuggestionKind.CONTACT, "Patrick Smith", "pat@example.org"),
        (SuggestionKind.CONTACT, "Patrick Smith", "ps@work.example"),  # the name matches
        (SuggestionKind.GROUP, "Pals", ""),
        (SuggestionKind.COLLECTED, "Paula", "paula@example.net"),  # pat@ is a contact already
    ]
    assert [x.address for x in await store.suggest_recipients(a, "SMI", 10)] == [
        "pat@example.org",
        "ps@work.example",
    ]
    assert len(await store.suggest_recipients(a, "p", 1)) == 1
    assert await store.suggest_recipients(b, "pa", 10) == []
    assert await store.group_members(a, "PALS") == [
        ("Patrick Smith", "pat@example.org"),
        ("Quinn", "q@example.org"),
    ]
    assert await store.group_members(a, "nobody") is None
    assert await store.group_members(b, "pals") is None


async def test_collected_recipients_keep_the_most_recent(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contacts, "MAX_COLLECTED", 3)
    a = await _account(store)
    for i in range(5):
        await store.collect_recipients(a, [(f"r{i}@example.org", "")], float(i))
    assert [r.address for r in await store.collected_recipients(a)] == [
        "r4@example.org",
        "r3@example.org",
        "r2@example.org",
    ]


async def test_address_book_full(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "MAX_CONTACTS", 2)
    a = await _account(store)
    await store.put_contact(a, Contact("1", "a", ("a@example.org",)))
    await store.put_contact(a, Contact("2", "b", ("b@example.org",)))
    with pytest.raises(ContactError, match="full"):
        await store.put_contact(a, Contact("3", "c", ("c@example.org",)))
    await store.put_contact(a, Contact("2", "b2", ("b@example.org",)))  # editing is not adding
