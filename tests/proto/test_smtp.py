"""Tests for the sans-IO SMTP server core (mailhouse.proto.smtp)."""

from __future__ import annotations

import pytest

from mailhouse.proto.smtp import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    BdatChunkEnd,
    CommandError,
    Data,
    Event,
    Helo,
    LocalProtocolError,
    Mail,
    MessageChunk,
    MessageEnd,
    Noop,
    Phase,
    Quit,
    Rcpt,
    Reply,
    Rset,
    SMTPServerProtocol,
    StartTLS,
    TooManyErrors,
    sanitize_for_header,
    xtext_decode,
    xtext_encode,
)
from mailhouse.proto.smtp_address import relay_tricks
from tests.proto.smtp_harness import body, drive, three_ways, types

EHLO = b"EHLO client.test\r\n"
TXN = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<user@ourdomain>\r\n"


def codes(events: list[Event]) -> list[tuple[int, str | None]]:
    return [(e.reply.code, e.reply.enhanced) for e in events if isinstance(e, CommandError | TooManyErrors)]


def test_classic_telnet_session() -> None:
    data = (
        b"helo telnet\r\n"
        b"mail from:<a@x.test>\r\n"
        b"rcpt to:<user@ourdomain>\r\n"
        b"data\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
        b".\r\n"
        b"quit\r\n"
    )
    ev = three_ways(data)
    assert types(ev) == [Helo, Mail, Rcpt, Data, MessageChunk, MessageEnd, Quit]
    assert ev[0] == Helo(b"telnet", False)
    assert isinstance(ev[1], Mail) and ev[1].address == b"a@x.test" and ev[1].params == {}
    assert isinstance(ev[2], Rcpt) and ev[2].address == b"user@ourdomain"
    assert body(ev) == b"Subject: hi\r\n\r\nhello\r\n"
    assert ev[5] == MessageEnd(size=len(b"Subject: hi\r\n\r\nhello\r\n"), too_big=False, bare_newline=False)


def test_replies_drive_state_and_close_on_quit() -> None:
    ev, p, sent = drive([b"EHLO c\r\nQUIT\r\nNOOP\r\n"])
    assert types(ev) == [Helo, Quit]
    assert sent.endswith(b"221 2.0.0 Bye\r\n")
    assert p.closed and p.phase is Phase.CLOSED


def test_verbs_case_insensitive() -> None:
    ev = three_ways(b"eHlO c\r\nMaIl FrOm:<a@x.test>\r\nrCpT tO:<b@y.test>\r\nDaTa\r\n.\r\n")
    assert types(ev) == [Helo, Mail, Rcpt, Data, MessageEnd]
    assert ev[-1] == MessageEnd(0, False, False)


def test_dot_unstuffing() -> None:
    ev = three_ways(EHLO + TXN + b"DATA\r\n..leading\r\n...\r\n.x\r\nend\r\n.\r\n")
    # RFC 5321 §4.5.2: first period deleted
    assert body(ev) == b".leading\r\n..\r\nx\r\nend\r\n"


def test_mail_space_after_colon_and_bare_address() -> None:
    ev = three_ways(b"EHLO c\r\nMAIL FROM: <a@x.test> SIZE=10\r\nRSET\r\nMAIL FROM:a@x.test\r\n")
    assert types(ev) == [Helo, Mail, Rset, Mail]
    assert isinstance(ev[1], Mail) and ev[1].address == b"a@x.test" and ev[1].params == {"SIZE": "10"}
    assert isinstance(ev[3], Mail) and ev[3].address == b"a@x.test"


def test_null_sender_and_postmaster() -> None:
    ev = three_ways(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<>\r\n")
    assert isinstance(ev[1], Mail) and ev[1].address == b"" and ev[1].path is None
    assert isinstance(ev[2], Rcpt) and ev[2].path is not None and ev[2].path.domain == ""
    assert codes(ev) == [(501, "5.1.3")]


def test_bad_sequence() -> None:
    ev = three_ways(
        b"MAIL FROM:<a@x.test>\r\n"  # before EHLO
        b"EHLO c\r\n"
        b"RCPT TO:<b@y.test>\r\n"  # before MAIL
        b"DATA\r\n"  # before MAIL
        b"MAIL FROM:<a@x.test>\r\n"
        b"DATA\r\n"  # before RCPT
        b"MAIL FROM:<a@x.test>\r\n"  # nested
    )
    assert codes(ev) == [(503, "5.5.1")] * 5
    assert types(ev) == [CommandError, Helo, CommandError, CommandError, Mail, CommandError, CommandError]


def test_rejected_mail_means_rcpt_is_bad_sequence() -> None:
    def responder(ev: Event) -> Reply | None:
        return Reply(550, "5.7.1", "no") if isinstance(ev, Mail) else None

    ev = three_ways(EHLO + TXN + b"DATA\r\n", responder)
    assert types(ev) == [Helo, Mail, CommandError, CommandError]


def test_unknown_command_and_syntax() -> None:
    ev = three_ways(
        b"EHLO c\r\nFOO bar\r\nGET / HTTP/1.1\r\n\r\nEHLO\r\nMAIL TO:<a@b.test>\r\nEXPN list\r\nNOOP x\r\n"
    )
    assert codes(ev) == [
        (500, "5.5.2"),
        (500, "5.5.2"),
        (500, "5.5.2"),
        (501, "5.5.4"),
        (501, "5.5.4"),
        (502, "5.5.1"),
    ]
    assert isinstance(ev[-1], Noop)


def test_bare_lf_and_cr_in_command_rejected() -> None:
    ev = three_ways(b"EHLO c\nNOOP\rx\r\nNOOP\r\n")
    assert codes(ev) == [(500, "5.5.2"), (500, "5.5.2")]
    assert isinstance(ev[-1], Noop)


def test_line_too_long() -> None:
    long = b"NOOP " + b"x" * 600 + b"\r\n"
    ev = three_ways(long + b"NOOP\r\n")
    assert codes(ev) == [(500, "5.5.2")]
    assert types(ev) == [CommandError, Noop]


def test_line_too_long_is_not_buffered() -> None:
    p = SMTPServerProtocol(max_message_size=1000)
    p.greeting("mx")
    p.receive_data(b"NOOP " + b"x" * 10_000)
    ev = p.next_event()
    assert isinstance(ev, CommandError) and ev.reply.code == 500
    p.send(ev.reply)
    for _ in range(100):
        p.receive_data(b"y" * 10_000)
        assert p.bytes_buffered() == 0
        assert p.next_event() is NEED_DATA
    p.receive_data(b"yyy\r\nNOOP\r\n")
    assert isinstance(p.next_event(), Noop)


def test_extended_line_limit_for_mail() -> None:
    envid = b"e" * 90
    line = b"MAIL FROM:<" + b"a" * 200 + b"@x.test> ENVID=" + envid + b" AUTH=<>" + b" RET=FULL"
    ev = three_ways(EHLO + line + b"\r\n")
    assert isinstance(ev[1], Mail)
    ev = three_ways(EHLO + b"MAIL FROM:<a@x.test> ENVID=" + b"e" * 5000 + b"\r\nNOOP\r\n")
    assert codes(ev) == [(500, "5.5.2")]
    assert isinstance(ev[-1], Noop)
    # VRFY keeps the 512 limit even though it fits the framing limit
    ev = three_ways(b"VRFY " + b"v" * 600 + b"\r\n")
    assert codes(ev) == [(500, "5.5.2")]


def test_esmtp_params() -> None:
    ev = three_ways(
        b"EHLO c\r\n"
        b"MAIL FROM:<a@x.test> size=100 BODY=8bitmime RET=hdrs ENVID=QQ+2BZZ AUTH=a+2Bb@x.test\r\n"
        b"RCPT TO:<b@y.test> NOTIFY=success,delay ORCPT=rfc822;b+40y.test\r\n"
        b"RCPT TO:<c@y.test> NOTIFY=NEVER,SUCCESS\r\n"
        b"RCPT TO:<c@y.test> FOO=1\r\n"
        b"RCPT TO:<c@y.test> NOTIFY=NEVER NOTIFY=NEVER\r\n"
        b"RCPT TO:<c@y.test> ORCPT=rfc822;bad+zz\r\n"
        b"RCPT TO:<c@y.test>NOTIFY=NEVER\r\n"
    )
    assert isinstance(ev[1], Mail)
    assert ev[1].params == {
        "SIZE": "100",
        "BODY": "8BITMIME",
        "RET": "HDRS",
        "ENVID": "QQ+ZZ",
        "AUTH": "a+b@x.test",
    }
    assert isinstance(ev[2], Rcpt)
    assert ev[2].params == {"NOTIFY": "SUCCESS,DELAY", "ORCPT": "rfc822;b@y.test"}
    assert codes(ev) == [(501, "5.5.4"), (555, "5.5.4"), (501, "5.5.4"), (501, "5.5.4"), (501, "5.5.4")]


def test_xtext_roundtrip() -> None:
    raw = b"a+b=c d\xff"
    assert xtext_decode(xtext_encode(raw)) == raw
    assert xtext_decode(b"+4") is None and xtext_decode(b"+4a") is None and xtext_decode(b"a=b") is None


def test_smtputf8() -> None:
    utf = "üser@bücher.test".encode()
    ev = three_ways(
        b"EHLO c\r\nMAIL FROM:<"
        + utf
        + b">\r\nMAIL FROM:<"
        + utf
        + b"> SMTPUTF8\r\nRCPT TO:<"
        + utf
        + b">\r\n"
    )
    assert codes(ev) == [(553, "5.6.7")]
    assert isinstance(ev[2], Mail) and ev[2].path is not None and ev[2].path.local_part == "üser"
    assert isinstance(ev[3], Rcpt) and ev[3].path is not None and ev[3].path.domain == "bücher.test"
    # and RCPT in a non-SMTPUTF8 transaction is refused
    ev = three_ways(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<" + utf + b">\r\nRCPT TO:<\xff@x.test>\r\n")
    assert codes(ev) == [(553, "5.6.7"), (501, "5.1.3")]


def test_requiretls_parameter() -> None:
    """RFC 8689 §4: REQUIRETLS is a MAIL parameter without value (the TLS rule is the server's)."""
    ev = three_ways(
        b"EHLO c\r\nMAIL FROM:<a@x.test> REQUIRETLS\r\nRSET\r\nMAIL FROM:<a@x.test> REQUIRETLS=1\r\n"
    )
    assert isinstance(ev[1], Mail) and ev[1].params == {"REQUIRETLS": None}
    assert codes(ev) == [(501, "5.5.4")]


@pytest.mark.parametrize(
    ("rcpt", "trick"),
    [
        (b"<u%other.test@ourdomain>", "percent-hack"),
        (b'<"u@other.test"@ourdomain>', "quoted-local-part"),
        (b"<@ourdomain:u@other.test>", "source-route"),
        (b"<@a.test,@ourdomain:u@other.test>", "source-route"),
        (b"<other.test!u@ourdomain>", "bang-path"),
        (b"<u@ourdomain.>", "trailing-dot"),
        (b"<u@[192.0.2.1]>", "address-literal"),
        (b"<u@[IPv6:2001:db8::1]>", "address-literal"),
        (b"<u@ourdomain>", None),
        (b'<"john smith"@ourdomain>', None),
    ],
)
def test_address_forms(rcpt: bytes, trick: str | None) -> None:
    ev = three_ways(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:" + rcpt + b"\r\n")
    r = ev[2]
    assert isinstance(r, Rcpt) and r.path is not None
    assert relay_tricks(r.path) == trick
    if trick == "source-route":
        assert r.address == b"u@other.test" and r.path.domain == "other.test"


def test_bad_addresses() -> None:
    ev = three_ways(
        b"EHLO c\r\nMAIL FROM:<a@>\r\nMAIL FROM:<a b@x.test>\r\nMAIL FROM:<postmaster>\r\n"
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<a@-bad.test>\r\nRCPT TO:<a@[1.2.3]>\r\nRCPT TO:<@x:>\r\n"
    )
    assert codes(ev) == [
        (501, "5.1.7"),
        (501, "5.1.7"),
        (501, "5.1.7"),
        (501, "5.1.3"),
        (501, "5.1.3"),
        (501, "5.1.3"),
    ]


def test_size_exceeded_then_commands_still_parsed() -> None:
    msg = b"".join(b"line %04d ..........................................\r\n" % i for i in range(100))
    data = EHLO + TXN + b"DATA\r\n" + msg + b".\r\nMAIL FROM:<c@x.test>\r\nRCPT TO:<d@y.test>\r\nQUIT\r\n"
    ev = three_ways(data, max_message_size=1000)
    assert types(ev) == [Helo, Mail, Rcpt, Data, MessageChunk, MessageEnd, Mail, Rcpt, Quit]
    end = ev[5]
    assert isinstance(end, MessageEnd) and end.too_big and end.size == len(msg)
    assert len(body(ev)) == 1000
    assert isinstance(ev[6], Mail) and ev[6].address == b"c@x.test"


def test_size_param_over_limit() -> None:
    ev = three_ways(
        b"EHLO c\r\nMAIL FROM:<a@x.test> SIZE=5000\r\nMAIL FROM:<a@x.test> SIZE=500\r\n",
        max_message_size=1000,
    )
    assert codes(ev) == [(552, "5.3.4")]
    assert isinstance(ev[2], Mail)


def test_size_exceeded_memory_bounded() -> None:
    p = SMTPServerProtocol(max_message_size=1000)
    drive([EHLO + TXN + b"DATA\r\n"], proto=p)
    assert p.in_message
    emitted = 0
    for _ in range(200):
        p.receive_data(b"x" * 9_999 + b"\r\n")
        while (ev := p.next_event()) is not NEED_DATA:
            assert isinstance(ev, MessageChunk)
            emitted += len(ev.data)
        assert p.bytes_buffered() == 0
    assert emitted == 1000
    p.receive_data(b".\r\n")
    end = p.next_event()
    assert end == MessageEnd(200 * 10_001, True, False)


def test_message_state_reset_after_message_end() -> None:
    ev = three_ways(
        EHLO + TXN + b"DATA\r\nx\r\n.\r\nRCPT TO:<a@b.test>\r\nDATA\r\n" + TXN + b"DATA\r\ny\r\n.\r\n"
    )
    assert types(ev) == [Helo, Mail, Rcpt, Data, MessageChunk, MessageEnd, CommandError, CommandError,
                         Mail, Rcpt, Data, MessageChunk, MessageEnd]  # fmt: skip


def test_bare_newline_flagged() -> None:
    ev = three_ways(EHLO + TXN + b"DATA\r\nline\nother\rthird\r\n.\r\n")
    end = ev[-1]
    assert isinstance(end, MessageEnd) and end.bare_newline
    assert body(ev) == b"line\nother\rthird\r\n"


def test_bdat_binary_with_end_marker_inside() -> None:
    chunk1 = b"\x00\xff\r\n.\r\nMAIL FROM:<x@y>\r\n"
    chunk2 = b"\r\n.\r\n\n.\n"
    data = (
        EHLO + TXN
        + b"BDAT %d\r\n" % len(chunk1) + chunk1
        + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2
        + b"QUIT\r\n"
    )  # fmt: skip
    ev = three_ways(data)
    assert types(ev) == [
        Helo,
        Mail,
        Rcpt,
        Bdat,
        MessageChunk,
        BdatChunkEnd,
        Bdat,
        MessageChunk,
        MessageEnd,
        Quit,
    ]
    assert ev[3] == Bdat(len(chunk1), False)
    assert ev[5] == BdatChunkEnd(len(chunk1), False)
    assert body(ev) == chunk1 + chunk2
    assert ev[8] == MessageEnd(len(chunk1) + len(chunk2), False, False)


def test_bdat_zero_last_and_data_after_bdat() -> None:
    ev = three_ways(EHLO + TXN + b"BDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\n")
    assert types(ev) == [Helo, Mail, Rcpt, Bdat, MessageChunk, BdatChunkEnd, CommandError, Bdat, MessageEnd]
    assert codes(ev) == [(503, "5.5.1")]
    assert ev[-1] == MessageEnd(3, False, False)


def test_bdat_bad_sequence_consumes_chunk() -> None:
    ev = three_ways(EHLO + b"BDAT 12 LAST\r\nQUIT\r\nQUIT\r\nNOOP\r\nBDAT x\r\n")
    assert types(ev) == [Helo, CommandError, Noop, CommandError]
    assert codes(ev) == [(503, "5.5.1"), (501, "5.5.4")]


def test_bdat_failed_chunk_fails_transaction() -> None:
    def responder(ev: Event) -> Reply | None:
        return Reply(452, "4.3.1", "disk full") if isinstance(ev, BdatChunkEnd) else None

    ev = three_ways(EHLO + TXN + b"BDAT 2\r\nabBDAT 2 LAST\r\ncd", responder)
    assert types(ev) == [Helo, Mail, Rcpt, Bdat, MessageChunk, BdatChunkEnd, CommandError]


def test_bdat_too_big() -> None:
    ev = three_ways(
        EHLO + TXN + b"BDAT 600\r\n" + b"a" * 600 + b"BDAT 600 LAST\r\n" + b"b" * 600, max_message_size=1000
    )
    assert ev[5] == BdatChunkEnd(600, False)
    assert ev[-1] == MessageEnd(1200, True, False)
    assert len(body(ev)) == 1000


def test_binarymime_requires_bdat() -> None:
    ev = three_ways(b"EHLO c\r\nMAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    assert codes(ev) == [(503, "5.5.1")]


def test_pipelining_in_order() -> None:
    rejected = []

    def responder(ev: Event) -> Reply | None:
        if isinstance(ev, Rcpt) and ev.address.startswith(b"bad"):
            rejected.append(ev)
            return Reply(550, "5.1.1", "no such user")
        return None

    data = EHLO + b"MAIL FROM:<a@x.test>\r\nRCPT TO:<bad@y.test>\r\nRCPT TO:<good@y.test>\r\nDATA\r\n"
    _, p, _ = drive([data], responder)
    ev = three_ways(data + b"x\r\n.\r\n", responder)
    assert types(ev) == [Helo, Mail, Rcpt, Rcpt, Data, MessageChunk, MessageEnd]
    assert p.in_message


def test_pipelined_data_after_rejected_data_is_commands() -> None:
    def responder(ev: Event) -> Reply | None:
        return Reply(554, "5.5.1", "no valid recipients") if isinstance(ev, Data) else None

    ev = three_ways(EHLO + TXN + b"DATA\r\nNOOP\r\n.\r\n", responder)
    assert types(ev) == [Helo, Mail, Rcpt, Data, Noop, CommandError]


def test_starttls_discards_buffered_plaintext() -> None:
    injected = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@ourdomain>\r\n"
    p = SMTPServerProtocol(max_message_size=1000)
    p.greeting("mx")
    p.receive_data(EHLO + b"STARTTLS\r\n" + injected)
    assert isinstance(p.next_event(), Helo)
    p.send(Reply.ok())
    ev = p.next_event()
    assert isinstance(ev, StartTLS)
    assert p.bytes_buffered() == len(injected)  # the adapter can see the injection
    assert p.send(Reply(220, "2.0.0", "Ready to start TLS")) == b"220 2.0.0 Ready to start TLS\r\n"
    assert p.bytes_buffered() == 0
    p.receive_data(b"NOOP\r\n")  # still plaintext: dropped
    assert p.next_event() is NEED_DATA
    assert p.pending_plaintext_discarded == len(injected) + 6
    p.start_tls_done()
    assert p.phase is Phase.INITIAL and p.tls_active and p.helo_name is None
    p.receive_data(b"MAIL FROM:<a@x.test>\r\nEHLO c\r\nSTARTTLS\r\n")
    ev1 = p.next_event()
    assert isinstance(ev1, CommandError) and ev1.reply.code == 503  # back to pre-EHLO
    p.send(ev1.reply)
    assert isinstance(p.next_event(), Helo)
    p.send(Reply.ok())
    ev2 = p.next_event()
    assert isinstance(ev2, CommandError) and ev2.reply.code == 503  # TLS already active


def test_starttls_three_ways() -> None:
    ev = three_ways(EHLO + b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert types(ev) == [Helo, StartTLS]
    ev = three_ways(b"STARTTLS\r\n" + EHLO + b"STARTTLS now\r\n" + TXN + b"STARTTLS\r\n")
    assert codes(ev) == [(503, "5.5.1"), (501, "5.5.4"), (503, "5.5.1")]


def test_error_limit() -> None:
    data = b"BOGUS\r\n" * 25
    ev = three_ways(data, max_errors=5)
    assert types(ev) == [CommandError] * 5 + [TooManyErrors]
    tme = ev[-1]
    assert isinstance(tme, TooManyErrors) and (tme.reply.code, tme.reply.enhanced) == (421, "4.7.0")
    _, p, sent = drive([data], max_errors=5)
    assert p.closed and sent.endswith(b"421 4.7.0 Error: too many errors\r\n")


def test_adapter_rejections_count_as_errors() -> None:
    def responder(ev: Event) -> Reply | None:
        return Reply(550, "5.1.1", "unknown") if isinstance(ev, Rcpt) else None

    ev = three_ways(
        EHLO + b"MAIL FROM:<a@x.test>\r\n" + b"RCPT TO:<u@ourdomain>\r\n" * 10, responder, max_errors=3
    )
    assert types(ev) == [Helo, Mail, Rcpt, Rcpt, Rcpt, TooManyErrors]


def test_auth_continuation() -> None:
    ev = three_ways(b"AUTH PLAIN\r\nEHLO c\r\nAUTH plain\r\nAHVzZXIAcGFzcw==\r\nAUTH LOGIN\r\n")
    assert types(ev) == [CommandError, Helo, Auth, AuthResponse, CommandError]
    assert ev[2] == Auth("PLAIN", None)
    assert ev[3] == AuthResponse(b"AHVzZXIAcGFzcw==")
    _, p, _ = drive(
        [b"EHLO c\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\n"],
        lambda e: Reply(235, "2.7.0", "ok") if isinstance(e, Auth) else None,
    )
    assert p.authenticated


def test_auth_failure_returns_to_commands() -> None:
    def responder(ev: Event) -> Reply | None:
        if isinstance(ev, AuthResponse):
            return Reply(535, "5.7.8", "Authentication failed")
        return None

    ev = three_ways(b"EHLO c\r\nAUTH LOGIN\r\ndXNlcg==\r\nNOOP\r\nAUTH PLAIN =\r\n*\r\n", responder)
    assert types(ev) == [Helo, Auth, AuthResponse, Noop, Auth, AuthResponse]
    assert ev[4] == Auth("PLAIN", b"=")


def test_auth_line_too_long() -> None:
    ev = three_ways(b"EHLO c\r\nAUTH PLAIN\r\n" + b"A" * 5000 + b"\r\nNOOP\r\n")
    assert codes(ev) == [(500, "5.5.6")]
    assert isinstance(ev[-1], Noop)


def test_reply_serialisation() -> None:
    assert Reply(250, None, ["mx.test", "PIPELINING", "SIZE 1000"]).to_bytes() == (
        b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    )
    assert Reply(550, "5.1.1", ["a", "b"]).to_bytes() == b"550-5.1.1 a\r\n550 5.1.1 b\r\n"
    assert Reply(250, None, "x\r\n250 injected").to_bytes() == b"250 x  250 injected\r\n"
    assert Reply(354).to_bytes() == b"354\r\n"


def test_must_reply_before_next_event() -> None:
    p = SMTPServerProtocol(max_message_size=10)
    p.receive_data(b"NOOP\r\nNOOP\r\n")
    assert isinstance(p.next_event(), Noop)
    with pytest.raises(LocalProtocolError):
        p.next_event()


def test_spoke_before_greeting() -> None:
    p = SMTPServerProtocol(max_message_size=10)
    p.receive_data(b"EHLO early\r\n")
    p.greeting("mx.test")
    assert p.spoke_before_greeting
    q = SMTPServerProtocol(max_message_size=10)
    assert q.greeting("mx.test") == b"220 mx.test ESMTP\r\n"
    q.receive_data(b"EHLO polite\r\n")
    assert not q.spoke_before_greeting


def test_sanitize_for_header() -> None:
    assert sanitize_for_header(b"host\r\nX-Evil: 1") == "host\\x0d\\x0aX-Evil: 1"
    assert sanitize_for_header("bücher".encode()) == "bücher"
    assert sanitize_for_header(b"a\xffb\\\x00\x7f") == "a\\xffb\\\\\\x00\\x7f"
    assert sanitize_for_header(b"x" * 300).endswith("...")
    out = sanitize_for_header(bytes(range(256)))
    assert "\r" not in out and "\n" not in out


def test_rset_resets_transaction() -> None:
    ev = three_ways(EHLO + TXN + b"RSET\r\nRCPT TO:<a@b.test>\r\n")
    assert types(ev) == [Helo, Mail, Rcpt, Rset, CommandError]
