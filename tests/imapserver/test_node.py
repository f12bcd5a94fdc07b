"""The per-node IMAP state (imapserver.node): the imap and imaps listeners of one ``Server``
share its ``ImapNode`` (message cache, mailbox indexes, METADATA locks, change hub, \\Recent);
two ``Server`` objects — two nodes in one process — share none of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.accounts.passwords import make_credentials
from mailhouse.config import default_config
from mailhouse.imapserver import index, metadata, selected
from mailhouse.imapserver.server import Server
from mailhouse.services import Services, build
from mailhouse.store.api import NewMessage
from tests.imapserver.server_helpers import RawIMAP
from tests.mailhouse_proc import PASSWORD

BODY = b"node-cache-marker\r\n"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    s = await build(default_config(tmp_path))
    yield s
    await s.outbound.pool.close()
    await s.store.close()


def test_no_module_globals_left() -> None:
    for mod, name in (
        (selected, "_cache"),
        (selected, "_inflight"),
        (index, "_registries"),
        (metadata, "_locks"),
    ):
        assert not hasattr(mod, name), f"{mod.__name__}.{name}"


async def test_two_servers_share_nothing(svc: Services) -> None:
    one, other = Server(svc), Server(svc)
    a, b = one.node, other.node
    assert a is not b
    assert a.messages is not b.messages and a.index is not b.index
    assert a.hub is not b.hub and a.claims is not b.claims
    assert a.metadata_locks is not b.metadata_locks
    lock = a.metadata_locks(1, "")
    assert a.metadata_locks(1, "") is lock and b.metadata_locks(1, "") is not lock


def _fetch_body(addr: tuple[str, int], tls: bool) -> list[bytes]:
    c = RawIMAP(addr, tls=tls)
    try:
        c.login("alice")
        assert b" OK " in c.cmd("SELECT INBOX")[-1]
        return c.cmd("FETCH 1 BODY.PEEK[]")
    finally:
        c.close()


async def test_listeners_of_one_server_share_its_node(svc: Services) -> None:
    svc.cfg.allow_plaintext_auth = True  # LOGIN on the plain imap listener
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    acc = await svc.store.add_account("alice@example.org", pw_hash, scram=scram)
    inbox = await svc.store.get_mailbox(acc.id, "INBOX")
    assert inbox is not None
    raw = b"Subject: hi\r\n\r\n" + BODY
    [rec] = await svc.store.deliver(raw, [NewMessage(inbox.id, "", 0)])

    one, other = Server(svc), Server(svc)
    listeners = [
        await one.listen("imap", "127.0.0.1", 0),
        await one.listen("imaps", "127.0.0.1", 0),
        await other.listen("imap", "127.0.0.1", 0),
    ]
    imap, imaps, other_imap = (s.sockets[0].getsockname()[:2] for s in listeners)
    try:
        # imap of ``one`` reads the message: it lands in ``one``'s cache only
        got = await asyncio.to_thread(_fetch_body, imap, False)
        assert BODY in b"\r\n".join(got) and b" OK " in got[-1]
        assert one.node.messages.peek(rec) is not None
        assert other.node.messages.peek(rec) is None
        assert inbox.id in one.node.index.recent and inbox.id not in other.node.index.recent

        # with the blob gone, imaps of ``one`` still serves it from the shared cache ...
        await svc.store.blobs.delete([rec.blob_key])
        got = await asyncio.to_thread(_fetch_body, imaps, True)
        assert BODY in b"\r\n".join(got)
        # ... and the other node, which never cached it, cannot
        got = await asyncio.to_thread(_fetch_body, other_imap, False)
        assert BODY not in b"\r\n".join(got)
        assert one.node.index.recent[inbox.id] is not other.node.index.recent[inbox.id]
    finally:
        for s in listeners:
            s.close()
            await s.wait_closed()
