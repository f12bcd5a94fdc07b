"""Hypothesis fuzzing of the POP3 core parser and the dot-stuffing stream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto.pop3 import (
    MAX_COMMAND_LINE,
    MAX_RESPONSE_LINE,
    NEED_DATA,
    CommandError,
    Event,
    POP3ServerProtocol,
    dot_stuff_crlf,
    dot_stuff_stream,
)

FUZZ = settings(max_examples=200, deadline=None)

COMMAND_WORDS = [
    b"USER",
    b"PASS",
    b"AUTH",
    b"STLS",
    b"UTF8",
    b"CAPA",
    b"QUIT",
    b"STAT",
    b"LIST",
    b"RETR",
    b"DELE",
    b"NOOP",
    b"RSET",
    b"TOP",
    b"UIDL",
    b"APOP",
]

# Lines that look like POP3 commands, mixed with noise, so the parser is reached deeply.
command_line = st.builds(
    lambda verb, args, end: verb + b"".join(b" " + a for a in args) + end,
    st.sampled_from(COMMAND_WORDS) | st.binary(max_size=6),
    st.lists(
        st.sampled_from([b"1", b"0", b"-1", b"x", b"=", b"PLAIN", b"", b"99999999999"])
        | st.binary(max_size=8)
    ),
    st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
)
stream = st.lists(command_line | st.binary(max_size=400), max_size=20).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def run(p: POP3ServerProtocol, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        p.receive_data(chunk)
        while (ev := p.next_event()) is not NEED_DATA:
            assert not isinstance(ev, type(NEED_DATA))
            events.append(ev)
        assert len(p._buf) < max(MAX_COMMAND_LINE, len(chunk) + MAX_COMMAND_LINE)
    return events


def check_events(events: list[Event]) -> None:
    for ev in events:
        if isinstance(ev, CommandError):
            assert ev.reply.startswith(b"-ERR")
            assert ev.reply.endswith(b"\r\n") and ev.reply.count(b"\n") == 1
            assert len(ev.reply) <= MAX_RESPONSE_LINE


@FUZZ
@given(stream, st.lists(st.integers(min_value=0), max_size=30), st.booleans())
def test_parser_never_crashes_and_is_chunking_invariant(data: bytes, cuts: list[int], authed: bool) -> None:
    def fresh() -> POP3ServerProtocol:
        p = POP3ServerProtocol()
        if authed:
            p.authenticated()
        return p

    whole = run(fresh(), [data])
    check_events(whole)
    assert run(fresh(), split(data, cuts)) == whole


@FUZZ
@given(stream)
def test_parser_bytewise_equals_whole(data: bytes) -> None:
    whole = run(POP3ServerProtocol(), [data])
    assert run(POP3ServerProtocol(), [data[i : i + 1] for i in range(len(data))]) == whole


@FUZZ
@given(st.binary(max_size=2000))
def test_buffer_is_bounded_after_draining(data: bytes) -> None:
    p = POP3ServerProtocol()
    p.authenticated()
    run(p, [data])
    assert len(p._buf) < MAX_COMMAND_LINE


body_bytes = st.lists(
    st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"From: x", b" "]) | st.binary(max_size=5),
    max_size=40,
).map(b"".join)


def normalise(body: bytes) -> bytes:
    norm = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not norm or norm.endswith(b"\r\n"):
        return norm
    return norm + (b"\n" if norm.endswith(b"\r") else b"\r\n")


def unstuff(wire: bytes) -> bytes:
    lines = wire.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines[:-2])


@FUZZ
@given(body_bytes, st.lists(st.integers(min_value=0), max_size=20))
def test_dot_stuff_stream_properties(body: bytes, cuts: list[int]) -> None:
    whole = b"".join(dot_stuff_stream([body]))
    assert b"".join(dot_stuff_stream(split(body, cuts))) == whole
    # the terminator appears exactly once, at the end
    framed = b"\r\n" + whole
    assert framed.find(b"\r\n.\r\n") == len(framed) - 5
    # no bare LF survives
    assert b"\n" not in whole.replace(b"\r\n", b"")
    # a client that strips one leading dot gets the normalised body back
    assert unstuff(whole) == normalise(body)


@FUZZ
@given(body_bytes)
def test_dot_stuff_crlf_is_dot_stuff_for_stored_blobs_and_always_safely_framed(body: bytes) -> None:
    stored = normalise(body)  # what the store holds (store.crlf)
    assert dot_stuff_crlf(stored) == b"".join(dot_stuff_stream([stored]))
    out = dot_stuff_crlf(body)  # any input: the terminator only at the end, also for bare LF
    framed = b"\n" + out
    assert framed.find(b"\n.\r\n") == len(framed) - 4
    assert framed.find(b"\n.\n") < 0
