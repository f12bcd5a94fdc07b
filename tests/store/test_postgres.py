"""What only the PostgreSQL backend has: several nodes (store instances) on one database.

Two `PostgresStore` instances on one database stand for two Mailhouse nodes: each has its
own pool and its own LISTEN connection, exactly as two processes on two machines would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from mailhouse.store import open_store
from mailhouse.store.api import Change, NewMessage, QueueEntry, QueueRecipient
from mailhouse.store.postgres.backend import PostgresStore
from mailhouse.store.postgres.schema import MIGRATIONS


def _node(url: str, tmp_path: Path, name: str) -> PostgresStore:
    s = open_store(url, tmp_path / name)
    assert isinstance(s, PostgresStore)
    return s


@pytest.fixture
async def nodes(postgres_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = _node(postgres_db_url, tmp_path, "a")
    b = _node(postgres_db_url, tmp_path, "b")
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _inbox(store: PostgresStore, addr: str = "alice@example.org") -> tuple[int, int]:
    domain = addr.split("@")[1]
    if not await store.get_domain(domain):
        await store.add_domain(domain)
    acc = await store.add_account(addr, "hash")
    inbox = await store.get_mailbox(acc.id, "INBOX")
    assert inbox is not None
    return acc.id, inbox.id


async def test_two_nodes_deliver_concurrently_unique_increasing_uids(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    acc, inbox = await _inbox(a)
    n = 40
    results = await asyncio.gather(
        *[
            (a if i % 2 else b).deliver(f"Subject: {i}\r\n\r\nm\r\n".encode(), [NewMessage(inbox, "", 0)])
            for i in range(2 * n)
        ]
    )
    recs = [r[0] for r in results]
    assert sorted(r.uid for r in recs) == list(range(1, 2 * n + 1))
    # allocation order is commit order: UID order and MODSEQ order agree, and modseqs are unique
    by_uid = sorted(recs, key=lambda r: r.uid)
    assert [r.modseq for r in by_uid] == sorted({r.modseq for r in recs})
    listed = await b.list_messages(inbox)
    assert [m.uid for m in listed] == list(range(1, 2 * n + 1))
    mb = await a.get_mailbox_by_id(inbox)
    assert mb is not None and mb.uidnext == 2 * n + 1 and mb.highestmodseq == by_uid[-1].modseq
    assert (await b.usage(acc)).messages == 2 * n
    # every message's blob is readable from either node
    assert await a.blobs.get(by_uid[-1].blob_key) == await b.blobs.get(by_uid[-1].blob_key)


async def test_same_delivery_key_from_two_nodes_stores_one_copy(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    acc, inbox = await _inbox(a)
    results = await asyncio.gather(
        *[
            (a if i % 2 else b).deliver(b"m\r\n", [NewMessage(inbox, "", 0, delivery_key="Q9:alice")])
            for i in range(10)
        ]
    )
    assert len({r[0].uid for r in results}) == 1
    assert len(await a.list_messages(inbox)) == 1
    assert (await a.usage(acc)).messages == 1
    # the redeliveries' blobs were not left behind
    conn = await asyncpg.connect(a._dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM blobs") == 1
    finally:
        await conn.close()


async def test_change_on_node_b_reaches_subscriber_on_node_a(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    acc, inbox = await _inbox(a)
    other_acc, other_inbox = await _inbox(a, "bob@example.org")
    feed = await a.subscribe(acc)  # live on return, LISTEN included: no sleep needed
    first = asyncio.ensure_future(feed.__anext__())
    await b.deliver(b"x\r\n", [NewMessage(other_inbox, "", 0)])  # another account: not for us
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    recs = await b.deliver(b"y\r\n", [NewMessage(inbox, "", 0)])
    change = await asyncio.wait_for(first, 1.0)
    assert loop.time() - t0 < 1.0
    assert change == Change(acc, inbox, "append", recs[0].modseq)
    # flag changes and expunges travel too, in commit order
    nxt = asyncio.ensure_future(feed.__anext__())
    from mailhouse.store.api import FlagMode

    res = await b.store_flags(inbox, [recs[0].uid], FlagMode.ADD, frozenset({"\\Seen"}))
    assert await asyncio.wait_for(nxt, 1.0) == Change(acc, inbox, "flags", res.updated[0].modseq)
    await feed.aclose()
    assert other_acc != acc


async def test_feed_survives_lost_listen_connection(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    acc, inbox = await _inbox(a)
    feed = await a.subscribe(acc)  # live on return, LISTEN included: no sleep needed
    first = asyncio.ensure_future(feed.__anext__())
    conn = await asyncpg.connect(a._dsn)
    try:
        pid = a._listen_conn.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    # first the "you may have missed something" wake-up, then live changes again
    assert await asyncio.wait_for(first, 5.0) == Change(acc, 0, "mailbox", 0)
    nxt = asyncio.ensure_future(feed.__anext__())
    recs = await b.deliver(b"z\r\n", [NewMessage(inbox, "", 0)])
    assert await asyncio.wait_for(nxt, 2.0) == Change(acc, inbox, "append", recs[0].modseq)
    await feed.aclose()


async def test_queue_claims_exclusive_across_nodes(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    key = await a.blobs.put(b"queued\r\n")
    n = 60
    for i in range(n):
        await a.enqueue(
            QueueEntry(f"Q{i:03}", "s@example.org", [QueueRecipient("x@remote.test")], key, 8, 1.0, 0.0)
        )

    async def claimer(store: PostgresStore, owner: str) -> list[str]:
        got: list[str] = []
        while True:
            batch = await store.claim_due(10.0, owner, 60.0, 7)
            if not batch:
                return got
            assert all(e.lease_owner == owner and e.lease_until == 70.0 for e in batch)
            got += [e.id for e in batch]

    claims = await asyncio.gather(
        *[claimer(s, f"{name}-{k}") for k in range(3) for s, name in ((a, "a"), (b, "b"))]
    )
    flat = [i for c in claims for i in c]
    assert sorted(flat) == [f"Q{i:03}" for i in range(n)]  # every entry claimed exactly once
    # a dead node's claims are taken over once the lease expires (and not before)
    assert await b.claim_due(69.0, "b-new", 60.0, 100) == []
    taken = await b.claim_due(71.0, "b-new", 60.0, 100)
    assert len(taken) == n
    stored = await a.get("Q000")
    assert stored is not None and stored.lease_owner == "b-new"


async def test_migrations_idempotent_when_nodes_open_at_once(postgres_db_url: str, tmp_path: Path) -> None:
    stores = [_node(postgres_db_url, tmp_path, f"n{i}") for i in range(4)]
    await asyncio.gather(*[s.open() for s in stores])
    try:
        again = _node(postgres_db_url, tmp_path, "late")
        await again.open()  # already at the latest version: nothing to do
        await again.close()
        conn = await asyncpg.connect(stores[0]._dsn)
        try:
            assert await conn.fetch("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
        finally:
            await conn.close()
        # and the schema works from every node
        await stores[0].add_domain("example.org")
        assert [d.name for d in await stores[3].list_domains()] == ["example.org"]
    finally:
        for s in stores:
            await s.close()


async def test_url_options_are_ours_and_rest_passes_through(postgres_db_url: str, tmp_path: Path) -> None:
    s = _node(postgres_db_url + "?pool_min=1&pool_max=2&application_name=mh-test", tmp_path, "x")
    await s.open()
    try:
        await _inbox(s)  # works with a tiny pool
        conn = await asyncpg.connect(s._dsn)
        try:
            assert await conn.fetchval("SELECT current_setting('application_name')") == "mh-test"
        finally:
            await conn.close()
    finally:
        await s.close()


async def test_commits_are_synchronous_even_if_server_says_off(postgres_db_url: str, tmp_path: Path) -> None:
    # the test server runs with synchronous_commit=off; a store must not inherit that
    s = _node(postgres_db_url, tmp_path, "x")
    await s.open()
    try:
        assert await s._pool_().fetchval("SHOW synchronous_commit") == "on"
    finally:
        await s.close()
    s = _node(postgres_db_url + "?synchronous_commit=remote_apply", tmp_path, "y")
    await s.open()
    try:
        assert await s._pool_().fetchval("SHOW synchronous_commit") == "remote_apply"
    finally:
        await s.close()


def test_sigv4_matches_aws_published_example() -> None:
    # AWS S3 API reference, "Signature Version 4: GET Object" example
    import datetime as dt

    from mailhouse.store.postgres.blobs_s3 import sigv4_headers

    h = sigv4_headers(
        "GET",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        {},
        {"Range": "bytes=0-9"},
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        region="us-east-1",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
    )
    assert h["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        " Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible server on loopback (moto's, if installed); yields the bucket name."""
    import datetime as dt
    import http.client

    import moto.server as moto_server

    from mailhouse.store.postgres.blobs_s3 import sigv4_headers
    from tests.peers.ports import free_port

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    headers = sigv4_headers(
        "PUT", f"127.0.0.1:{port}", "/mh-blobs", {}, {}, hashlib.sha256(b"").hexdigest(),
        region="us-east-1", access_key="test", secret_key="test", now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("PUT", "/mh-blobs", headers=headers)
    assert conn.getresponse().status == 200
    conn.close()
    try:
        yield "mh-blobs"
    finally:
        server.stop()


async def test_s3_blobs(postgres_db_url: str, tmp_path: Path, s3_env: str) -> None:
    from mailhouse.store.postgres.blobs_s3 import S3BlobStore

    s = _node(postgres_db_url + f"?blobs=s3://{s3_env}/node", tmp_path, "s3")
    assert isinstance(s.blobs, S3BlobStore)
    await s.open()
    try:
        acc, inbox = await _inbox(s)
        recs = await s.deliver(b"Subject: s3\r\n\r\nbody\r\n", [NewMessage(inbox, "", 0)])
        assert await s.blobs.get(recs[0].blob_key) == b"Subject: s3\r\n\r\nbody\r\n"
        key = recs[0].blob_key  # issue 12 item 2: ranged GET
        assert await s.blobs.read_range(key, 3, 6) == b"ject: "
        assert await s.blobs.read_range(key, 15, 100) == b"body\r\n"
        conn = await asyncpg.connect(s._dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM blobs") == 0  # nothing in the database
        finally:
            await conn.close()
        gone, keys = await s.expunge(inbox, [recs[0].uid])
        assert gone == [recs[0].uid] and keys == [recs[0].blob_key]
        with pytest.raises(FileNotFoundError):
            await s.blobs.get(recs[0].blob_key)
        await s.blobs.delete(keys)  # deleting a missing key is fine
        assert (await s.usage(acc)).messages == 0
    finally:
        await s.close()


async def test_maildrop_lock_connection_lost(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    """The lock connection dies while its node lives: the database freed the lock (another
    node may take it), the lease is marked lost, releasing it is harmless, and the next
    acquisition on the first node opens a new connection."""
    a, b = nodes
    lease = await a.try_lock_maildrop(5)
    assert lease is not None
    assert await b.try_lock_maildrop(5) is None
    conn = await asyncpg.connect(a._dsn)
    try:
        pid = a._maildrop_locks._conn.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    deadline = asyncio.get_running_loop().time() + 5
    while (taken := await b.try_lock_maildrop(5)) is None:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    for _ in range(100):  # the termination callback runs once asyncpg notices the close
        if getattr(lease, "lost", False):
            break
        await asyncio.sleep(0.05)
    assert getattr(lease, "lost", False)
    await lease.release()  # no error, no effect on b's lock
    assert await a.try_lock_maildrop(5) is None  # b holds it: a's new connection is refused
    await taken.release()
    again = await a.try_lock_maildrop(5)
    assert again is not None
    await again.release()


async def test_s3_put_file_streams_a_spooled_message(
    postgres_db_url: str, tmp_path: Path, s3_env: str
) -> None:
    """Issue 12 item 2: `put_file` uploads prefix + file range in one streaming, signed PUT."""
    s = _node(postgres_db_url + f"?blobs=s3://{s3_env}/node", tmp_path, "s3")
    await s.open()
    try:
        src = tmp_path / "spooled"
        src.write_bytes(b"HEAD" + b"b" * 2_500_000)
        key = await s.blobs.put_file(src, prefix=b"Received: x\r\n", offset=4)
        assert await s.blobs.get(key) == b"Received: x\r\n" + b"b" * 2_500_000
    finally:
        await s.close()
