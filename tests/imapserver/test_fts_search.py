"""Issue 13 §4 over real sockets: SEARCH reads only what the full-text index leaves to check.

A real ``mailhouse serve`` over a store filled (with the index) before it starts. The stored
octets of the messages that do not contain the word are then altered behind the index's back
to contain it: a SEARCH that still scanned every message would report them; one narrowed by
the index never reads them (and reports only the message that really had the word). Messages
stored before the index existed are scanned (found through the fallback), and a message
APPENDed through the server is indexed and found."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator

import pytest

from tests.imapserver.server_helpers import RawIMAP, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


def _msg(i: int, body: str) -> bytes:
    return (
        f"From: Sender <s{i}@remote.test>\r\nTo: alice@example.org\r\nSubject: note {i}\r\n"
        f"Message-ID: <{i}@remote.test>\r\n\r\n{body}\r\n"
    ).encode()


async def _provision(mh: MailhouseProcess) -> None:
    from mailhouse.accounts.admin import Admin
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.message import fts_text
    from mailhouse.store import open_store
    from mailhouse.store.api import NewMessage

    mh.data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{mh.data_dir / 'mailhouse.db'}"
    old = open_store(url, mh.data_dir)  # before the index: no indexer
    await old.open()
    try:
        await Admin(old).add_domain("example.org")
        pw_hash, scram = make_credentials(PASSWORD)
        acc = await old.add_account("alice@example.org", pw_hash, scram=scram)
        mb = await old.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        await old.deliver(
            _msg(1, "an old okapi sighting"), [NewMessage(mb.id, "", 0, internaldate=time.time())]
        )
    finally:
        await old.close()
    store = open_store(url, mh.data_dir, indexer=fts_text.extract)
    await store.open()
    try:
        for i in range(2, 12):
            body = "the zebra crossing" if i == 5 else "nothing to see here"
            await store.deliver(_msg(i, body), [NewMessage(mb.id, "", 0, internaldate=time.time())])
    finally:
        await store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    root = tmp_path_factory.mktemp("fts")
    mh = MailhouseProcess(root, services=("imaps",))
    asyncio.run(_provision(mh))
    db = sqlite3.connect(mh.data_dir / "mailhouse.db")
    with db:  # behind the index's back: same length, now containing the word
        n = db.execute(
            "UPDATE blobs SET data = CAST(replace(data, CAST('nothing' AS BLOB), CAST('zebra, ' AS BLOB)) AS BLOB)"
            " WHERE instr(data, CAST('nothing' AS BLOB)) > 0"
        )
        assert n.rowcount == 9
    db.close()
    mh.start()
    try:
        yield mh
    finally:
        mh.stop()


def _client(mh: MailhouseProcess) -> RawIMAP:
    c = RawIMAP(mh.addr("imaps"), timeout=60)
    c.login("alice")
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK")
    return c


def test_search_body_reads_only_index_candidates(server: MailhouseProcess) -> None:
    c = _client(server)
    assert c.cmd("SEARCH BODY zebra")[0] == b"* SEARCH 5"
    assert c.cmd("SEARCH TEXT ZEBRA")[0] == b"* SEARCH 5"
    assert c.cmd("SEARCH BODY ebr")[0] == b"* SEARCH 5"  # inside a word: the suffix index
    assert c.cmd('SEARCH BODY "zebra cross"')[0] == b"* SEARCH 5"  # two words: narrowed, then confirmed
    assert c.cmd("SEARCH NOT BODY zebra")[0] == b"* SEARCH 1 2 3 4 6 7 8 9 10 11"


def test_unindexed_and_appended_messages_are_found(server: MailhouseProcess) -> None:
    c = _client(server)
    assert c.cmd("SEARCH BODY okapi")[0] == b"* SEARCH 1"  # stored before the index: scanned
    raw = _msg(99, "a wandering wildebeest")
    c.send(b"A1 APPEND INBOX {%d}\r\n" % len(raw))
    assert c.line().startswith(b"+")
    c.send(raw + b"\r\n")
    assert tagged(c.until_tagged(b"A1")).startswith(b"OK")
    assert c.cmd("NOOP")
    assert c.cmd("SEARCH BODY wildebeest")[0] == b"* SEARCH 12"


def test_first_search_after_select_sees_current_flags_and_numbers(server: MailhouseProcess) -> None:
    """The first SEARCH after SELECT makes only its candidates' views (query.LazyViews): they
    carry the session's sequence numbers, UIDs and the flags as of now (another session's
    STORE), alone and combined with flag keys; RETURN (UPDATE) still uses the full list."""
    other = _client(server)
    try:
        assert tagged(other.cmd("STORE 5 +FLAGS (\\Seen)")).startswith(b"OK")
        c = _client(server)
        assert c.cmd("SEARCH BODY zebra UNSEEN")[0] == b"* SEARCH"
        c.close()
        c = _client(server)
        assert c.cmd("UID SEARCH SEEN BODY zebra")[0] == b"* SEARCH 5"
        c.close()
        c = _client(server)
        got = c.cmd("SEARCH RETURN (UPDATE ALL COUNT) BODY zebra")[0]
        assert got.endswith(b"ALL 5 COUNT 1"), got
        c.close()
    finally:
        other.cmd("STORE 5 -FLAGS (\\Seen)")
        other.close()
