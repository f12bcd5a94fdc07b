"""CONDSTORE consistency (RFC 7162): HIGHESTMODSEQ at SELECT against the MODSEQ of the messages,
and the MODSEQ that ESEARCH reports with MIN/MAX (§3.1.5) — issue 13 §1.

* A change committed between the moment the shared index reads the mailbox row and the moment
  it reads the records used to leave SELECT announcing ``OK [HIGHESTMODSEQ h]`` while
  ``FETCH n MODSEQ`` answered more than ``h``. The store here commits a STORE right after the
  row is read (the race a 20-client stress run hits), on the real SQLite store.
* ``SEARCH RETURN (MAX) … MODSEQ …`` reports the MODSEQ of the MAX message only, like Dovecot
  (over the wire, both servers, the same steps).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse.imapserver.index import IndexRegistry
from mailhouse.imapserver.selected import RecentClaims, SelectedMailbox
from mailhouse.store.api import FlagMode, Mailbox, NewMessage
from mailhouse.store.sqlite.backend import SqliteStore
from tests.imapserver.imap_wire import RawIMAP


class _RacingStore(SqliteStore):
    """A real store that commits one STORE right after the next mailbox-row read."""

    race: tuple[int, int] | None = None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        got = await super().get_mailbox_by_id(mailbox_id)
        if self.race is not None:
            mb_id, uid = self.race
            self.race = None
            await self.store_flags(mb_id, [uid], FlagMode.ADD, frozenset({"\\Flagged"}))
        return got


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[_RacingStore]:
    s = _RacingStore(tmp_path / "index.db", tmp_path / "blobs")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _select(store: _RacingStore, registry: IndexRegistry, mb: Mailbox) -> SelectedMailbox:
    return await SelectedMailbox.open(
        store,
        mb,
        RecentClaims(store),
        readonly=False,
        rev2=True,
        condstore=True,
        qresync=False,
        registry=registry,
    )


@pytest.mark.parametrize("loaded", [False, True], ids=["first-select", "index-kept"])
async def test_highestmodseq_covers_every_record(store: _RacingStore, loaded: bool) -> None:
    await store.add_domain("example.org")
    acc = await store.add_account("a@example.org", "x")
    mb = await store.get_mailbox(acc.id, "INBOX")
    assert mb is not None
    await store.deliver(b"Subject: hi\r\n\r\nbody\r\n", [NewMessage(mb.id, "", 0) for _ in range(3)])
    registry = IndexRegistry(store)
    keep = await _select(store, registry, mb) if loaded else None  # the index stays loaded
    if loaded:  # HIGHESTMODSEQ moves, so the next sync reads the changes
        await store.store_flags(mb.id, [2], FlagMode.ADD, frozenset({"\\Seen"}))
    store.race = (mb.id, 1)
    view = await _select(store, registry, mb)
    newest = max(view.records[u].modseq for u in view.uids)
    # RFC 7162 §3.1.2.1: HIGHESTMODSEQ is the highest mod-sequence of all messages
    assert view.records[1].modseq == newest and "\\Flagged" in view.records[1].flags
    assert view.known_modseq >= newest
    del keep


# ------------------------------------------------------------- ESEARCH MODSEQ, against Dovecot

STEPS = [
    "STORE 2 +FLAGS (\\Seen)",
    "STORE 1 +FLAGS (\\Flagged)",
    "SEARCH RETURN (MIN) MODSEQ 1",
    "SEARCH RETURN (MAX) MODSEQ 1",
    "SEARCH RETURN (MIN MAX) MODSEQ 1",
    "SEARCH RETURN (ALL) MODSEQ 1",
    "SEARCH RETURN (COUNT) MODSEQ 1",
    "SEARCH RETURN (MIN) 2:3 MODSEQ 1",
    "SEARCH RETURN (MAX) 1:2 MODSEQ 1",
    "UID SEARCH RETURN (MAX) MODSEQ 1",
    "SEARCH MODSEQ 1",
]
MSG = b"From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n"


def _script(c: RawIMAP) -> list[list[bytes]]:
    c.cmd("ENABLE CONDSTORE")
    c.cmd("CREATE ms")
    for _ in range(3):
        c.append("ms", MSG)
    out = []
    r, _ = c.cmd("SELECT ms")
    out.append([x for x in r if b"HIGHESTMODSEQ" in x])
    out.append(c.cmd("FETCH 1:* (MODSEQ)")[0])
    for step in STEPS:
        r, _ = c.cmd(step)
        out.append(
            [
                x.replace(b" FLAGS (\\Seen \\Recent)", b"").replace(b"FLAGS (\\Flagged \\Recent) ", b"")
                for x in r
            ]
        )
    return out


@pytest.fixture(scope="module")
def servers(dovecot_factory: Any) -> Any:
    from tests.mailhouse_proc import PASSWORD, MailhouseProcess

    dc = dovecot_factory(users={"u@x.test": "pw"}, pop3_port=0)
    mh = MailhouseProcess(
        Path(tempfile.mkdtemp()), services=("imap",), extra="[auth]\nallow_plaintext = true\n"
    )
    mh.add_domain("example.org")
    mh.add_user("u@example.org", PASSWORD)
    mh.start()
    try:
        a = RawIMAP(dc.host, dc.imap_port)
        a.cmd('LOGIN "u@x.test" "pw"')
        b = RawIMAP(*mh.addr("imap"))
        b.cmd(f'LOGIN "u@example.org" "{PASSWORD}"')
        yield a, b
        a.close()
        b.close()
    finally:
        mh.stop()


def test_esearch_modseq_matches_dovecot(servers: Any) -> None:
    dovecot, ours = servers
    theirs, got = _script(dovecot), _script(ours)
    for step, t, o in zip(["SELECT", "FETCH", *STEPS], theirs, got, strict=True):
        if step.startswith("STORE"):  # FETCH item order differs (MODSEQ first in Dovecot)
            continue
        assert o == t, f"{step}: dovecot {t} ours {o}"


@pytest.mark.parametrize(
    "step", ["FETCH 1 (MODSEQ)", "SEARCH MODSEQ 1", "STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (x)"]
)
def test_condstore_enabling_command_sends_highestmodseq(servers: Any, step: str) -> None:
    """RFC 7162 §3.1: the first CONDSTORE-enabling command while a mailbox is selected gets an
    untagged ``OK [HIGHESTMODSEQ n]`` (imaptest's esearch-condstore), once — as Dovecot answers."""
    from tests.mailhouse_proc import PASSWORD

    dovecot, ours = servers
    box = "en" + str(abs(hash(step)) % 10**6)
    results = []
    for c, login in ((dovecot, 'LOGIN "u@x.test" "pw"'), (ours, f'LOGIN "u@example.org" "{PASSWORD}"')):
        fresh = RawIMAP(*c.sock.getpeername()[:2])  # a session with CONDSTORE not yet enabled
        fresh.cmd(login)
        fresh.cmd(f"CREATE {box}")
        fresh.append(box, MSG)
        fresh.cmd(f"SELECT {box}")
        first, _ = fresh.cmd(step)
        second, _ = fresh.cmd(step)
        fresh.close()
        results.append(
            (sum(b"HIGHESTMODSEQ" in x for x in first), sum(b"HIGHESTMODSEQ" in x for x in second))
        )
    assert results[0] == (1, 0), results  # the reference
    assert results[1] == results[0]
