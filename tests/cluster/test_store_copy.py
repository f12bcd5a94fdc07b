"""`mailhouse store copy`: SQLite → PostgreSQL → SQLite keeps everything a client relies on.

The source is filled through the public store API only (as Mailhouse would fill it), so
the copy is checked against real backend behaviour: UIDNEXT above the highest UID after
expunges, modseqs, flags, shared blobs after COPY, the expunged-UID memory, queue entries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from mailhouse.store import open_store
from mailhouse.store.api import (
    DkimKey,
    FlagMode,
    NewMessage,
    QueueEntry,
    QueueRecipient,
    ScramKeys,
    Store,
)
from mailhouse.store.copy import CopyError, copy_store
from mailhouse.store.verify import verify_store

SCRAM = ScramKeys(b"salt-bytes\x00\xff", 4096, b"S" * 32, b"K" * 32)


async def _fill(store: Store) -> dict[str, object]:
    """A small installation with every kind of item; returns facts to check afterwards."""
    await store.add_domain("example.org")
    await store.add_domain("other.test")
    alice = await store.add_account(
        "alice@example.org",
        "$argon2id$v=19$m=65536,t=3,p=4$abc$def",
        scram=SCRAM,
        quota_bytes=10_000_000,
        is_admin=True,
    )
    bob = await store.add_account("bob@other.test", "$argon2id$bob", quota_messages=500)
    await store.add_alias("sales@example.org", "alice@example.org")
    await store.add_alias("@other.test", "bob@other.test")
    await store.set_dkim_key(
        DkimKey("example.org", "mh1", "ed25519-sha256", b"c2VlZA==", "v=DKIM1; k=ed25519; p=x")
    )
    await store.set_dkim_key(
        DkimKey("example.org", "rsa1", "rsa-sha256", b"-----BEGIN-----\n", "v=DKIM1; p=y")
    )
    work = await store.create_mailbox(alice.id, "Work/Projects")
    # the newest mailbox is deleted: the UIDVALIDITY counter is past every existing mailbox's
    tmp = await store.create_mailbox(alice.id, "Temp")
    await store.delete_mailbox(tmp.id)
    facts_uv = tmp.uidvalidity
    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None
    recs = []
    for i in range(25):
        body = f"From: x@remote.test\r\nMessage-ID: <{i}@t>\r\nSubject: m{i}\r\n\r\nbody {i}\r\n".encode()
        body += bytes(range(256)) * (i % 3)  # 8-bit content must survive byte for byte
        recs += await store.deliver(
            body,
            [
                NewMessage(
                    inbox.id,
                    "",
                    0,
                    frozenset({"$Forwarded"} if i % 4 == 0 else ()),
                    internaldate=1_600_000_000.25 + i,
                    delivery_key=f"Q{i}:1",
                )
            ],
        )
    await store.store_flags(inbox.id, [r.uid for r in recs[:10]], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.store_flags(inbox.id, [3, 4], FlagMode.ADD, frozenset({"\\Flagged", "Work"}))
    await store.copy(inbox.id, [5, 6, 7], work.id)  # shares blobs with INBOX
    await store.expunge(inbox.id, [21, 22, 23, 24, 25, 2])  # the highest UIDs: UIDNEXT 26 > max UID 20
    await store.set_subscribed(alice.id, "Work/Projects", True)
    await store.set_subscribed(alice.id, "Gone", True)  # subscriptions may name no mailbox (RFC 9051 §6.3.7)
    await store.set_metadata(alice.id, "", "/private/comment", "hello")
    await store.set_metadata(alice.id, "INBOX", "/shared/vendor/x", "ü")
    await store.shared_secret("web-session", "5e" * 32)  # the webmail's cookie key
    await store.set_acl(work.id, "bob@other.test", "lrs")  # RFC 4314 rights and bob's own \Seen
    await store.set_seen_by(bob.id, work.id, [1, 3], True)
    bob_inbox = await store.get_mailbox(bob.id, "INBOX")
    assert bob_inbox is not None
    await store.deliver(b"Subject: bob\r\n\r\nhi\r\n", [NewMessage(bob_inbox.id, "", 0)])
    big = b"Subject: big\r\n\r\n" + bytes(range(256)) * 2500  # 640 kB: a file, not an inline blob, on SQLite
    await store.deliver(big, [NewMessage(bob_inbox.id, "", 0)])
    qblob = await store.blobs.put(b"Subject: out\r\n\r\nqueued\r\n")
    await store.enqueue(
        QueueEntry(
            "ABCDEF123456",
            "alice@example.org",
            [
                QueueRecipient("x@remote.test", notify="SUCCESS,FAILURE", orcpt="rfc822;x@remote.test"),
                QueueRecipient("y@remote.test", status="deferred", last_reply="451 try later"),
            ],
            qblob,
            24,
            1_700_000_000.5,
            1_700_000_300.0,
            attempts=1,
            ret="HDRS",
            envid="E1",
            lease_owner="old-node:1",
            lease_until=2e9,
            extra={"dkim": "done"},
        )
    )
    return {"inbox": inbox.id, "work": work.id, "alice": alice.id, "deleted_uv": facts_uv}


async def _open(url: str, data_dir: Path) -> Store:
    s = open_store(url, data_dir)
    await s.open()
    return s


async def test_copy_sqlite_to_postgres_and_back_is_identical(postgres_db_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'a' / 'mailhouse.db'}"
    src = await _open(sqlite_url, tmp_path / "a")
    facts = await _fill(src)
    pg = await _open(postgres_db_url, tmp_path / "pg")
    try:
        res = await copy_store(src, pg)
        assert (res.domains, res.accounts, res.aliases, res.dkim_keys) == (2, 2, 2, 2)
        assert res.messages == 19 + 3 + 2 and res.expunged == 6 and res.queue == 1
        assert res.blobs == 19 + 2 + 1  # COPY'd messages share their blob: copied once
        rep = await verify_store(src, pg, blob_map=res.blob_map, blob_sha=res.blob_sha)
        assert rep.ok, rep.render()
        assert rep["messages"].destination == 24 and rep["blobs"].destination == 22

        inbox = await pg.get_mailbox_by_id(int(facts["inbox"]))  # type: ignore[arg-type]
        src_inbox = await src.get_mailbox_by_id(int(facts["inbox"]))  # type: ignore[arg-type]
        assert inbox == src_inbox and inbox is not None
        msgs = await pg.list_messages(inbox.id)
        assert inbox.uidnext == 26 and max(m.uid for m in msgs) == 20  # no UID reuse after the move
        assert await pg.expunged_since(inbox.id, 0) == [2, 21, 22, 23, 24, 25]
        assert {m.uid for m in msgs if "\\Flagged" in m.flags} == {3, 4}
        acc = await pg.get_account("alice@example.org")
        assert acc is not None and acc.scram == SCRAM and acc.password_hash.startswith("$argon2id$")
        q = await pg.get("ABCDEF123456")
        assert q is not None and q.lease_owner == "" and q.lease_until == 0.0  # old node's lease dropped
        assert await pg.blobs.get(q.blob_key) == b"Subject: out\r\n\r\nqueued\r\n"
        assert await pg.shared_secret("web-session", "00") == "5e" * 32  # webmail sessions survive
        bob = await pg.get_account("bob@other.test")
        assert bob is not None
        assert [(e.identifier, e.rights) for e in await pg.get_acl(int(facts["work"]))] == [
            ("bob@other.test", "lrs")
        ]  # type: ignore[arg-type]
        assert await pg.seen_by(bob.id, int(facts["work"])) == {1, 3}  # type: ignore[arg-type]

        # life goes on after the move: a redelivery is still idempotent, new ids/UIDVALIDITYs are fresh
        again = await pg.deliver(b"dup", [NewMessage(inbox.id, "", 0, delivery_key="Q0:1")])
        assert again[0].uid == 1  # the existing copy, not a new message
        new = await pg.deliver(b"Subject: new\r\n\r\n", [NewMessage(inbox.id, "", 0)])
        assert new[0].uid == 26 and new[0].modseq == inbox.highestmodseq + 1
        all_uv = [m.uidvalidity for a in await src.list_accounts() for m in await src.list_mailboxes(a.id)]
        fresh = await pg.create_mailbox(int(facts["alice"]), "After")  # type: ignore[arg-type]
        assert max(all_uv) < int(facts["deleted_uv"]) < fresh.uidvalidity  # type: ignore[call-overload]
        ids = [
            m.id for a in await pg.list_accounts() for m in await pg.list_mailboxes(a.id) if m.name != "After"
        ]
        assert fresh.id > max(ids)
        carol = await pg.add_account("carol@example.org", "h")
        assert carol.id not in {a.id for a in await src.list_accounts()}
        await pg.add_alias("info@example.org", "carol@example.org")
        await pg.add_domain("third.test")

        # and back again, into a fresh SQLite installation
        back = await _open(f"sqlite:///{tmp_path / 'b' / 'mailhouse.db'}", tmp_path / "b")
        try:
            res2 = await copy_store(pg, back)
            rep2 = await verify_store(pg, back, blob_map=res2.blob_map)
            assert rep2.ok, rep2.render()
            b_inbox = await back.get_mailbox_by_id(inbox.id)
            assert b_inbox is not None and b_inbox.uidnext == 27
            assert await back.shared_secret("web-session", "00") == "5e" * 32
        finally:
            await back.close()
    finally:
        await pg.close()
        await src.close()


async def test_verify_finds_a_difference_and_copy_refuses_a_full_destination(
    postgres_db_url: str, tmp_path: Path
) -> None:
    src = await _open(f"sqlite:///{tmp_path / 'a' / 'mailhouse.db'}", tmp_path / "a")
    facts = await _fill(src)
    pg = await _open(postgres_db_url, tmp_path / "pg")
    try:
        res = await copy_store(src, pg)
        with pytest.raises(CopyError, match="not empty"):
            await copy_store(src, pg)
        # tamper with the copy behind the API's back: one flag, one UIDNEXT, one blob byte
        conn = await asyncpg.connect(postgres_db_url)
        try:
            await conn.execute("UPDATE messages SET flags='{}' WHERE mailbox_id=$1 AND uid=3", facts["inbox"])
            await conn.execute("UPDATE mailboxes SET uidnext=uidnext-1 WHERE id=$1", facts["work"])
            key = res.blob_map[(await src.list_messages(int(facts["inbox"])))[0].blob_key]  # type: ignore[arg-type]
            await conn.execute("UPDATE blobs SET data = data || '\\x00'::bytea WHERE key=$1", key)
            await conn.execute("UPDATE acl SET rights='lrsw' WHERE mailbox_id=$1", facts["work"])
        finally:
            await conn.close()
        rep = await verify_store(src, pg, blob_map=res.blob_map)
        assert not rep.ok
        assert not rep["messages"].ok and "UID 3" in rep["messages"].problems[0]
        assert not rep["mailboxes"].ok and "Work/Projects" in rep["mailboxes"].problems[0]
        assert not rep["acl"].ok and "lrsw" in rep["acl"].problems[0]
        assert rep["blobs"].problems == [
            f"blob {next(k for k, v in res.blob_map.items() if v == key)}: bytes differ in destination"
        ]
        assert "FAILED" in rep.render()
    finally:
        await pg.close()
        await src.close()


def test_cli_store_copy_progress_and_report(postgres_db_url: str, tmp_path: Path) -> None:
    import asyncio

    data = tmp_path / "old"
    sqlite_url = f"sqlite:///{data / 'mailhouse.db'}"

    async def fill() -> None:
        s = await _open(sqlite_url, data)
        try:
            await _fill(s)
        finally:
            await s.close()

    asyncio.run(fill())
    cfg = tmp_path / "mailhouse.toml"
    cfg.write_text(f'hostname = "mail.example.org"\ndata_dir = "{data}"\n')
    cmd = [
        sys.executable,
        "-m",
        "mailhouse",
        "--config",
        str(cfg),
        "store",
        "copy",
        "--from",
        sqlite_url,
        "--to",
        postgres_db_url,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "25/25 messages" in r.stderr and "100.0%" in r.stderr  # progress: 24 in mailboxes + 1 queued
    for line in ("domains", "accounts", "mailboxes", "messages", "blobs", "queue", "expunged uids"):
        assert any(row.startswith(line) and row.rstrip().endswith("ok") for row in r.stdout.splitlines()), (
            line
        )
    assert "verification: OK" in r.stdout
    # a second copy into the now non-empty database is refused, with exit status 1
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r2.returncode == 1 and "not empty" in r2.stderr
    # `store verify` compares without copying
    v = subprocess.run([*cmd[:6], "verify", *cmd[7:]], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and "verification: OK" in v.stdout, v.stdout + v.stderr


def test_copy_knows_every_table_of_both_schemas() -> None:
    """A migration that adds a table must teach `store copy` about it (or data is silently left behind)."""
    import re

    from mailhouse.store.copy import TABLES
    from mailhouse.store.postgres.schema import BOOTSTRAP
    from mailhouse.store.postgres.schema import MIGRATIONS as PG
    from mailhouse.store.sqlite.schema import MIGRATIONS as SQLITE

    pat = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.I)
    stmts = [x for m in [*PG, *SQLITE, BOOTSTRAP] for x in ([m] if isinstance(m, str) else m)]
    tables = {t for sql in stmts for t in pat.findall(sql)}
    assert tables == set(TABLES), (tables - set(TABLES), set(TABLES) - tables)
