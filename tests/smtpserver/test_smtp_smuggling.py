"""SMTP smuggling (CVE-2023-51764 class): only <CRLF>.<CRLF> ends DATA, end to end."""

from __future__ import annotations

import pytest

from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import MailhouseProcess

SMUGGLED = (
    b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nforged\r\n.\r\n"
)


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n"])
def test_fake_end_of_data_never_starts_a_second_message(mailhouse: MailhouseProcess, fake_end: bytes) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.reply()
    s.cmd(b"EHLO client.test")
    assert s.cmd(b"MAIL FROM:<x@remote.test>") == b"250 2.1.0 Ok"
    assert s.cmd(b"RCPT TO:<alice@example.org>") == b"250 2.1.5 Ok"
    assert s.cmd(b"DATA").startswith(b"354")
    s.send(b"Subject: outer\r\n\r\nbody" + fake_end + SMUGGLED)
    # the smuggled commands are message text; the bare CR/LF makes us refuse the whole message
    reply = s.reply()
    assert reply.startswith(b"550 5.6.2"), reply
    assert s.cmd(b"NOOP") == b"250 2.0.0 Ok"  # exactly one reply: nothing else was executed
    s.cmd(b"QUIT")
    assert mailbox(mailhouse, "bob@example.org") == []
    assert mailbox(mailhouse, "alice@example.org") == []


def test_dot_stuffed_lines_are_data(mailhouse: MailhouseProcess) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.reply()
    s.cmd(b"EHLO client.test")
    s.cmd(b"MAIL FROM:<x@remote.test>")
    s.cmd(b"RCPT TO:<alice@example.org>")
    s.cmd(b"DATA")
    s.send(b"Subject: dots\r\n\r\n..\r\n.. not the end\r\n.\r\n")
    assert s.reply().startswith(b"250 2.0.0")
    (msg,) = mailbox(mailhouse, "alice@example.org")
    assert msg.endswith(b"\r\n\r\n.\r\n. not the end\r\n")
