"""Tests for mailhouse.proto.pop3: parsing, state gate, limits, STLS, serialisers."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from mailhouse.proto.pop3 import (
    MAX_COMMAND_LINE,
    MAX_RESPONSE_LINE,
    NEED_DATA,
    Auth,
    AuthCancelled,
    AuthResponse,
    Capa,
    CommandError,
    Dele,
    Event,
    List,
    Noop,
    Pass,
    POP3ServerProtocol,
    Pop3State,
    Quit,
    ResponseCode,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    dot_stuff_stream,
    err,
    multiline,
    ok,
)
from mailhouse.proto.sasl import Credentials, PlainMechanism, decode_line, plain_initial

Feeder = Callable[[POP3ServerProtocol, bytes], list[Event]]


def drain(p: POP3ServerProtocol) -> list[Event]:
    out: list[Event] = []
    while (ev := p.next_event()) is not NEED_DATA:
        assert not isinstance(ev, type(NEED_DATA))
        out.append(ev)
    return out


def feed_whole(p: POP3ServerProtocol, data: bytes) -> list[Event]:
    p.receive_data(data)
    return drain(p)


def feed_bytewise(p: POP3ServerProtocol, data: bytes) -> list[Event]:
    out: list[Event] = []
    for i in range(len(data)):
        p.receive_data(data[i : i + 1])
        out.extend(drain(p))
    return out


FEEDERS = [pytest.param(feed_whole, id="whole"), pytest.param(feed_bytewise, id="bytewise")]


def transaction() -> POP3ServerProtocol:
    p = POP3ServerProtocol()
    p.authenticated()
    return p


AUTH_CASES: list[tuple[bytes, Event]] = [
    (b"USER alice@example.org\r\n", User("alice@example.org")),
    (b"user bob\r\n", User("bob")),
    (b"CAPA\r\n", Capa()),
    (b"capa\r\n", Capa()),
    (b"STLS\r\n", Stls()),
    (b"UTF8\r\n", Utf8()),
    (b"QUIT\r\n", Quit()),
    (b"AUTH PLAIN\r\n", Auth("PLAIN", None)),
    (b"auth plain =\r\n", Auth("PLAIN", b"")),
    (b"AUTH PLAIN " + base64.b64encode(b"\0u\0p") + b"\r\n", Auth("PLAIN", b"\0u\0p")),
    (b"AUTH scram-sha-256\r\n", Auth("SCRAM-SHA-256", None)),
]

TRANS_CASES: list[tuple[bytes, Event]] = [
    (b"STAT\r\n", Stat()),
    (b"LIST\r\n", List(None)),
    (b"LIST 3\r\n", List(3)),
    (b"list 12\r\n", List(12)),
    (b"RETR 1\r\n", Retr(1)),
    (b"rEtR 42\r\n", Retr(42)),
    (b"DELE 7\r\n", Dele(7)),
    (b"NOOP\r\n", Noop()),
    (b"RSET\r\n", Rset()),
    (b"TOP 1 0\r\n", Top(1, 0)),
    (b"TOP 2 10\r\n", Top(2, 10)),
    (b"UIDL\r\n", Uidl(None)),
    (b"UIDL 5\r\n", Uidl(5)),
    (b"CAPA\r\n", Capa()),
    (b"QUIT\r\n", Quit()),
    (b"RETR 2147483647\r\n", Retr(2147483647)),
    (b"LIST 1\n", List(1)),  # bare LF tolerated
]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize(("wire", "event"), AUTH_CASES)
def test_authorization_commands(feed: Feeder, wire: bytes, event: Event) -> None:
    assert feed(POP3ServerProtocol(), wire) == [event]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize(("wire", "event"), TRANS_CASES)
def test_transaction_commands(feed: Feeder, wire: bytes, event: Event) -> None:
    assert feed(transaction(), wire) == [event]


@pytest.mark.parametrize(("wire", "event"), [c for c in TRANS_CASES if c[1] != Quit()])
def test_transaction_commands_with_trailing_data(wire: bytes, event: Event) -> None:
    p = transaction()
    p.receive_data(wire + b"NOOP\r\nSTA")
    assert p.next_event() == event
    assert p.next_event() == Noop()
    assert p.next_event() is NEED_DATA
    p.receive_data(b"T\r\n")
    assert p.next_event() == Stat()


def test_user_pass_pipelined() -> None:
    p = POP3ServerProtocol()
    evs = feed_whole(p, b"USER alice\r\nPASS secret with  spaces \r\n")
    assert evs == [User("alice"), Pass(b"secret with  spaces ")]
    assert "secret" not in repr(evs[1])


@pytest.mark.parametrize("feed", FEEDERS)
def test_pass_requires_user_immediately_before(feed: Feeder) -> None:
    p = POP3ServerProtocol()
    (ev,) = feed(p, b"PASS x\r\n")
    assert isinstance(ev, CommandError) and ev.reply.startswith(b"-ERR")
    evs = feed(p, b"USER a\r\nCAPA\r\nPASS x\r\n")
    assert evs[:2] == [User("a"), Capa()]
    assert isinstance(evs[2], CommandError)


def test_pass_without_argument() -> None:
    assert isinstance(feed_whole(POP3ServerProtocol(), b"USER a\r\nPASS\r\n")[1], CommandError)


def test_utf8_user_name() -> None:
    assert feed_whole(POP3ServerProtocol(), "USER jürgen\r\n".encode()) == [User("jürgen")]
    assert isinstance(feed_whole(POP3ServerProtocol(), b"USER \xff\r\n")[0], CommandError)


# --- state gate -------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire", [b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 1", b"UIDL"]
)
def test_transaction_commands_rejected_in_authorization(wire: bytes) -> None:
    (ev,) = feed_whole(POP3ServerProtocol(), wire + b"\r\n")
    assert ev == CommandError(b"-ERR command not valid in this state\r\n")


@pytest.mark.parametrize("wire", [b"USER a", b"PASS a", b"AUTH PLAIN", b"STLS", b"UTF8"])
def test_authorization_commands_rejected_in_transaction(wire: bytes) -> None:
    (ev,) = feed_whole(transaction(), wire + b"\r\n")
    assert ev == CommandError(b"-ERR command not valid in this state\r\n")


def test_update_state_yields_nothing() -> None:
    p = transaction()
    assert feed_whole(p, b"QUIT\r\n") == [Quit()]
    p.quit_to_update()
    assert p.state is Pop3State.UPDATE
    assert feed_whole(p, b"STAT\r\n") == []


def test_nothing_after_quit_in_authorization() -> None:
    p = POP3ServerProtocol()
    assert feed_whole(p, b"QUIT\r\nUSER a\r\n") == [Quit()]
    assert feed_whole(p, b"CAPA\r\n") == []


def test_transition_misuse_raises() -> None:
    p = POP3ServerProtocol()
    with pytest.raises(RuntimeError):
        p.quit_to_update()
    with pytest.raises(RuntimeError):
        p.start_tls_done()
    p.authenticated()
    with pytest.raises(RuntimeError):
        p.authenticated()
    with pytest.raises(RuntimeError):
        p.begin_auth_continuation()


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"FOO\r\n", b"-ERR unknown command\r\n"),
        (b"\r\n", b"-ERR unknown command\r\n"),
        (b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", b"-ERR APOP not supported, use AUTH\r\n"),
        (b"LANG\r\n", b"-ERR unknown command\r\n"),
    ],
)
def test_unknown_commands(wire: bytes, reply: bytes) -> None:
    assert feed_whole(POP3ServerProtocol(), wire) == [CommandError(reply)]


@pytest.mark.parametrize(
    "wire",
    [
        b"RETR",
        b"RETR 0",
        b"RETR -1",
        b"RETR +1",
        b"RETR 1a",
        b"RETR 0x1",
        b"RETR 1 2",
        b"RETR  1",
        b"RETR 2147483648",
        b"RETR 99999999999999999999999",
        b"RETR \xd9\xa1",  # Arabic-Indic digit one: not ASCII decimal
        b"DELE",
        b"LIST 0",
        b"LIST 1 2",
        b"UIDL x",
        b"TOP 1",
        b"TOP 1 -1",
        b"TOP 0 1",
        b"STAT 1",
        b"NOOP x",
        b"QUIT now",
    ],
)
def test_syntax_errors_in_transaction(wire: bytes) -> None:
    p = transaction()
    (ev,) = feed_whole(p, wire + b"\r\n")
    assert isinstance(ev, CommandError)
    assert ev.reply.startswith(b"-ERR ") and ev.reply.endswith(b"\r\n")
    # the session continues
    assert feed_whole(p, b"NOOP\r\n") == [Noop()]


@pytest.mark.parametrize(
    "wire",
    [
        b"AUTH",
        b"AUTH PL@IN",
        b"AUTH " + b"X" * 21,
        b"AUTH PLAIN !!!",
        b"AUTH PLAIN a b",
        b"USER",
        b"USER a b",
    ],
)
def test_syntax_errors_in_authorization(wire: bytes) -> None:
    (ev,) = feed_whole(POP3ServerProtocol(), wire + b"\r\n")
    assert isinstance(ev, CommandError)


# --- line limits ------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_at_limit_is_accepted(feed: Feeder) -> None:
    name = b"a" * (MAX_COMMAND_LINE - len(b"USER \r\n"))
    assert feed(POP3ServerProtocol(), b"USER " + name + b"\r\n") == [User(name.decode())]


@pytest.mark.parametrize("feed", FEEDERS)
def test_long_line_rejected_once_and_discarded(feed: Feeder) -> None:
    p = POP3ServerProtocol()
    name = b"a" * (MAX_COMMAND_LINE - len(b"USER \r\n") + 1)
    evs = feed(p, b"USER " + name + b"\r\nCAPA\r\n")
    assert evs == [CommandError(b"-ERR line too long\r\n"), Capa()]


def test_huge_line_is_not_buffered() -> None:
    p = POP3ServerProtocol()
    p.receive_data(b"X" * 1000)
    assert p.next_event() == CommandError(b"-ERR line too long\r\n")
    for _ in range(100):
        p.receive_data(b"USER evil\r" + b"Y" * 10_000)  # no LF: still the same line
        assert p.next_event() is NEED_DATA
        assert len(p._buf) == 0
    p.receive_data(b"tail of long line\nCAPA\r\n")
    assert drain(p) == [Capa()]


def test_long_complete_line_in_one_chunk() -> None:
    p = POP3ServerProtocol()
    assert feed_whole(p, b"NOOP " + b"x" * 600 + b"\r\nQUIT\r\n") == [
        CommandError(b"-ERR line too long\r\n"),
        Quit(),
    ]


# --- SASL continuation ---------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDERS)
def test_auth_plain_with_continuation(feed: Feeder) -> None:
    p = POP3ServerProtocol()
    assert feed(p, b"AUTH PLAIN\r\n") == [Auth("PLAIN", None)]
    p.begin_auth_continuation()
    response = base64.b64encode(plain_initial("", "alice", "pw"))
    (ev,) = feed(p, response + b"\r\n")
    assert ev == AuthResponse(response)
    assert isinstance(ev, AuthResponse)
    mech = PlainMechanism()
    mech.start(None)
    step = mech.respond(decode_line(ev.line))
    assert isinstance(step, Credentials) and step.authcid == "alice"
    # one-shot: the next line is a command again
    assert feed(p, b"CAPA\r\n") == [Capa()]


def test_auth_cancel() -> None:
    p = POP3ServerProtocol()
    feed_whole(p, b"AUTH SCRAM-SHA-256\r\n")
    p.begin_auth_continuation()
    assert feed_whole(p, b"*\r\n") == [AuthCancelled()]


def test_auth_continuation_allows_long_line() -> None:
    p = POP3ServerProtocol()
    feed_whole(p, b"AUTH PLAIN\r\n")
    p.begin_auth_continuation()
    long = b"A" * 1000
    assert feed_whole(p, long + b"\r\n") == [AuthResponse(long)]


def test_auth_continuation_still_bounded() -> None:
    p = POP3ServerProtocol()
    feed_whole(p, b"AUTH PLAIN\r\n")
    p.begin_auth_continuation()
    p.receive_data(b"A" * 100_000)
    assert p.next_event() == CommandError(b"-ERR line too long\r\n")


def test_auth_then_transaction() -> None:
    p = POP3ServerProtocol()
    feed_whole(p, b"AUTH PLAIN =\r\n")
    p.authenticated()
    assert p.state is Pop3State.TRANSACTION
    assert feed_whole(p, b"STAT\r\n") == [Stat()]


# --- STLS ----------------------------------------------------------------------------


def test_stls_discards_pipelined_plaintext() -> None:
    p = POP3ServerProtocol()
    p.receive_data(b"STLS\r\nUSER victim\r\nPASS injected\r\n")
    assert p.next_event() == Stls()
    # nothing leaks out before the handshake completes
    assert p.next_event() is NEED_DATA
    p.receive_data(b"CAPA\r\n")  # still plaintext
    assert p.next_event() is NEED_DATA
    p.start_tls_done()
    assert p.tls_active
    assert p.next_event() is NEED_DATA
    assert feed_whole(p, b"CAPA\r\n") == [Capa()]


def test_stls_discards_partial_long_line_state() -> None:
    p = POP3ServerProtocol()
    p.receive_data(b"STLS\r\n" + b"Z" * 1000)
    assert p.next_event() == Stls()
    p.start_tls_done()
    assert feed_whole(p, b"USER a\r\n") == [User("a")]


def test_stls_clears_pending_user() -> None:
    p = POP3ServerProtocol()
    feed_whole(p, b"USER a\r\nSTLS\r\n")
    p.start_tls_done()
    (ev,) = feed_whole(p, b"PASS x\r\n")
    assert isinstance(ev, CommandError)


def test_stls_refused_when_active_or_unavailable() -> None:
    p = POP3ServerProtocol(tls_active=True)
    assert feed_whole(p, b"STLS\r\nCAPA\r\n") == [CommandError(b"-ERR already using TLS\r\n"), Capa()]
    p = POP3ServerProtocol(tls_available=False)
    assert feed_whole(p, b"STLS\r\nCAPA\r\n") == [CommandError(b"-ERR TLS not available\r\n"), Capa()]
    p = POP3ServerProtocol()
    feed_whole(p, b"STLS\r\n")
    p.start_tls_done()
    assert feed_whole(p, b"STLS\r\n") == [CommandError(b"-ERR already using TLS\r\n")]


# --- serialisers ---------------------------------------------------------------------


def test_ok_err() -> None:
    assert ok() == b"+OK\r\n"
    assert ok("maildrop has 2 messages") == b"+OK maildrop has 2 messages\r\n"
    assert err("locked", ResponseCode.IN_USE) == b"-ERR [IN-USE] locked\r\n"
    assert err("wait", ResponseCode.LOGIN_DELAY) == b"-ERR [LOGIN-DELAY] wait\r\n"
    assert err("db down", ResponseCode.SYS_TEMP) == b"-ERR [SYS/TEMP] db down\r\n"
    assert err("gone", ResponseCode.SYS_PERM) == b"-ERR [SYS/PERM] gone\r\n"
    assert err("bad credentials", ResponseCode.AUTH) == b"-ERR [AUTH] bad credentials\r\n"
    assert err(code=ResponseCode.AUTH) == b"-ERR [AUTH]\r\n"


def test_reply_injection_and_length() -> None:
    with pytest.raises(ValueError):
        ok("x\r\n+OK forged")
    with pytest.raises(ValueError):
        err("a\nb")
    assert len(ok("x" * (MAX_RESPONSE_LINE - 6))) == MAX_RESPONSE_LINE
    with pytest.raises(ValueError):
        ok("x" * (MAX_RESPONSE_LINE - 5))


def test_multiline_listing() -> None:
    assert multiline("2 messages", [b"1 120", b"2 200"]) == b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"
    assert multiline("", []) == b"+OK\r\n.\r\n"
    assert multiline("caps", [b".weird"]) == b"+OK caps\r\n..weird\r\n.\r\n"
    with pytest.raises(ValueError):
        multiline("x", [b"a\r\nb"])


def test_multiline_retr_dot_stuffing() -> None:
    body = b"Subject: hi\r\n\r\n.\r\n..\r\n.hidden\r\nplain\r\n...three\r\nend"
    assert multiline("message follows", body) == (
        b"+OK message follows\r\n"
        b"Subject: hi\r\n\r\n..\r\n...\r\n..hidden\r\nplain\r\n....three\r\nend\r\n.\r\n"
    )


def test_multiline_first_line_dot_and_bare_lf() -> None:
    assert multiline("m", b".start\nline\n") == b"+OK m\r\n..start\r\nline\r\n.\r\n"
    assert multiline("m", b"") == b"+OK m\r\n.\r\n"


def unstuff(wire: bytes) -> bytes:
    """What a client (poplib) reconstructs from a multi-line block."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")[:-2]
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_dot_stuff_stream_chunk_boundaries(size: int) -> None:
    body = b".a\r\n..b\r\nc\n.d\r\n\r\n.\r\n.\n.e\rf\r\n.."
    expected = b"".join(dot_stuff_stream([body]))
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert b"".join(dot_stuff_stream(chunks)) == expected
    assert expected == b"..a\r\n...b\r\nc\r\n..d\r\n\r\n..\r\n..\r\n..e\rf\r\n...\r\n.\r\n"


def test_dot_stuff_stream_split_crlf_before_dot() -> None:
    chunks = [b"line\r", b"\n.dot\r", b"\n", b".", b"x\r\n"]
    assert b"".join(dot_stuff_stream(chunks)) == b"line\r\n..dot\r\n..x\r\n.\r\n"


def test_dot_stuff_stream_edge_cases() -> None:
    assert b"".join(dot_stuff_stream([])) == b".\r\n"
    assert b"".join(dot_stuff_stream([b"", b""])) == b".\r\n"
    assert b"".join(dot_stuff_stream([b"abc\r"])) == b"abc\r\n.\r\n"
    assert b"".join(dot_stuff_stream([b"abc\r", b""])) == b"abc\r\n.\r\n"
    assert b"".join(dot_stuff_stream([b"\n"])) == b"\r\n.\r\n"


def test_dot_stuff_roundtrip() -> None:
    body = b"From: a\r\n\r\n.\r\n..\r\n.x\r\nbody\r\n"
    assert unstuff(b"".join(dot_stuff_stream([body[i : i + 3] for i in range(0, len(body), 3)]))) == body


def test_retr_through_poplib_parser() -> None:
    """Our multiline block parsed as poplib would (strip one leading dot)."""
    body = b"Subject: t\r\n\r\n.\r\n..\r\n.leading\r\n"
    wire = multiline("follows", body)
    status, _, block = wire.partition(b"\r\n")
    assert status == b"+OK follows"
    assert unstuff(block) == body


def test_buffered_counts_unparsed_octets() -> None:
    p = POP3ServerProtocol()
    assert p.buffered == 0
    p.receive_data(b"CAPA\r\nNOO")
    assert p.buffered == 9
    assert p.next_event() == Capa()
    assert p.buffered == 3
    assert p.next_event() is NEED_DATA
    p.receive_data(b"Z" * 300)  # over the line limit: answered and dropped, not kept
    assert isinstance(p.next_event(), CommandError)
    assert p.buffered == 0


def test_nothing_is_buffered_between_stls_and_the_handshake() -> None:
    # RFC 2595 §4 / CVE-2011-0411: plaintext after STLS is discarded, so a client flooding
    # before the handshake costs no memory (found by test_pop3_fuzz's buffer bound).
    p = POP3ServerProtocol(tls_available=True)
    p.receive_data(b"STLS\r\n")
    assert isinstance(p.next_event(), Stls)
    for _ in range(100):
        p.receive_data(b"USER mallory\r\n" * 10)
    assert p.buffered == 0
    assert p.next_event() is NEED_DATA
    p.start_tls_done()
    p.receive_data(b"CAPA\r\n")
    assert isinstance(p.next_event(), Capa)
