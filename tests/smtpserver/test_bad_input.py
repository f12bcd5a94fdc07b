"""Bad input gets a clear reply, nothing is lost, and the server keeps serving."""

from __future__ import annotations

import os
import smtplib
import time
from pathlib import Path

import pytest

from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import MailhouseProcess


def _session(mh: MailhouseProcess) -> RawSMTP:
    s = RawSMTP(mh.addr("smtp"))
    assert s.reply().split(b"\n")[-1].startswith(b"220 ")  # after a 220- first line (pregreet test)
    s.cmd(b"EHLO client.test")
    return s


def test_command_line_over_512_octets(mailhouse: MailhouseProcess) -> None:
    s = _session(mailhouse)
    assert s.cmd(b"NOOP " + b"x" * 600) == b"500 5.5.2 Error: line too long"
    assert s.cmd(b"NOOP") == b"250 2.0.0 Ok"  # the session goes on


def test_message_over_size_limit(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory(extra="[limits]\nmax_message_size = 100000\n")
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    s = _session(mh)
    assert s.cmd(b"MAIL FROM:<x@remote.test> SIZE=200000").startswith(b"552 5.3.4")
    assert s.cmd(b"MAIL FROM:<x@remote.test>") == b"250 2.1.0 Ok"
    s.cmd(b"RCPT TO:<alice@example.org>")
    assert s.cmd(b"DATA").startswith(b"354")
    line = b"y" * 998 + b"\r\n"
    for _ in range(2000):  # ~2 MB, far past the limit: read to the end, not buffered
        s.send(line)
    s.send(b".\r\n")
    assert s.reply().startswith(b"552 5.3.4")
    assert s.cmd(b"NOOP") == b"250 2.0.0 Ok"
    assert mailbox(mh, "alice@example.org") == []
    with smtplib.SMTP(*mh.addr("smtp")) as c:  # and small mail still flows
        c.sendmail("x@remote.test", ["alice@example.org"], b"Subject: small\r\n\r\nok\r\n")
    assert len(mailbox(mh, "alice@example.org")) == 1


def test_client_speaking_before_greeting_is_refused(mailhouse: MailhouseProcess) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.send(b"EHLO eager.test\r\n")
    # after the first line of the multi-line greeting (issue 12 item 8)
    assert s.reply() == b"220-mail.example.org ESMTP\n554 5.5.1 Error: you talked before the greeting"
    assert s.closed()


def test_too_many_errors_disconnects(mailhouse: MailhouseProcess) -> None:
    s = _session(mailhouse)
    replies = []
    for _ in range(30):
        replies.append(s.cmd(b"BOGUS"))
        if replies[-1].startswith(b"421"):
            break
    assert replies[0] == b"500 5.5.2 Error: command not recognized"
    assert replies[-1].startswith(b"421 4.7.0") and len(replies) <= 21
    assert s.closed()


def test_idle_timeout(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory(extra="[server]\nsmtp_idle_timeout = 1\n")
    mh.add_domain("example.org")
    mh.start()
    s = _session(mh)
    time.sleep(1.5)
    assert s.reply().startswith(b"421 4.4.2")
    assert s.closed()


def test_control_characters_never_reach_headers_or_logs(mailhouse: MailhouseProcess) -> None:
    s = _session(mailhouse)
    assert s.cmd(b"HELO evil\x1b[31m\x00host").startswith(b"250")
    s.cmd(b"MAIL FROM:<x@remote.test>")
    s.cmd(b"RCPT TO:<alice@example.org>")
    s.cmd(b"DATA")
    s.send(b"Subject: ctl\r\n\r\nx\r\n.\r\n")
    assert s.reply().startswith(b"250")
    (msg,) = mailbox(mailhouse, "alice@example.org")
    header = msg.split(b"\r\n\r\n", 1)[0]
    assert b"\x1b" not in header and b"\x00" not in header
    assert b"Received: from evil" in header
    log = mailhouse.logtext()
    assert "\x1b" not in log and "\x00" not in log


def test_shell_metacharacters_are_inert(mailhouse: MailhouseProcess, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    s = _session(mailhouse)
    assert s.cmd(b'MAIL FROM:<"$(touch ' + str(marker).encode() + b')"@remote.test>').startswith(b"250")
    assert s.cmd(b"RCPT TO:<`touch${IFS}" + str(marker).encode() + b"`|sh@example.org>").startswith(
        b"550 5.1.1"
    )
    assert s.cmd(b"RCPT TO:<alice@example.org>").startswith(b"250")
    s.cmd(b"DATA")
    s.send(b"Subject: $(reboot); `id`\r\n\r\n|cat /etc/passwd\r\n.\r\n")
    assert s.reply().startswith(b"250")
    assert not marker.exists()
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert b"$(reboot); `id`" in msg


@pytest.mark.parametrize("cmd", [b"MAIL FROM:<not an address>", b"MAIL FROM:<a@@b>", b"MAIL FROM:<a@b c>"])
def test_malformed_sender(mailhouse: MailhouseProcess, cmd: bytes) -> None:
    s = _session(mailhouse)
    assert s.cmd(cmd).startswith(b"501 5.1.7")


@pytest.mark.parametrize("cmd", [b"RCPT TO:<not an address>", b"RCPT TO:<@>", b"RCPT TO:<a@b..c>"])
def test_malformed_recipient(mailhouse: MailhouseProcess, cmd: bytes) -> None:
    s = _session(mailhouse)
    s.cmd(b"MAIL FROM:<x@remote.test>")
    assert s.cmd(cmd).startswith(b"501 5.1.3")


def test_server_survives_abrupt_disconnects(mailhouse: MailhouseProcess) -> None:
    for _ in range(20):
        s = _session(mailhouse)
        s.cmd(b"MAIL FROM:<x@remote.test>")
        s.cmd(b"RCPT TO:<alice@example.org>")
        s.cmd(b"DATA")
        s.send(b"Subject: half\r\n\r\npartial")
        s.close()
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.sendmail("x@remote.test", ["alice@example.org"], b"Subject: whole\r\n\r\nok\r\n")
    msgs = mailbox(mailhouse, "alice@example.org")
    assert len(msgs) == 1 and b"Subject: whole" in msgs[0]
    assert os.path.exists(mailhouse.log)
