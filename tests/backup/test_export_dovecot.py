"""Export to Maildir, then a real Dovecot (tests/peers) serves it over IMAP with the same folders,
UIDVALIDITY, UIDNEXT, UIDs, flags, keywords, INTERNALDATEs and octets."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import time
from pathlib import Path

import pytest

from mailhouse.backup.export import Format, export
from mailhouse.proto.imap import mutf7
from mailhouse.store.api import NewMessage
from mailhouse.store.sqlite.backend import SqliteStore
from tests.peers.dovecot import DovecotInstance

pytestmark = pytest.mark.slow

NAMESPACE = "namespace inbox {\n  inbox = yes\n  separator = /\n}\n"  # Mailhouse's hierarchy separator


def _chown(root: Path, uid: int, gid: int) -> None:
    for d, dirs, files in os.walk(root):
        for n in [d, *(os.path.join(d, x) for x in dirs + files)]:
            os.chown(n, uid, gid)


async def _fill_and_export(
    live: SqliteStore, dest: Path
) -> dict[str, tuple[int, int, list[tuple[int, frozenset[str], float, bytes]]]]:
    acc = await live.get_account("alice@example.org")
    assert acc is not None
    box = await live.create_mailbox(acc.id, "Caf\u00e9")
    kws = frozenset({"$Forwarded", "project-x", "\\Deleted", "\\Draft"})
    await live.append_octets(
        [(b"Subject: x\r\n\r\nFrom me\r\n", NewMessage(box.id, "", 0, kws, 1_650_000_000.0))]
    )
    inbox = await live.get_mailbox(acc.id, "INBOX")
    assert inbox is not None
    await live.expunge(inbox.id, [1])  # a gap in the UIDs
    res = await export(live, Format.MAILDIR, dest, ["alice@example.org"])
    assert res.problems == []
    want = {}
    for mb in await live.list_mailboxes(acc.id):
        msgs = [
            (m.uid, m.flags, m.internaldate, await live.blobs.get(m.blob_key))
            for m in await live.list_messages(mb.id)
        ]
        want[mb.name] = (mb.uidvalidity, mb.uidnext, msgs)
    return want


def test_dovecot_serves_the_export(live: SqliteStore) -> None:
    dovecot = DovecotInstance(users={"alice@example.org": "pw"}, extra_conf=NAMESPACE)
    try:
        want = asyncio.run(_fill_and_export(live, dovecot.mail_dir))
        dovecot.mail_dir.mkdir(parents=True, exist_ok=True)
        _chown(dovecot.mail_dir, dovecot.uid, dovecot.gid)
        dovecot.start()
        im = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
        im.login("alice@example.org", "pw")
        typ, listing = im.list()
        names = {mutf7.decode(re.search(rb'"/" "?([^"]*)"?$', ln).group(1)) for ln in listing}  # type: ignore[union-attr,arg-type]
        assert set(want) <= names, (names, set(want))
        for name, (uidvalidity, uidnext, msgs) in want.items():
            typ, _ = im.select('"' + mutf7.encode(name).decode() + '"', readonly=True)
            assert typ == "OK", name
            assert int(im.response("UIDVALIDITY")[1][0]) == uidvalidity  # type: ignore[index,arg-type]
            typ, st = im.status('"' + mutf7.encode(name).decode() + '"', "(UIDNEXT)")
            assert int(re.search(rb"UIDNEXT (\d+)", st[0]).group(1)) == uidnext  # type: ignore[union-attr,arg-type,index]
            if not msgs:
                continue
            typ, data = im.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            got = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta, body = item
                uid = int(re.search(rb"UID (\d+)", meta).group(1))  # type: ignore[union-attr]
                flags = frozenset(
                    f.decode() for f in re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split()
                ) - {"\\Recent"}  # type: ignore[union-attr]
                when = time.mktime(imaplib.Internaldate2tuple(meta))  # type: ignore[arg-type]
                got.append((uid, flags, float(when), body))
            assert got == [(u, f, float(int(d)), b) for u, f, d, b in msgs], name
        im.logout()
    finally:
        dovecot.stop()
