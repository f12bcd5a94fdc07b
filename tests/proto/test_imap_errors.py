"""Typed IMAP parse errors: a CommandError carries status, code, text and kind, and its
reply_bytes are derived from them (proto/imap/errors.py, proto/imap/events.py)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings

from mailhouse.proto.imap import (
    CommandError,
    ErrorKind,
    IMAPServerProtocol,
    MailboxNameError,
    ParseError,
    ReplyStatus,
    parse_command,
)
from mailhouse.proto.imap.errors import status_line
from tests.proto.test_imap_fuzz import _small, streams
from tests.proto.test_imap_parser import bad, drain


def test_syntax_error_fields() -> None:
    err = bad(b"a1 XYZZY")
    assert (err.tag, err.status, err.code, err.text, err.kind) == (
        "a1",
        ReplyStatus.BAD,
        None,
        "Unknown command XYZZY",
        ErrorKind.SYNTAX,
    )
    assert err.reply_bytes == b"a1 BAD Unknown command XYZZY\r\n"


def test_mailbox_name_error_is_typed() -> None:
    """RFC 3501 §5.1.3: a name that is not modified UTF-7 is kind MAILBOX_NAME (still BAD in the core)."""
    for line in (b"a SELECT &Jjo!", b"a CREATE &AGE-", 'a SELECT "Entwürfe"'.encode(), b"a RENAME x &Jjo!"):
        err = bad(line)
        assert err.kind is ErrorKind.MAILBOX_NAME, line
        assert err.status is ReplyStatus.BAD and err.code is None and err.tag == "a"
        assert err.text.startswith("Invalid modified UTF-7 mailbox name")
        assert err.reply_bytes.startswith(b"a BAD Invalid modified UTF-7 mailbox name")


def test_utf8_mailbox_name_error_stays_syntax() -> None:
    """RFC 6855 §3: under UTF8=ACCEPT an invalid UTF-8 name is a plain syntax error."""
    err = bad(b'a SELECT "\xff"', utf8_enabled=True)
    assert err.kind is ErrorKind.SYNTAX and err.text == "Mailbox name is not valid UTF-8"


def test_parse_command_raises_typed_errors() -> None:
    with pytest.raises(MailboxNameError) as mb:
        parse_command([b"a SELECT &Jjo!"])
    assert mb.value.kind is ErrorKind.MAILBOX_NAME and isinstance(mb.value, ParseError)
    with pytest.raises(ParseError) as pe:
        parse_command([b"a SELECT"])
    assert pe.value.kind is ErrorKind.SYNTAX and not isinstance(pe.value, MailboxNameError)


def test_framing_errors_are_typed() -> None:
    p = IMAPServerProtocol(max_line=20)
    p.receive_data(b"a1 NOOP " + b"x" * 40 + b"\r\n\r\n")
    long_line, empty = drain(p)
    assert isinstance(long_line, CommandError) and isinstance(empty, CommandError)
    assert (long_line.tag, long_line.status, long_line.text) == (
        "a1",
        ReplyStatus.BAD,
        "Command line too long",
    )
    assert (empty.tag, empty.reply_bytes) == (None, b"* BAD Empty command line\r\n")
    p.begin_idle("b")
    p.receive_data(b"NOPE\r\n")
    (idle,) = drain(p)
    assert idle == CommandError("b", ReplyStatus.BAD, "Expected DONE")


def test_reply_bytes_derived_from_fields() -> None:
    err = CommandError("A1", ReplyStatus.NO, "Literal too big", "TOOBIG")
    assert err.reply_bytes == b"A1 NO [TOOBIG] Literal too big\r\n"
    assert dataclasses.replace(err, tag=None).reply_bytes == b"* NO [TOOBIG] Literal too big\r\n"
    assert dataclasses.replace(err, code=None).reply_bytes == b"A1 NO Literal too big\r\n"
    assert (
        CommandError("t", ReplyStatus.BAD, "caf\u00e9").reply_bytes == b"t BAD caf?\r\n"
    )  # replies are ASCII
    with pytest.raises(dataclasses.FrozenInstanceError):
        err.text = "x"  # type: ignore[misc]


def test_wire_form_constructor_round_trips() -> None:
    err = CommandError("A1", b"A1 NO [TOOBIG] Literal too big\r\n")
    assert err == CommandError("A1", ReplyStatus.NO, "Literal too big", "TOOBIG", ErrorKind.SYNTAX)
    assert CommandError(None, b"* BAD Empty command line\r\n") == CommandError(
        None, ReplyStatus.BAD, "Empty command line"
    )
    for tag, reply in [
        ("a", b"a OK done\r\n"),  # not a refusal
        ("a", b"a BAD no CRLF"),
        ("b", b"a BAD wrong tag\r\n"),
        (None, b"a BAD tagged but tag is None\r\n"),
        ("a", b"a BAD two\r\nlines\r\n"),
    ]:
        with pytest.raises(ValueError):
            CommandError(tag, reply)


def test_status_line() -> None:
    assert status_line("x", ReplyStatus.BAD, "t", "C") == b"x BAD [C] t\r\n"
    assert status_line(None, ReplyStatus.NO, "t") == b"* NO t\r\n"


@settings(max_examples=200, deadline=None)
@given(streams)
def test_every_core_error_round_trips_through_its_fields(data: bytes) -> None:
    """Whatever the input, a CommandError's bytes are exactly its fields, and for ASCII text the
    wire form parses back to the same fields."""
    for utf8 in (False, True):
        p = _small()
        p.utf8_enabled = utf8
        p.receive_data(data)
        for ev in drain(p):
            if not isinstance(ev, CommandError):
                continue
            assert ev.reply_bytes == status_line(ev.tag, ev.status, ev.text, ev.code)
            assert ev.status is ReplyStatus.BAD
            if ev.text.isascii():
                assert CommandError(ev.tag, ev.reply_bytes) == dataclasses.replace(ev, kind=ErrorKind.SYNTAX)
