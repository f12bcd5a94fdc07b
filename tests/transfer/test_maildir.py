"""`transfer/maildir.py` + `transfer/importer.py`: Maildir++ and LAYOUT=fs trees made by hand
(the real-Dovecot ones are in test_dovecot.py), on both store backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhouse.store.store import MailStore
from mailhouse.transfer.importer import Importer, SourceError
from mailhouse.transfer.maildir import MaildirSource
from tests.transfer.conftest import ALICE
from tests.transfer.helpers import contents, folders

MAX = 1 << 20


def msg(subject: str, body: str = "hello") -> bytes:
    return f"From: bob@example.net\nSubject: {subject}\n\n{body}\n".encode()


def put(folder: Path, name: str, data: bytes, sub: str = "cur", mtime: float = 1_600_000_000) -> None:
    for d in ("cur", "new", "tmp"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    p = folder / sub / name
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


def make_tree(root: Path) -> None:
    put(root, "1600000001.M1P1.h:2,S", msg("one"), mtime=1_600_000_001)
    put(root, "1600000002.M2P1.h:2,FRab", msg("two"), mtime=1_600_000_002)
    put(root, "1600000003.M3P1.h", msg("three"), sub="new", mtime=1_600_000_003)
    (root / "dovecot-keywords").write_text("0 $Important\n1 project-x\n")
    (root / "dovecot-uidlist").write_text(
        "3 V1500000000 N40 Gabc\n7 :1600000001.M1P1.h\n9 W123 :1600000002.M2P1.h\n12 :1600000003.M3P1.h\n"
    )
    put(root / ".Sent Items", "1600000010.M1P1.h:2,S", msg("sent"))
    put(root / ".Lists.python", "1600000011.M1P1.h:2,", msg("list"))
    put(root / ".&AMk-t&AOk-", "1600000012.M1P1.h:2,", msg("summer"))  # mUTF-7 "Été"
    bad = os.fsencode(root) + b"/.caf\xe9"  # a Latin-1 folder name: not UTF-8
    put(Path(os.fsdecode(bad)), "1600000013.M1P1.h:2,S", msg("latin"))


async def test_maildirpp_folders_flags_keywords_dates_uids(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_tree(root)
    report = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert report.failed == []
    assert report.imported == 7
    f = await folders(store)
    assert f["INBOX"][0] == 3
    assert f["Sent"] == (1, "\\Sent")  # "Sent Items" is the account's \Sent
    assert "Sent Items" not in f
    assert f["Lists/python"][0] == 1
    assert f["Été"][0] == 1
    assert f["caf\ufffd"][0] == 1
    inbox = await contents(store, "INBOX")
    assert [(u, fl, d) for u, fl, d, _ in inbox] == [
        (7, frozenset({"\\Seen"}), 1_600_000_001),
        (9, frozenset({"\\Flagged", "\\Answered", "$Important", "project-x"}), 1_600_000_002),
        (12, frozenset(), 1_600_000_003),
    ]
    assert inbox[0][3] == msg("one").replace(b"\n", b"\r\n")
    acc = await store.get_account(ALICE)
    assert acc is not None
    mb = await store.get_mailbox(acc.id, "INBOX")
    assert mb is not None and mb.uidvalidity == 1500000000 and mb.uidnext == 13


async def test_rerun_imports_only_what_is_new(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_tree(root)
    await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    # a flag changed (the name's info part) and a message moved new/ -> cur/: the same messages
    os.rename(root / "cur/1600000001.M1P1.h:2,S", root / "cur/1600000001.M1P1.h:2,RS")
    os.rename(root / "new/1600000003.M3P1.h", root / "cur/1600000003.M3P1.h:2,")
    put(root, "1600000020.M9P1.h:2,", msg("new one"), sub="new", mtime=1_600_000_020)
    again = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert (again.imported, again.skipped, again.failed) == (1, 7, [])
    inbox = await contents(store, "INBOX")
    assert [u for u, *_ in inbox] == [7, 9, 12, 13]  # the new one after the source's UIDs


async def test_layout_fs(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "mail"
    put(root, "1.M1.h:2,S", msg("inbox"))
    put(root / "Archive", "2.M1.h:2,", msg("archived"))
    put(root / "work" / "2026", "3.M1.h:2,F", msg("deep"))
    report = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert report.failed == [] and report.imported == 3
    f = await folders(store)
    assert f["INBOX"][0] == 1 and f["Archive"] == (1, "\\Archive") and f["work/2026"][0] == 1
    assert "work" not in f  # no cur/new there: not a mailbox
    [(_, flags, _, _)] = await contents(store, "work/2026")
    assert flags == {"\\Flagged"}


async def test_bad_input_is_reported_and_the_rest_imports(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    put(root, "1.M1.h:2,S", msg("good"))
    put(root, "2.M1.h:2,S", b"")  # 0 bytes
    put(root, "3.M1.h:1,experimental", msg("info 1"))  # not "2,"
    put(root, "4.M1.h:2,S!", msg("bad letter"))
    put(root, "5.M1.h:2,", b"X" * (MAX + 1))  # over the limit
    put(root, "6.M1.h:2,", b"\n\n")  # blank lines only
    report = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert report.imported == 1
    reasons = {Path(w).name: r for w, r in report.failed}
    assert reasons["2.M1.h:2,S"] == "empty message (0 octets)"
    assert "not '2,FLAGS'" in reasons["3.M1.h:1,experimental"]
    assert "unknown flag letter '!'" in reasons["4.M1.h:2,S!"]
    assert "over the limit" in reasons["5.M1.h:2,"]
    assert "blank lines only" in reasons["6.M1.h:2,"]
    assert len(report.failed) == 5


async def test_dry_run_stores_nothing(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_tree(root)
    report = await Importer(store, MaildirSource(root), ALICE, max_size=MAX, dry_run=True).run()
    assert report.imported == 7 and report.failed == []
    f = await folders(store)
    assert all(n == 0 for n, _ in f.values()) and "Lists/python" not in f


class Recorder:
    def __init__(self) -> None:
        self.total = [0, 0]
        self.done = [0, 0]
        self.totals_before_first_advance: list[int] | None = None

    def add_total(self, messages: int, octets: int) -> None:
        self.total[0] += messages
        self.total[1] += octets

    def advance(self, messages: int, octets: int) -> None:
        if self.totals_before_first_advance is None:
            self.totals_before_first_advance = list(self.total)
        self.done[0] += messages
        self.done[1] += octets


async def test_progress_counts_messages_and_octets(store: MailStore, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_tree(root)
    put(root, "2.M1.h:2,S", b"")  # a failure advances the bar too
    rec = Recorder()
    await Importer(store, MaildirSource(root), ALICE, max_size=MAX, progress=rec).run()
    assert rec.total == rec.done and rec.total[0] == 8
    assert rec.totals_before_first_advance == rec.total  # every folder listed first: the ETA is true
    assert rec.total[1] == sum(p.stat().st_size for p in root.rglob("*") if p.parent.name in ("cur", "new"))


def test_a_file_renamed_after_the_listing_is_found(tmp_path: Path) -> None:
    """A running Dovecot renames files when flags change: the message is read under its new name."""
    root = tmp_path / "Maildir"
    put(root, "1.M1.h", msg("moving"), sub="new")
    put(root, "2.M1.h:2,", msg("gone"))
    src = MaildirSource(root)
    [folder] = src.folders()
    listed = {m.key: m for m in src.messages(folder)}
    os.rename(root / "new/1.M1.h", root / "cur/1.M1.h:2,S")
    os.unlink(root / "cur/2.M1.h:2,")
    data, _ = src.read(listed["maildir:1.M1.h"], MAX)
    assert data == msg("moving")
    with pytest.raises(SourceError, match="gone from the Maildir"):
        src.read(listed["maildir:2.M1.h"], MAX)
