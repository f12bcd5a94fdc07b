"""Tests for the sans-IO SMTP client core (mailhouse.proto.smtp_client)."""

from __future__ import annotations

import pytest

from mailhouse.proto.smtp_client import NEED_DATA, ReplyProtocolError, ServerReply, SMTPClientProtocol


def replies(c: SMTPClientProtocol, data: bytes, bytewise: bool = False) -> list[object]:
    out: list[object] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        c.receive_data(chunk)
        while (ev := c.next_event()) is not NEED_DATA:
            out.append(ev)
    return out


@pytest.mark.parametrize("bytewise", [False, True])
def test_session_and_ehlo_extensions(bytewise: bool) -> None:
    c = SMTPClientProtocol()
    assert c.ehlo("me.test") == b"EHLO me.test\r\n"
    ev = replies(
        c,
        b"220 mx.test ESMTP\r\n250-mx.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\nextra",
        bytewise,
    )
    assert ev == [
        ServerReply(220, None, ("mx.test ESMTP",)),
        ServerReply(250, None, ("mx.test", "SIZE 1000", "8BITMIME", "AUTH PLAIN LOGIN")),
    ]
    assert c.extensions == {"SIZE": "1000", "8BITMIME": None, "AUTH": "PLAIN LOGIN"}
    assert c.bytes_buffered() == 5


def test_enhanced_codes_and_commands() -> None:
    c = SMTPClientProtocol()
    assert (
        c.mail("a@x.test", {"size": "10", "SMTPUTF8": None}) == b"MAIL FROM:<a@x.test> SIZE=10 SMTPUTF8\r\n"
    )
    assert c.rcpt("b@y.test", {"NOTIFY": "NEVER"}) == b"RCPT TO:<b@y.test> NOTIFY=NEVER\r\n"
    assert c.bdat(b"abc", last=True) == b"BDAT 3 LAST\r\nabc"
    assert c.auth("plain", b"") == b"AUTH PLAIN =\r\n"
    ev = replies(c, b"220 x\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n250 2.0.0 ok\r\n451 4.3.0\r\n")
    assert ev[1] == ServerReply(550, "5.1.1", ("no such", "user"))
    assert ev[2] == ServerReply(250, "2.0.0", ("ok",))
    assert ev[3] == ServerReply(451, "4.3.0", ("",))
    with pytest.raises(ValueError):
        c.mail("a@x.test\r\nRCPT TO:<evil@x>")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"250-a\r\n251 b\r\n", "reply code changed"),
        (b"hello\r\n", "malformed"),
        (b"250 " + b"x" * 5000, "too long"),
        (b"250-x\r\n" * 200, "too many"),
        (b"999 x\r\n", "out of range"),
    ],
)
def test_protocol_errors(data: bytes, reason: str) -> None:
    c = SMTPClientProtocol()
    ev = replies(c, data)
    assert isinstance(ev[-1], ReplyProtocolError) and reason in ev[-1].reason
    c.receive_data(b"250 ok\r\n")
    assert c.next_event() is NEED_DATA  # broken: the adapter drops the connection


def test_starttls_response_injection_detected() -> None:
    c = SMTPClientProtocol()
    replies(c, b"220 mx\r\n")
    c.ehlo("me")
    replies(c, b"250-mx\r\n250 STARTTLS\r\n")
    c.starttls()
    ev = replies(c, b"220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
    assert ev == [ServerReply(220, "2.0.0", ("go ahead",))]
    assert c.waiting_for_tls and c.bytes_buffered() > 0  # the adapter aborts here
    c.start_tls_done()
    assert c.bytes_buffered() == 0 and c.extensions == {} and c.tls_active


def test_message_data_dot_stuffing_and_newlines() -> None:
    c = SMTPClientProtocol()
    assert c.message_data(b"") == b".\r\n"
    assert c.message_data(b".a\r\nb") == b"..a\r\nb\r\n.\r\n"
    assert c.message_data(b"x\r.y\n.z\r\n.\r\n") == b"x\r\n..y\r\n..z\r\n..\r\n.\r\n"
