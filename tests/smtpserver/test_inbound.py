"""The inbound MTA over real sockets: telnet transcript, smtplib, swaks, BDAT, aliases."""

from __future__ import annotations

import re
import smtplib
import subprocess

import pytest

from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import MailhouseProcess


def test_classic_telnet_session(mailhouse: MailhouseProcess) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    # issue 12 item 8: a first-time client gets postscreen's multi-line greeting (RFC 5321 §4.2.1)
    assert s.reply() == b"220-mail.example.org ESMTP\n220 mail.example.org ESMTP Mailhouse"
    assert s.cmd(b"helo telnet") == b"250 mail.example.org"
    assert s.cmd(b"mail from:<a@x.test>") == b"250 2.1.0 Ok"
    assert s.cmd(b"rcpt to:<alice@example.org>") == b"250 2.1.5 Ok"
    assert s.cmd(b"data") == b"354 End data with <CR><LF>.<CR><LF>"
    s.send(b"Subject: telnet\r\n\r\nHello from telnet\r\n..leading dot\r\n")
    reply = s.cmd(b".")
    m = re.fullmatch(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]+)", reply)
    assert m, reply
    assert s.cmd(b"quit") == b"221 2.0.0 Bye"
    assert s.closed()
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert msg.startswith(b"Return-Path: <a@x.test>\r\nReceived: from telnet ([127.0.0.1])\r\n")
    assert b"id " + m.group(1) in msg
    assert msg.endswith(b"Subject: telnet\r\n\r\nHello from telnet\r\n.leading dot\r\n")


def test_smtplib_ehlo_advertises_extensions(mailhouse: MailhouseProcess) -> None:
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        code, _ = c.ehlo("client.test")
        assert code == 250
        for ext in (
            "pipelining",
            "size",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "starttls",
            "chunking",
            "dsn",
        ):
            assert c.has_extn(ext), ext
        assert not c.has_extn("auth")  # port 25 never offers AUTH
        assert (
            c.sendmail(
                "x@remote.test", ["alice@example.org", "bob@example.org"], b"Subject: two\r\n\r\nhi\r\n"
            )
            == {}
        )
    assert len(mailbox(mailhouse, "alice@example.org")) == 1
    assert len(mailbox(mailhouse, "bob@example.org")) == 1


def test_starttls_then_mail(mailhouse: MailhouseProcess) -> None:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.starttls(context=ctx)
        c.ehlo("client.test")
        assert not c.has_extn("starttls")
        c.sendmail("x@remote.test", ["alice@example.org"], b"Subject: tls\r\n\r\nsecret\r\n")
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert b"with ESMTPS id" in msg


def test_smtputf8_and_8bitmime(mailhouse: MailhouseProcess) -> None:
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.ehlo("client.test")
        body = "Subject: Grüße\r\n\r\nÜmlaut body\r\n".encode()
        c.sendmail(
            "jörg@exämple.test", ["alice@example.org"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
        )
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert "Ümlaut".encode() in msg and "Return-Path: <jörg@exämple.test>".encode() in msg
    assert b"with UTF8SMTP id" in msg


def test_bdat_chunking(mailhouse: MailhouseProcess) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.reply()
    assert s.cmd(b"EHLO client.test").startswith(b"250-")
    assert s.cmd(b"MAIL FROM:<x@remote.test> BODY=BINARYMIME") == b"250 2.1.0 Ok"
    assert s.cmd(b"RCPT TO:<alice@example.org>") == b"250 2.1.5 Ok"
    part1 = b"Subject: bdat\r\n\r\nline one\r\n.\r\n"  # a dot line is just data in BDAT
    part2 = b"line two\r\n"
    s.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert s.reply().startswith(b"250 2.0.0")
    s.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    assert re.fullmatch(rb"250 2\.0\.0 Ok: queued as [0-9A-F]+", s.reply())
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert msg.endswith(part1 + part2)


def test_pipelining(mailhouse: MailhouseProcess) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.reply()
    s.cmd(b"EHLO client.test")
    s.send(
        b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
        b"RCPT TO:<bob@example.org>\r\nDATA\r\n"
    )
    assert [s.reply()[:9] for _ in range(5)] == [
        b"250 2.1.0",
        b"250 2.1.5",
        b"550 5.1.1",
        b"250 2.1.5",
        b"354 End d",
    ]
    s.send(b"Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert s.reply().startswith(b"250 2.0.0 Ok: queued as")
    assert s.reply() == b"221 2.0.0 Bye"
    assert (
        len(mailbox(mailhouse, "alice@example.org")) == 1 and len(mailbox(mailhouse, "bob@example.org")) == 1
    )


def test_aliases_plus_addressing_and_catch_all(mailhouse: MailhouseProcess) -> None:
    mailhouse.cli("alias", "add", "sales@example.org", "alice@example.org")
    mailhouse.cli("alias", "add", "sales@example.org", "bob@example.org")
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.sendmail("x@remote.test", ["sales@example.org"], b"Subject: to sales\r\n\r\n.\r\n")
        c.sendmail("x@remote.test", ["alice+newsletters@example.org"], b"Subject: plus\r\n\r\n.\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("x@remote.test", ["random@example.org"], b"Subject: nobody\r\n\r\n.\r\n")
    mailhouse.cli("alias", "add", "@example.org", "bob@example.org")
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.sendmail("x@remote.test", ["random@example.org"], b"Subject: catch-all\r\n\r\n.\r\n")
    alice = mailbox(mailhouse, "alice@example.org")
    bob = mailbox(mailhouse, "bob@example.org")
    assert [b"to sales" in m for m in alice] == [True, False] and b"plus" in alice[1]
    assert [b"to sales" in m for m in bob] == [True, False] and b"catch-all" in bob[1]


def test_quota_full_gets_452_at_rcpt(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory()
    mh.add_domain("example.org")
    mh.add_user("small@example.org", "correct-horse-42", "--quota-messages", "1")
    mh.start()
    with smtplib.SMTP(*mh.addr("smtp")) as c:
        c.sendmail("x@remote.test", ["small@example.org"], b"Subject: one\r\n\r\n.\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            c.sendmail("x@remote.test", ["small@example.org"], b"Subject: two\r\n\r\n.\r\n")
    code, text = ei.value.recipients["small@example.org"]
    assert code == 452 and text.startswith(b"4.2.2")
    assert len(mailbox(mh, "small@example.org")) == 1


def test_swaks(mailhouse: MailhouseProcess) -> None:
    host, port = mailhouse.addr("smtp")
    r = subprocess.run(
        [
            "swaks",
            "--server",
            host,
            "--port",
            str(port),
            "--from",
            "sender@remote.test",
            "--to",
            "alice@example.org",
            "--header",
            "Subject: from swaks",
            "--body",
            "swaks body",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as [0-9A-F]+", r.stdout)
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert b"Subject: from swaks" in msg and b"swaks body" in msg
