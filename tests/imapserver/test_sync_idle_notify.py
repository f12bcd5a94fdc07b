"""Several sessions on one mailbox (RFC 9051 §7 update rules), CONDSTORE/QRESYNC with VANISHED,
IDLE with an SMTP delivery in between (≤ 1 s), NOTIFY."""

from __future__ import annotations

import re
import time

from tests.imapserver.server_helpers import RawIMAP, deliver, login, tagged
from tests.mailhouse_proc import MailhouseProcess


def _append(raw: RawIMAP, n: int, box: str = "INBOX") -> None:
    for i in range(n):
        msg = f"Subject: s{i}\r\n\r\nx{i}\r\n".encode()
        assert tagged(raw.cmd(b"APPEND %s {%d+}\r\n%s" % (box.encode(), len(msg), msg))).startswith(b"OK")


def test_two_sessions_updates_only_where_allowed(imap_server: MailhouseProcess) -> None:
    a = RawIMAP(imap_server.addr("imaps"))
    a.login("mallory")
    b = RawIMAP(imap_server.addr("imaps"))
    b.login("mallory")
    _append(a, 3)
    a.cmd("SELECT INBOX")
    b.cmd("SELECT INBOX")
    # b flags and expunges message 1
    b.cmd("STORE 2 +FLAGS (\\Flagged)")
    b.cmd("STORE 1 +FLAGS (\\Deleted)")
    r = b.cmd("EXPUNGE")
    assert r[0] == b"* 1 EXPUNGE"
    _append(b, 1)
    # a: FETCH must not carry EXPUNGE (RFC 9051 §7.4.1) but may carry EXISTS and FETCH FLAGS
    r = a.cmd("FETCH 1:3 (FLAGS)")
    text = b"\n".join(r)
    assert b"EXPUNGE" not in text
    assert b"* 4 EXISTS" in text  # 3 known (one pending expunge) + 1 new
    assert re.search(rb"\* 2 FETCH \(FLAGS \(\\Flagged", text), text
    assert tagged(r).startswith(b"OK")
    r = a.cmd("SEARCH ALL")  # still no EXPUNGE during SEARCH
    assert b"EXPUNGE" not in b"\n".join(r)
    r = a.cmd("NOOP")  # now it may be reported
    assert r[0] == b"* 1 EXPUNGE" and tagged(r).startswith(b"OK")
    r = a.cmd("FETCH 1:* (UID)")
    assert [int(x) for x in re.findall(rb"UID (\d+)", b"".join(r))] == [2, 3, 4]
    # UID commands may get EXPUNGE; with QRESYNC it becomes VANISHED
    a.cmd("ENABLE QRESYNC")
    b.cmd("STORE 1 +FLAGS (\\Deleted)")
    b.cmd("EXPUNGE")
    r = a.cmd("UID FETCH 1:* (FLAGS)")
    assert b"* VANISHED 2" in r and not any(b"EXPUNGE" in x for x in r), r
    a.close()
    b.close()


def test_condstore_qresync_vanished(imap_server: MailhouseProcess) -> None:
    c = RawIMAP(imap_server.addr("imaps"))
    c.login("oscar")
    _append(c, 5)
    r = c.cmd("SELECT INBOX (CONDSTORE)")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(r)).group(1))  # type: ignore[union-attr]
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(r)).group(1))  # type: ignore[union-attr]
    c.cmd("STORE 2 +FLAGS.SILENT (\\Seen)")
    c.cmd("STORE 4,5 +FLAGS.SILENT (\\Deleted)")
    c.cmd("EXPUNGE")
    c.cmd("LOGOUT")
    c.close()
    q = RawIMAP(imap_server.addr("imaps"))
    q.login("oscar")
    assert q.cmd("ENABLE QRESYNC")[0] == b"* ENABLED CONDSTORE QRESYNC"
    r = q.cmd(f"SELECT INBOX (QRESYNC ({uv} {hms} 1:5))")
    text = b"\n".join(r)
    assert b"* VANISHED (EARLIER) 4:5" in text, text
    assert re.search(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", text), text
    assert b"UID 1 " not in text  # unchanged since hms
    r = q.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms} VANISHED)")
    assert r[0] == b"* VANISHED (EARLIER) 4:5" and b"UID 2" in r[1]
    r = q.cmd(f"SEARCH MODSEQ {hms}")
    assert r[0].startswith(b"* SEARCH 2 (MODSEQ ")
    r = q.cmd("STATUS INBOX (HIGHESTMODSEQ)")
    assert b"HIGHESTMODSEQ" in r[0]
    q.close()


def test_idle_reports_smtp_delivery_within_one_second(imap_server: MailhouseProcess) -> None:
    a = RawIMAP(imap_server.addr("imaps"))
    a.login("peggy")
    a.cmd("SELECT INBOX")
    watcher = RawIMAP(imap_server.addr("imaps"))  # a second connection, idle too
    watcher.login("peggy")
    watcher.cmd("SELECT INBOX")
    a.send(b"i1 IDLE\r\n")
    watcher.send(b"i2 IDLE\r\n")
    assert a.line().startswith(b"+ ") and watcher.line().startswith(b"+ ")
    t0 = time.monotonic()
    deliver(imap_server, "peggy", "during idle")
    sent = time.monotonic()
    assert a.line() == b"* 1 EXISTS"
    got = time.monotonic()
    assert got - sent <= 1.0, f"IDLE reported after {got - sent:.2f}s (SMTP took {sent - t0:.2f}s)"
    assert watcher.line() == b"* 1 EXISTS"
    a.send(b"DONE\r\n")
    rest = a.until_tagged(b"i1")
    assert rest[-1].startswith(b"i1 OK")
    # flags changed in another session are reported in IDLE too
    a.send(b"i3 IDLE\r\n")
    assert a.line().startswith(b"+ ")
    watcher.send(b"DONE\r\n")
    watcher.until_tagged(b"i2")
    watcher.cmd("STORE 1 +FLAGS (\\Flagged)")
    assert re.match(rb"\* 1 FETCH \(FLAGS \(.*\\Flagged", a.line())
    a.send(b"DONE\r\n")
    assert a.until_tagged(b"i3")[-1].startswith(b"i3 OK")
    a.close()
    watcher.close()


def test_notify_other_mailboxes_and_names(imap_server: MailhouseProcess) -> None:
    n = RawIMAP(imap_server.addr("imaps"))
    n.login("trent")
    n.cmd("SELECT INBOX")
    r = n.cmd(
        "NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge MailboxName))"
    )
    assert tagged(r).startswith(b"OK"), r
    other = login(imap_server, "trent")
    other.append("Archive", None, None, b"Subject: a\r\n\r\na\r\n")
    line = n.line()  # no command in progress: NOTIFY lets the server speak
    assert line.startswith(b"* STATUS Archive (MESSAGES 1 UIDNEXT 2"), line
    other.append("INBOX", None, None, b"Subject: b\r\n\r\nb\r\n")
    assert n.line() == b"* 1 EXISTS"
    assert n.line() == b"* 1 RECENT"  # rev1 session
    other.create("NewBox")
    assert n.line() == b'* LIST () "/" NewBox'
    other.rename("NewBox", "Renamed")
    assert n.line() == b'* LIST () "/" Renamed (OLDNAME (NewBox))'  # RFC 5465 §5.4
    r = n.cmd("NOTIFY SET (PERSONAL (AnnotationChange))")
    assert tagged(r).startswith(b"NO [BADEVENT")
    assert tagged(n.cmd("NOTIFY NONE")).startswith(b"OK")
    other.logout()
    n.close()
