"""SELECT/EXAMINE, FETCH items, STORE, COPY/MOVE, EXPUNGE, APPEND, mailbox management."""

from __future__ import annotations

import re

import imapclient

from tests.imapserver.server_helpers import RawIMAP, deliver, login, tagged, tls_ctx, wait_exists
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

MIME = (
    'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"',
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "caf=C3=A9 text\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    "\r\nAAECAwQ=\r\n--b1--\r\n",
)


def raw2_select(mh: MailhouseProcess) -> list[bytes]:
    other = RawIMAP(mh.addr("imaps"))
    other.login("frank")
    r = other.cmd("SELECT INBOX")
    other.close()
    return r


def test_select_examine_and_fetch_items(imap_server: MailhouseProcess) -> None:
    deliver(imap_server, "frank", "First message")
    deliver(imap_server, "frank", "Second =?utf-8?q?caf=C3=A9?=", MIME[1], MIME[0] + "\r\n")
    c = login(imap_server, "frank")
    wait_exists(c, "INBOX", 2)
    typ, data = c.select("INBOX", readonly=True)  # EXAMINE
    assert typ == "OK" and data == [b"2"]
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("frank")
    r = raw.cmd("EXAMINE INBOX")
    text = b"\n".join(r)
    for needle in (
        b"* 2 EXISTS",
        b"* 2 RECENT",
        b"[UIDVALIDITY ",
        b"[UIDNEXT 3]",
        b"[HIGHESTMODSEQ ",
        b"* FLAGS (",
        b"[PERMANENTFLAGS ()]",
    ):
        assert needle in text, needle
    assert tagged(r).startswith(b"OK [READ-ONLY]")
    # BODY[] in EXAMINE does not set \Seen
    r = raw.cmd("FETCH 1 (BODY[] FLAGS)")
    assert b"\\Seen" not in r[0]
    r = raw.cmd("SELECT INBOX")
    assert tagged(r).startswith(b"OK [READ-WRITE]")
    assert b"* 2 RECENT" in b"\n".join(r)  # EXAMINE peeked; SELECT is the first to claim \Recent
    assert b"* 0 RECENT" in b"\n".join(raw2_select(imap_server))  # ... so another session sees none
    r = raw.cmd("FETCH 2 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)")
    line = r[0]
    assert line.startswith(b"* 2 FETCH (UID 2 FLAGS (")
    assert b'ENVELOPE ("Mon, 02 Mar 2026 10:00:00 +0100" "Second =?utf-8?q?caf=C3=A9?="' in line
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in line
    assert b'"mixed" ("boundary" "b1") NIL NIL NIL)' in line
    size = int(re.search(rb"RFC822.SIZE (\d+)", line).group(1))  # type: ignore[union-attr]
    r = raw.cmd("FETCH 2 (BODY.PEEK[])")
    body = r[0].split(b"}\r\n", 1)[1][:-1]
    assert len(body) == size  # RFC822.SIZE equals the octets BODY[] sends
    r = raw.cmd(
        "FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[TEXT]<0.4>)"
    )
    assert b'BODY[1] "caf=C3=A9 text"' in r[0]  # the CRLF before the boundary belongs to it
    assert b"BODY[1.MIME] {88}\r\nContent-Type: text/plain" in r[0] and b'BODY[TEXT]<0> "--b1"' in r[0]
    assert b"BODY[HEADER.FIELDS (Subject)] " in r[0] and b"Subject: Second" in r[0]
    assert b"\\Seen" not in r[0]
    r = raw.cmd("FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2])")
    assert "BINARY[1] {10}\r\ncafé text".encode() in r[0] or 'BINARY[1] "café text"'.encode() in r[0]
    assert b"BINARY.SIZE[2] 5" in r[0] and b"BINARY[2] ~{5}\r\n\x00\x01\x02\x03\x04" in r[0]
    r = raw.cmd("FETCH 1 (RFC822.HEADER RFC822.TEXT)")  # RFC822.TEXT sets \Seen → FLAGS sent
    assert b"RFC822.HEADER {" in r[0] and b"RFC822.TEXT {" in r[0] and b"FLAGS (\\Seen" in r[0]
    r = raw.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
    # RFC 7162 §3.1: CHANGEDSINCE enables CONDSTORE here, so OK [HIGHESTMODSEQ] comes first
    assert r[0].startswith(b"* OK [HIGHESTMODSEQ ")
    r = r[1:]
    assert all(b"MODSEQ (" in ln for ln in r[:-1]) and b"UID 1" in r[0]
    assert tagged(raw.cmd("FETCH 3 FLAGS")).startswith(b"BAD")  # beyond EXISTS
    assert tagged(raw.cmd("UID FETCH 99 FLAGS")).startswith(b"OK")  # missing UID: nothing
    raw.close()
    c.logout()


def test_store_copy_move_expunge(imap_server: MailhouseProcess) -> None:
    c = login(imap_server, "grace")
    for i in range(5):
        c.append("INBOX", None, None, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    c.select("INBOX")
    typ, data = c.store("1:2", "+FLAGS", r"(\Flagged $Label1)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Label1" in data[0]
    typ, data = c.store("1", "-FLAGS.SILENT", r"(\Flagged)")
    assert data == [None]
    typ, data = c.copy("1:3", "Archive")
    assert re.match(rb"\[COPYUID \d+ 1:3 1:3\]", data[0]), data
    typ, data = c.uid("MOVE", "4:5", "Trash")
    assert typ == "OK"
    assert any(b"COPYUID" in x for x in c.untagged_responses.get("OK", [])) or True
    assert c.select("INBOX")[1] == [b"3"]
    c.store("1,3", "+FLAGS", r"(\Deleted)")
    typ, data = c.expunge()
    assert data == [b"3", b"1"]  # numbers valid after each removal (descending)
    typ, data = c.fetch("1:*", "(UID)")
    assert data == [b"1 (UID 2)"]
    # UNCHANGEDSINCE → MODIFIED (RFC 7162 §3.1.3)
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("grace")
    raw.cmd("SELECT Archive")
    r = raw.cmd("UID FETCH 1:* (MODSEQ)")
    ms = max(int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(r)))
    raw.cmd("UID STORE 1 +FLAGS (\\Answered)")
    r = raw.cmd(f"UID STORE 1,2 (UNCHANGEDSINCE {ms}) +FLAGS (\\Seen)")
    assert tagged(r).startswith(b"OK [MODIFIED 1]"), r
    assert any(b"UID 2" in ln and b"MODSEQ" in ln for ln in r[:-1])
    r = raw.cmd("UID EXPUNGE 1")  # nothing has \Deleted: no-op
    assert tagged(r).startswith(b"OK") and len(r) == 1
    r = raw.cmd("EXAMINE Trash")
    assert b"* 2 EXISTS" in b"\n".join(r)
    assert tagged(raw.cmd("STORE 1 +FLAGS (\\Seen)")).startswith(b"NO")  # read-only
    raw.close()
    c.logout()


def test_append_appenduid_multiappend_catenate(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("heidi")
    msg = b"Subject: appended\r\n\r\nhello\r\n"
    raw.send(b'a1 APPEND INBOX (\\Seen $Work) "01-Feb-2026 10:00:00 +0000" {%d}\r\n' % len(msg))
    assert raw.line().startswith(b"+ ")
    raw.send(msg + b"\r\n")
    r = raw.until_tagged(b"a1")
    m = re.match(rb"a1 OK \[APPENDUID (\d+) 1\]", r[-1])
    assert m, r
    # MULTIAPPEND with LITERAL+ and literal8: all or nothing
    r = raw.cmd(b"APPEND INBOX {6+}\r\nA: 1\r\n (\\Draft) ~{6+}\r\nB: 2\r\n")
    assert re.search(rb"OK \[APPENDUID \d+ 2:3\]", r[-1]), r
    assert tagged(raw.cmd(b"APPEND NoSuchBox {6+}\r\nA: 1\r\n")).startswith(b"NO [TRYCREATE]")
    assert tagged(raw.cmd(b"APPEND INBOX {0+}\r\n")).startswith(b"NO")
    # CATENATE: text + URL of our own message (RFC 4469)
    uv = m.group(1).decode()
    r = raw.cmd(
        f'APPEND INBOX CATENATE (TEXT {{12+}}\r\nSubject: c\r\n URL "/INBOX;UIDVALIDITY={uv}/;UID=1/;SECTION=TEXT")'
    )
    assert re.search(rb"OK \[APPENDUID \d+ 4\]", r[-1]), r
    r = raw.cmd("EXAMINE INBOX")
    r = raw.cmd("FETCH 1,4 (FLAGS INTERNALDATE BODY.PEEK[])")
    assert b"$Work" in r[0] and b'" 1-Feb-2026 10:00:00 +0000"' in r[0]
    assert b"Subject: c\r\nhello\r\n" in r[1]
    bad = raw.cmd('APPEND INBOX CATENATE (URL "/INBOX;UIDVALIDITY=1/;UID=1")')
    assert tagged(bad).startswith(b"NO [BADURL")
    raw.close()


def test_mailbox_management(imap_server: MailhouseProcess) -> None:
    c = imapclient.IMAPClient(
        imap_server.host, port=imap_server.ports["imaps"], ssl=True, ssl_context=tls_ctx()
    )
    c.login("ivan@example.org", PASSWORD)
    c.create_folder("Projects/2026/Q1")
    names = {f[2]: f[0] for f in c.list_folders()}
    assert b"\\HasChildren" in names["Projects"] and b"\\HasNoChildren" in names["Projects/2026/Q1"]
    assert b"\\Sent" in names["Sent"] and b"\\Trash" in names["Trash"]
    assert [f[2] for f in c.list_folders("", "Projects/%")] == ["Projects/2026"]
    c.rename_folder("Projects", "Work")
    names = {f[2] for f in c.list_folders()}
    assert {"Work", "Work/2026", "Work/2026/Q1"} <= names and "Projects" not in names
    assert c.delete_folder("Work/2026/Q1")
    c.subscribe_folder("Work")
    assert "Work" in [f[2] for f in c.list_sub_folders()]
    c.create_folder("Gröceries")  # modified UTF-7 both ways
    assert "Gröceries" in {f[2] for f in c.list_folders()}
    c.append("Work", b"Subject: w\r\n\r\nw\r\n", flags=[b"\\Seen"])
    st = c.folder_status(
        "Work", ["MESSAGES", "UIDNEXT", "UNSEEN", "SIZE", "HIGHESTMODSEQ", "DELETED", "APPENDLIMIT"]
    )
    assert st[b"MESSAGES"] == 1 and st[b"UNSEEN"] == 0 and st[b"SIZE"] == 17 and st[b"UIDNEXT"] == 2
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("ivan")
    r = raw.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*" RETURN (CHILDREN STATUS (MESSAGES))')
    assert any(b'"Work"' in ln or b" Work" in ln for ln in r) and any(
        b"STATUS Work (MESSAGES 1)" in ln for ln in r
    ), r
    r = raw.cmd('LIST (SPECIAL-USE) "" "*"')
    assert len(r) == 6 and all(b"\\HasNoChildren \\" in ln for ln in r[:-1]), r
    r = raw.cmd("CREATE MyDrafts (USE (\\Drafts))")
    assert tagged(r).startswith(b"OK")
    assert tagged(raw.cmd("CREATE Weird (USE (\\Bogus))")).startswith(b"NO [USEATTR]")
    assert raw.cmd('LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'
    assert tagged(raw.cmd("DELETE Work")).startswith(b"NO")  # has an inferior (Work/2026)
    assert tagged(raw.cmd("DELETE INBOX")).startswith(b"NO")
    assert tagged(raw.cmd("CREATE inbox")).startswith(b"NO [ALREADYEXISTS]")
    raw.close()
    c.logout()


def test_rename_inbox_moves_messages(imap_server: MailhouseProcess) -> None:
    c = login(imap_server, "judy")
    for i in range(3):
        c.append("INBOX", None, None, f"Subject: r{i}\r\n\r\nx\r\n".encode())
    c.create("INBOX/Child")
    assert c.rename("INBOX", "Old-Inbox")[0] == "OK"
    assert c.select("INBOX")[1] == [b"0"]
    assert c.select("Old-Inbox")[1] == [b"3"]
    names = b" ".join(c.list()[1])
    assert b"INBOX/Child" in names  # inferiors of INBOX are not renamed
    c.logout()
