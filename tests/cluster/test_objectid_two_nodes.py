"""OBJECTID (RFC 8474) across nodes and across `store copy`: MAILBOXID, EMAILID and THREADID of
the same mailbox and messages are identical on two `mailhouse serve` nodes sharing PostgreSQL,
and after a SQLite → PostgreSQL `store copy` (issue 13 §5: stable across nodes and MOVE)."""

from __future__ import annotations

import re
from pathlib import Path

from mailhouse.message.objectid import mailboxid, threadid
from mailhouse.message.parse import parse_message
from mailhouse.store.api import NewMessage, Store
from mailhouse.store.copy import copy_store
from tests.cluster.test_store_copy import _fill, _open
from tests.cluster.test_two_nodes import USER, Cluster, RawIMAP, cluster, send

__all__ = ["cluster"]  # the two-node fixture of test_two_nodes.py


def _ids(c: RawIMAP) -> tuple[bytes, list[bytes]]:
    sel = b"".join(c.cmd("SELECT INBOX"))
    box = re.search(rb"\[MAILBOXID \(([^)]*)\)\]", sel)
    assert box, sel
    rows = re.findall(rb"\* \d+ FETCH \((.*)\)\r\n", b"".join(c.cmd("FETCH 1:* (UID EMAILID THREADID)")))
    return box.group(1), rows


def test_objectids_identical_on_both_nodes_and_kept_by_move(cluster: Cluster) -> None:
    for i in range(3):
        send(cluster.b, f"oid-{i}")
    clients = []
    for node in cluster.nodes:
        c = RawIMAP(node.addr("imaps"))
        c.cmd(f'LOGIN "{USER}" "correct-horse-42"')
        clients.append(c)
    try:
        for _ in range(50):
            a_box, a_rows = _ids(clients[0])
            if len(a_rows) == 3:
                break
        b_box, b_rows = _ids(clients[1])
        assert len(a_rows) == 3 and (a_box, a_rows) == (b_box, b_rows)
        emailid_1 = re.search(rb"EMAILID \(([^)]*)\)", a_rows[0])
        assert emailid_1
        clients[0].cmd("CREATE Moved")
        clients[0].cmd("SELECT INBOX")
        clients[0].cmd("MOVE 1 Moved")  # RFC 8474 §5.1: MOVE keeps the EMAILID
        clients[1].cmd("SELECT Moved")
        moved = b"".join(clients[1].cmd("FETCH 1 (EMAILID)"))
        assert b"EMAILID (" + emailid_1.group(1) + b")" in moved
    finally:
        for c in clients:
            c.close()


async def _objectids(store: Store) -> list[tuple[str, list[tuple[str, str, str]]]]:
    out = []
    acc = await store.get_account("alice@example.org")
    assert acc is not None
    for mb in await store.list_mailboxes(acc.id):
        msgs = []
        for r in await store.list_messages(mb.id):
            raw = await store.blobs.get(r.blob_key)
            msgs.append((r.blob_key, r.emailid, threadid(parse_message(raw), r.emailid)))
        out.append((mailboxid(mb.id, mb.uidvalidity), msgs))
    return out


async def test_store_copy_keeps_objectids(postgres_db_url: str, tmp_path: Path) -> None:
    """PostgreSQL → SQLite: SQLite stores the small blobs inline under new keys (prefix "i");
    MAILBOXID, EMAILID and THREADID stay what they were."""
    pg = await _open(postgres_db_url, tmp_path / "pg")
    b = await _open(f"sqlite:///{tmp_path / 'b' / 'mailhouse.db'}", tmp_path / "b")
    try:
        await _fill(pg)
        acc = await pg.get_account("alice@example.org")
        assert acc is not None
        inbox = await pg.get_mailbox(acc.id, "INBOX")
        assert inbox is not None
        await pg.deliver(
            b"Message-ID: <r@t>\r\nReferences: <0@t>\r\n\r\nreply\r\n", [NewMessage(inbox.id, "", 0)]
        )
        await pg.deliver(b"Subject: no ids\r\n\r\nnone\r\n", [NewMessage(inbox.id, "", 0)])
        await copy_store(pg, b)
        first, second = await _objectids(pg), await _objectids(b)
        ids = lambda got: [(box, [m[1:] for m in msgs]) for box, msgs in got]  # noqa: E731
        assert ids(first) == ids(second) and len(first) >= 2
        keys = lambda got: {m[0] for _, msgs in got for m in msgs}  # noqa: E731
        assert keys(first) != keys(second)  # the blob keys did change on the way
        tids = [m[2] for _, msgs in first for m in msgs]
        assert len(set(tids)) < len(tids)  # the reply shares its root's THREADID
    finally:
        for s in (pg, b):
            await s.close()
