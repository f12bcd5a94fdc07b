"""`transfer/mbox.py`: mbox files written by Python's `mailbox` and by mutt, and broken ones,
on both store backends."""

from __future__ import annotations

import calendar
import mailbox
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mailhouse.store.store import MailStore
from mailhouse.transfer.importer import Importer
from mailhouse.transfer.mbox import MboxSource
from tests.transfer.conftest import ALICE
from tests.transfer.helpers import contents, folders

MAX = 1 << 20
BODY_WITH_FROM = b"first\n\nFrom the start it was\n>From quoted once\n>>From quoted twice\nend\n"
BODY_MBOXO = b"first\n\nFrom the start it was\nend\n"  # mboxo cannot carry ">From " lines faithfully


def crlf(b: bytes) -> bytes:
    return b.replace(b"\n", b"\r\n")


async def test_python_mailbox_written(store: MailStore, tmp_path: Path) -> None:
    path = tmp_path / "py.mbox"
    box = mailbox.mbox(path)
    m1 = mailbox.mboxMessage(b"From: a@example.net\nSubject: one\n\n" + BODY_MBOXO)
    m1.set_from("a@example.net", time.gmtime(1_600_000_000))
    m1.set_flags("RA")  # Status: R (\Seen), X-Status: A (\Answered)
    m2 = mailbox.mboxMessage(b"From: b@example.net\nSubject: two\nX-Keywords: $Label1, project-x\n\nbody\n")
    m2.set_from("b@example.net", time.gmtime(1_600_000_100))
    m2.set_flags("OF")
    box.add(m1)
    box.add(m2)
    box.add(m2)  # an identical second copy is a message of its own
    box.close()
    report = await Importer(store, MboxSource(path), ALICE, max_size=MAX, target_folder="Old/mail").run()
    assert (report.imported, report.failed) == (3, [])
    got = await contents(store, "Old/mail")
    assert [(fl, d) for _, fl, d, _ in got] == [
        (frozenset({"\\Seen", "\\Answered"}), 1_600_000_000),
        (frozenset({"\\Flagged", "$Label1", "project-x"}), 1_600_000_100),
        (frozenset({"\\Flagged", "$Label1", "project-x"}), 1_600_000_100),
    ]
    # Python writes mboxo (">From " for "From "): one '>' comes off; metadata headers are gone
    assert got[0][3] == crlf(b"From: a@example.net\nSubject: one\n\n" + BODY_MBOXO)
    assert got[1][3] == crlf(b"From: b@example.net\nSubject: two\n\nbody\n")
    again = await Importer(store, MboxSource(path), ALICE, max_size=MAX, target_folder="Old/mail").run()
    assert (again.imported, again.skipped) == (0, 3)


def mutt_save(mbox: Path, subject: str, body: bytes) -> None:
    """Send with mutt in batch mode (sendmail=/bin/true): its Fcc copy is written to MBOX by
    mutt's own mbox writer (Content-Length, Status, body unquoted)."""
    mutt = shutil.which("mutt")
    assert mutt, "mutt (Debian package) is a test dependency: scripts/install-test-deps.sh"
    home = mbox.parent / "home"
    home.mkdir(exist_ok=True)
    cmds = (
        f"set mbox_type=mbox; set record={mbox}; set copy=yes; set sendmail=/bin/true;"
        " set from=alice@example.org; set use_from=yes; set charset=utf-8"
    )
    subprocess.run(
        [mutt, "-n", "-F", "/dev/null", "-e", cmds, "-s", subject, "bob@example.net"],
        input=body,
        env=dict(os.environ, HOME=str(home), TERM="dumb"),
        check=True,
        timeout=60,
    )


async def test_mutt_written(store: MailStore, tmp_path: Path) -> None:
    path = tmp_path / "mutt.mbox"
    mutt_save(path, "mutt one", b"hello\n")
    # mutt leaves "From " body lines unquoted and counts the body in Content-Length (mboxcl2)
    mutt_save(
        path, "mutt two", BODY_WITH_FROM.replace(b"From the start it was", b"From x Tue Dec  8 02:14:11 2026")
    )
    mutt_save(path, "mutt three", b"bye\n")
    report = await Importer(store, MboxSource(path), ALICE, max_size=MAX).run()
    assert (report.imported, report.failed) == (3, [])
    got = await contents(store, "INBOX")
    assert [
        b"Subject: mutt " + w in m for (_, _, _, m), w in zip(got, [b"one", b"two", b"three"], strict=True)
    ]
    body2 = got[1][3].split(b"\r\n\r\n", 1)[1]
    assert body2 == crlf(BODY_WITH_FROM.replace(b"From the start it was", b"From x Tue Dec  8 02:14:11 2026"))
    assert all(b"Content-Length:" not in m and b"Status:" not in m for *_, m in got)
    assert all(fl == {"\\Seen"} for _, fl, _, _ in got)  # mutt's Fcc copy: Status: RO
    assert all(abs(d - time.time()) < 3600 for _, _, d, _ in got)


async def test_mboxrd_unquoting(store: MailStore, tmp_path: Path) -> None:
    path = tmp_path / "rd.mbox"
    quoted = b"first\n\n>From the start it was\n>>From quoted once\n>>>From quoted twice\nend\n"
    path.write_bytes(b"From a@example.net Mon Sep 14 12:26:40 2020\nSubject: rd\n\n" + quoted + b"\n")
    report = await Importer(store, MboxSource(path), ALICE, max_size=MAX).run()
    assert (report.imported, report.failed) == (1, [])
    [(*_, octets)] = await contents(store, "INBOX")
    assert octets == crlf(b"Subject: rd\n\n" + BODY_WITH_FROM)


async def test_truncated_and_broken(store: MailStore, tmp_path: Path) -> None:
    path = tmp_path / "bad.mbox"
    path.write_bytes(
        b"From a@example.net Mon Sep 14 12:26:40 2020\nSubject: good\n\nbody\n"
        b"From here on the body has an unquoted From line\n\n"
        b"From b@example.net Mon Sep 14 12:26:41 2020\n\n"  # 0 octets after the From_ line... + blank
        b"From c@example.net Mon Sep 14 12:26:42 2020\nSubject: big\n\n" + b"x" * (MAX + 10) + b"\n\n"
        b"From d@example.net Mon Sep 14 12:26:43 2020\nSubject: cut\n\nthe file ends in the mid"
    )
    report = await Importer(store, MboxSource(path), ALICE, max_size=MAX).run()
    assert report.imported == 1
    [(_, _, date, octets)] = await contents(store, "INBOX")
    assert date == calendar.timegm((2020, 9, 14, 12, 26, 40, 0, 0, 0))
    assert octets.endswith(b"body\r\nFrom here on the body has an unquoted From line\r\n")
    reasons = [r for _, r in report.failed]
    assert len(reasons) == 3
    assert reasons[0] == "empty message (0 octets)"
    assert "over the limit" in reasons[1]
    assert reasons[2] == "truncated: the file ends inside this message"


@pytest.mark.parametrize("store_backend", ["sqlite"])
async def test_memory_does_not_hold_the_file(store: MailStore, tmp_path: Path) -> None:
    """The listing keeps offsets, not octets: each message is read once, by itself."""
    path = tmp_path / "many.mbox"
    with open(path, "wb") as f:
        for i in range(300):
            f.write(
                b"From x@example.net Mon Sep 14 12:26:40 2020\nSubject: %d\n\n" % i + b"y" * 2000 + b"\n\n"
            )
    src = MboxSource(path)
    listed = list(src.messages(src.folders()[0]))
    assert len(listed) == 300 and all(isinstance(m.ref, tuple) for m in listed)
    report = await Importer(store, src, ALICE, max_size=MAX).run()
    assert report.imported == 300
    assert (await folders(store))["INBOX"][0] == 300
