"""Postfix ≥ 3.9 ``smtpd_forbid_unauth_pipelining`` in the sans-IO core (issue 12 item 12/6)."""

from __future__ import annotations

from mailhouse.proto.smtp import (
    NEED_DATA,
    REPLY_PIPELINING_VIOLATION,
    Helo,
    Noop,
    PipeliningViolation,
    Reply,
    SMTPServerProtocol,
)


def _core() -> SMTPServerProtocol:
    p = SMTPServerProtocol(max_message_size=1000, forbid_unauth_pipelining=True)
    p.greeting("mx.test")
    return p


def test_input_after_ehlo_in_one_packet_is_a_violation() -> None:
    p = _core()
    p.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\n")
    ev = p.next_event()
    assert isinstance(ev, PipeliningViolation) and ev.reply == REPLY_PIPELINING_VIOLATION
    assert ev.reply.code == 554 and ev.reply.enhanced == "5.5.0"
    assert p.send(ev.reply) == b"554 5.5.0 Error: SMTP protocol synchronization\r\n"
    assert p.closed and p.next_event() is NEED_DATA


def test_pipelining_after_helo_is_a_violation() -> None:
    p = _core()
    p.receive_data(b"HELO c\r\n")
    assert isinstance(p.next_event(), Helo)
    p.send(Reply(250, None, "mx.test"))
    p.receive_data(b"NOOP\r\nNOOP\r\n")
    assert isinstance(p.next_event(), PipeliningViolation)


def test_pipelining_after_the_ehlo_reply_is_allowed() -> None:
    p = _core()
    p.receive_data(b"EHLO c\r\n")
    assert isinstance(p.next_event(), Helo)
    p.send(Reply(250, None, ["mx.test", "PIPELINING"]))
    p.receive_data(b"NOOP\r\nNOOP\r\nEHLO again\r\n")  # RFC 2920 §3.1: EHLO last in the group
    for _ in range(2):
        assert isinstance(p.next_event(), Noop)
        p.send(Reply(250, "2.0.0", "Ok"))
    assert isinstance(p.next_event(), Helo)


def test_off_by_default() -> None:
    p = SMTPServerProtocol(max_message_size=1000)
    p.greeting("mx.test")
    p.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\n")
    assert isinstance(p.next_event(), Helo)
