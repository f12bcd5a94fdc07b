"""`backup/export.py`: export to Maildir++ and mboxrd, read back with Python's `mailbox`
byte-identical, with flags and keywords (the round trip through `mailhouse import` is the
integrator's: it lands on another branch)."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

from mailhouse.backup.export import Format, export, maildir_folder
from mailhouse.store.api import NewMessage, Store
from mailhouse.store.sqlite.backend import SqliteStore
from tests.backup.conftest import BIG

TRICKY = (
    b"Return-Path: <sender@example.net>\r\nMessage-ID: <tricky@example.org>\r\nSubject: From lines\r\n\r\n"
    b"From here on\r\n>From quoted already\r\n>>From twice\r\nFrom\r\nlast line From x\r\n"
)


async def _add_tricky(live: SqliteStore) -> None:
    acc = await live.get_account("alice@example.org")
    assert acc is not None
    box = await live.create_mailbox(acc.id, "Caf\u00e9/Notes")
    flags = frozenset({"\\Answered", "\\Deleted", "\\Draft", "$Forwarded", "project-x"})
    await live.append_octets([(TRICKY, NewMessage(box.id, "", 0, flags, 1_650_000_000.0))])


async def _expected(store: Store, address: str) -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
    acc = await store.get_account(address)
    assert acc is not None
    out = {}
    for mb in await store.list_mailboxes(acc.id):
        msgs = await store.list_messages(mb.id)
        out[mb.name] = [(await store.blobs.get(m.blob_key), m.flags, m.internaldate) for m in msgs]
    return out


async def test_maildir_export_reads_back(live: SqliteStore, tmp_path: Path) -> None:
    await _add_tricky(live)
    res = await export(live, Format.MAILDIR, tmp_path / "out", ["alice@example.org"])
    assert res.problems == [] and res.accounts == 1 and res.messages == 4
    assert not (tmp_path / "out" / "example.org" / "bob").exists()  # only the user asked for
    want = await _expected(live, "alice@example.org")
    root = tmp_path / "out" / "example.org" / "alice"
    md = mailbox.Maildir(root, create=False)
    assert sorted(md.list_folders()) == sorted(maildir_folder(n)[1:] for n in want if n != "INBOX")
    acc = await live.get_account("alice@example.org")
    assert acc is not None
    for name, msgs in want.items():
        folder = md if name == "INBOX" else md.get_folder(maildir_folder(name)[1:])
        d = root / maildir_folder(name)
        kw = dict(line.split(" ", 1)[::-1] for line in (d / "dovecot-keywords").read_text().splitlines())
        got = []
        for key in folder.keys():
            m = folder.get_message(key)
            flags = set(m.get_flags())
            letters = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
            sysflags = {letters[c] for c in flags if c in letters}
            kws = {k for k, i in kw.items() if chr(ord("a") + int(i)) in flags}
            path = d / folder._toc[key]  # type: ignore[attr-defined]
            got.append((folder.get_bytes(key), frozenset(sysflags | kws), path.stat().st_mtime))
        assert sorted(got, key=lambda t: t[2]) == sorted(msgs, key=lambda t: t[2])
        mb = await live.get_mailbox(acc.id, name)
        assert mb is not None
        uidlist = (d / "dovecot-uidlist").read_text().splitlines()
        assert uidlist[0] == f"3 V{mb.uidvalidity} N{mb.uidnext}"
        assert [int(x.split()[0]) for x in uidlist[1:]] == [m.uid for m in await live.list_messages(mb.id)]
    assert (root / maildir_folder("Caf\u00e9/Notes")).name == ".Caf&AOk-.Notes"  # modified UTF-7


def _unquote(raw: bytes) -> bytes:
    """mboxrd: one '>' off every line matching ^>+From ; our status fields out again."""
    lines = raw.splitlines(keepends=True)
    lines = [ln for ln in lines if not re.match(rb"(Status|X-Status|X-Keywords): ", ln)]
    return b"".join(ln[1:] if re.match(rb"^>+From ", ln) else ln for ln in lines)


async def test_mbox_export_reads_back(live: SqliteStore, tmp_path: Path) -> None:
    await _add_tricky(live)
    res = await export(live, Format.MBOX, tmp_path / "out")
    assert res.problems == [] and res.accounts == 2
    for address in ("alice@example.org", "bob@example.org"):
        want = await _expected(live, address)
        for name, msgs in want.items():
            box = mailbox.mbox(tmp_path / "out" / address / f"{name}.mbox", create=False)
            got = []
            for key in box.keys():
                m = box.get_message(key)
                flags = set(m.get_flags())
                sysflags = {
                    f
                    for c, f in (("R", "\\Seen"), ("A", "\\Answered"), ("F", "\\Flagged"), ("D", "\\Deleted"))
                    if c in flags
                }
                if "T" in (m["X-Status"] or ""):
                    sysflags.add("\\Draft")
                kws = set((m["X-Keywords"] or "").split())
                got.append((_unquote(box.get_bytes(key)), frozenset(sysflags | kws)))
            assert got == [(data, flags) for data, flags, _ in msgs], name
    raw = (tmp_path / "out" / "alice@example.org" / "Caf\u00e9/Notes.mbox").read_bytes()
    assert raw.startswith(b"From sender@example.net Fri Apr 15 05:20:00 2022\n")
    assert b"\r\n>From here on\r\n>>From quoted already\r\n>>>From twice\r\nFrom\r\n" in raw
    big = mailbox.mbox(tmp_path / "out" / "bob@example.org" / "INBOX.mbox", create=False)
    assert max(len(big.get_bytes(k)) for k in big.keys()) > BIG - 200  # streamed in slices
