"""Named regression tests for the IMAP core's security classes: resource exhaustion through
literals, deep nesting, over-long lines, NUL smuggling, and recovery after each."""

from __future__ import annotations

import sys
import tracemalloc

from mailhouse.proto.imap import (
    NEED_DATA,
    Command,
    CommandError,
    ContinuationNeeded,
    IMAPServerProtocol,
    LiteralTooBig,
)
from mailhouse.proto.imap.commands import Login, NoArgs
from mailhouse.proto.imap.receiver import DEFAULT_MAX_LINE
from tests.proto.test_imap_parser import drain, three_ways


def test_huge_sync_literal_refused_before_allocation() -> None:
    p = IMAPServerProtocol()
    tracemalloc.start()
    try:
        p.receive_data(b"A1 APPEND INBOX {4294967296}\r\n")
        ev = p.next_event()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # answered after only the command line: nothing of the literal was read or reserved
    assert ev == LiteralTooBig("A1", b"A1 NO [TOOBIG] Literal too big\r\n", 4294967296, True)
    assert peak < 1024 * 1024
    assert p.next_event() is NEED_DATA
    # the client sent nothing (no "+"), so the next line is a fresh command
    p.receive_data(b"A2 NOOP\r\n")
    assert p.next_event() == Command("A2", "NOOP", NoArgs())


def test_absurd_literal_digits_refused() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"A1 LOGIN {" + b"9" * 5000 + b"}\r\n")
    ev = p.next_event()
    assert isinstance(ev, LiteralTooBig) and ev.reply_bytes.startswith(b"A1 NO [TOOBIG]")


def test_literal_limit_smaller_outside_append() -> None:
    p = IMAPServerProtocol(max_literal=100, max_append_literal=1000)
    p.receive_data(b"a LOGIN {101}\r\nb APPEND INBOX {1000}\r\n")
    assert isinstance(p.next_event(), LiteralTooBig)
    assert p.next_event() == ContinuationNeeded()


def test_huge_nonsync_literal_skipped_without_buffering() -> None:
    p = IMAPServerProtocol(max_literal=1024)
    p.receive_data(b"A1 LOGIN {100000+}\r\n")
    ev = p.next_event()
    assert ev == LiteralTooBig("A1", b"A1 BAD [TOOBIG] Literal too big\r\n", 100000, False)
    chunk = b"x" * 10000
    for _ in range(10):
        p.receive_data(chunk)
        assert p.next_event() is NEED_DATA
        assert p.buffered_octets() == 0  # skipped by counting, never stored
    # rest of the refused command line, including a further non-sync literal, then recovery
    p.receive_data(b" {5+}\r\nabcde\r\nA2 NOOP\r\n")
    assert drain(p) == [Command("A2", "NOOP", NoArgs())]


def test_literal_minus_limit() -> None:
    p = IMAPServerProtocol(literal_minus=True)
    p.receive_data(b"a LOGIN {4097+}\r\n")
    ev = p.next_event()
    assert isinstance(ev, LiteralTooBig) and not ev.synchronizing


def test_total_literal_octets_per_command_bounded() -> None:
    p = IMAPServerProtocol(max_append_literal=100, max_command_octets=150)
    p.receive_data(b"a APPEND INBOX {100+}\r\n" + b"x" * 100 + b" {100+}\r\n")
    evs = drain(p)
    assert isinstance(evs[-1], LiteralTooBig)


def test_deep_parentheses_bad_without_recursion_error() -> None:
    for cmd in (b"a SEARCH ", b"a FETCH 1 ", b"a STORE 1 FLAGS ", b"a LIST ", b"a NOTIFY SET ", b"a ID "):
        line = cmd + b"(" * 10000 + b"ALL" + b")" * 10000 + b"\r\n"
        evs = three_ways(line)
        assert len(evs) == 1 and isinstance(evs[0], CommandError), (cmd, evs)
        assert evs[0].reply_bytes.startswith(b"a BAD")


def test_deep_not_or_chains_bad() -> None:
    limit = sys.getrecursionlimit()
    for line in (b"a SEARCH " + b"NOT " * 10000 + b"ALL", b"a SEARCH " + b"OR ALL " * 5000 + b"ALL"):
        evs = three_ways(line + b"\r\n")
        assert len(evs) == 1 and isinstance(evs[0], CommandError)
        assert b"nested" in evs[0].reply_bytes
    assert sys.getrecursionlimit() == limit


def test_nul_in_quoted_string_bad() -> None:
    evs = three_ways(b'a LOGIN "fred\x00admin" pw\r\n')
    assert len(evs) == 1 and isinstance(evs[0], CommandError) and evs[0].reply_bytes.startswith(b"a BAD")


def test_nul_in_literal_bad() -> None:
    evs = three_ways(b"a LOGIN {5+}\r\nfr\x00ed pw\r\n")
    assert len(evs) == 1 and isinstance(evs[0], CommandError)


def test_overlong_line_bad_and_next_command_parsed() -> None:
    line = b"a1 SEARCH " + b"ALL " * (DEFAULT_MAX_LINE // 4) + b"ALL\r\n"
    evs = three_ways(line + b"a2 NOOP\r\n")
    assert evs == [
        CommandError("a1", b"a1 BAD Command line too long\r\n"),
        Command("a2", "NOOP", NoArgs()),
    ]


def test_overlong_line_without_crlf_answered_early() -> None:
    p = IMAPServerProtocol(max_line=1000)
    p.receive_data(b"a1 LOGIN " + b"x" * 2000)
    ev = p.next_event()
    assert ev == CommandError("a1", b"a1 BAD Command line too long\r\n")
    p.receive_data(b"y" * 100000)
    assert p.next_event() is NEED_DATA
    assert p.buffered_octets() <= 1  # discarded as it arrives
    p.receive_data(b"\r\na2 LOGIN u p\r\n")
    assert p.next_event() == Command("a2", "LOGIN", Login(b"u", b"p"))


def test_overlong_line_ending_in_nonsync_literal_does_not_inject() -> None:
    p = IMAPServerProtocol(max_line=100)
    p.receive_data(b"a1 LOGIN " + b"x" * 200 + b" {13+}\r\nb1 LOGOUT\r\n\r\n\r\nb2 NOOP\r\n")
    evs = drain(p)
    # the literal "b1 LOGOUT\r\n\r\n" is data, never a command
    assert evs == [CommandError("a1", b"a1 BAD Command line too long\r\n"), Command("b2", "NOOP", NoArgs())]


def test_unknown_command_bad_and_next_parsed() -> None:
    evs = three_ways(b"a1 XYZZY foo bar\r\na2 NOOP\r\n")
    assert evs == [CommandError("a1", b"a1 BAD Unknown command XYZZY\r\n"), Command("a2", "NOOP", NoArgs())]


def test_error_text_never_reflects_crlf() -> None:
    evs = three_ways(b"a1 " + b"X" * 30 + b"\x01\r\n")
    assert len(evs) == 1 and isinstance(evs[0], CommandError)
    assert evs[0].reply_bytes.count(b"\r\n") == 1


def test_literal_data_is_never_parsed_as_command() -> None:
    evs = three_ways(b"a LOGIN {12}\r\nb LOGOUT\r\n\r\n pw\r\n")
    assert [e for e in evs if not isinstance(e, ContinuationNeeded)] == [
        Command("a", "LOGIN", Login(b"b LOGOUT\r\n\r\n", b"pw"))
    ]
