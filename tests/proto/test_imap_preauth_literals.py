"""Issue 12 item 3: before authentication every IMAP literal is limited to a few KB
(``PRE_AUTH_MAX_LITERAL``), answered before any ``+`` continuation, at the byte level of the core."""

from __future__ import annotations

import tracemalloc

from mailhouse.proto.imap import (
    NEED_DATA,
    Command,
    ContinuationNeeded,
    IMAPServerProtocol,
    LiteralTooBig,
)
from mailhouse.proto.imap.commands import Login, NoArgs
from mailhouse.proto.imap.receiver import PRE_AUTH_MAX_COMMAND_OCTETS, PRE_AUTH_MAX_LITERAL
from tests.proto.test_imap_parser import drain


def test_core_starts_unauthenticated_with_small_literal_limit() -> None:
    p = IMAPServerProtocol()
    assert not p.authenticated
    assert PRE_AUTH_MAX_LITERAL == 8 * 1024


def test_preauth_sync_append_literal_refused_without_continuation() -> None:
    p = IMAPServerProtocol()  # max_append_literal 64 MiB: 40 MB would be accepted after login
    tracemalloc.start()
    try:
        p.receive_data(b"a APPEND INBOX {40000000}\r\n")
        evs = drain(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert evs == [LiteralTooBig("a", b"a NO [TOOBIG] Literal too big\r\n", 40000000, True)]
    assert peak < 256 * 1024
    # no "+" was sent, so the client sends nothing of it: the next line is a fresh command
    p.receive_data(b"b NOOP\r\n")
    assert drain(p) == [Command("b", "NOOP", NoArgs())]


def test_preauth_literal_just_over_limit_refused_at_limit_accepted() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a LOGIN {%d}\r\n" % (PRE_AUTH_MAX_LITERAL + 1))
    ev = p.next_event()
    assert isinstance(ev, LiteralTooBig) and ev.synchronizing
    assert ev.reply_bytes == b"a NO [TOOBIG] Literal too big\r\n"
    user = b"u" * PRE_AUTH_MAX_LITERAL
    p.receive_data(b"b LOGIN {%d}\r\n" % len(user))
    assert p.next_event() == ContinuationNeeded()
    p.receive_data(user + b" {2}\r\n")
    assert p.next_event() == ContinuationNeeded()
    p.receive_data(b"pw\r\n")
    assert p.next_event() == Command("b", "LOGIN", Login(user, b"pw"))


def test_preauth_nonsync_literal_refused_and_skipped_not_buffered() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a APPEND INBOX {40000000+}\r\n")
    ev = p.next_event()
    assert ev == LiteralTooBig("a", b"a BAD [TOOBIG] Literal too big\r\n", 40000000, False)
    for _ in range(10):
        p.receive_data(b"x" * 100_000)
        assert p.next_event() is NEED_DATA
        assert p.buffered_octets() == 0  # counted, never stored


def test_preauth_many_small_literals_bounded_per_command() -> None:
    # Each literal is under the per-literal limit; together they pass PRE_AUTH_MAX_COMMAND_OCTETS.
    p = IMAPServerProtocol()
    chunk = b"x" * 8000
    p.receive_data(b"a ID (" + b"".join(b'"k%d" {8000+}\r\n' % i + chunk + b" " for i in range(20)))
    evs = drain(p)
    assert evs == [LiteralTooBig("a", b"a BAD [TOOBIG] Literal too big\r\n", 8000, False)]
    assert PRE_AUTH_MAX_COMMAND_OCTETS < 20 * 8000
    # authenticated, the same command is within the limits (and parses)
    q = IMAPServerProtocol(authenticated=True)
    q.receive_data(b"a ID (" + b"".join(b'"k%d" {8000+}\r\n' % i + chunk + b" " for i in range(20)))
    q.receive_data(b"x)\r\n")
    assert not any(isinstance(e, LiteralTooBig) for e in drain(q))


def test_authenticated_switches_limits_both_ways() -> None:
    p = IMAPServerProtocol()
    p.set_authenticated(True)  # LOGIN succeeded
    assert p.authenticated
    p.receive_data(b"a APPEND INBOX {40000000}\r\n")
    assert p.next_event() == ContinuationNeeded()  # after login a message may be appended
    p.take_buffered()
    q = IMAPServerProtocol(authenticated=True)
    q.set_authenticated(False)  # UNAUTHENTICATE (RFC 8437)
    q.receive_data(b"a APPEND INBOX {40000000}\r\n")
    ev = q.next_event()
    assert isinstance(ev, LiteralTooBig) and ev.synchronizing


def test_command_pipelined_after_login_uses_new_limits() -> None:
    # Framing is lazy: the adapter switches limits after LOGIN before the next line is framed.
    p = IMAPServerProtocol()
    p.receive_data(b"a LOGIN u p\r\nb APPEND INBOX {20000+}\r\n" + b"y" * 20000 + b"\r\n")
    ev = p.next_event()
    assert ev == Command("a", "LOGIN", Login(b"u", b"p"))
    p.set_authenticated(True)
    ev = p.next_event()
    assert isinstance(ev, Command) and ev.name == "APPEND"


def test_authenticated_limits_unchanged() -> None:
    p = IMAPServerProtocol(authenticated=True, max_literal=100, max_append_literal=1000)
    p.receive_data(b"a LOGIN {101}\r\nb APPEND INBOX {1000}\r\n")
    assert isinstance(p.next_event(), LiteralTooBig)
    assert p.next_event() == ContinuationNeeded()
