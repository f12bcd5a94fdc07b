"""Hypothesis fuzzing of the IMAP core: arbitrary bytes only ever yield defined events,
and the chunking of the input never changes the events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto.imap import (
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    IdleDone,
    IMAPServerProtocol,
    LiteralTooBig,
    SequenceSet,
)
from mailhouse.proto.imap import response as R
from mailhouse.proto.imap.commands import Login
from tests.proto.test_imap_parser import drain, feed

EVENT_TYPES = (Command, ContinuationNeeded, CommandError, LiteralTooBig, AuthContinuation, IdleDone)

# Fragments of real commands so that fuzzing reaches deep into the grammar, not just the tag check.
FRAGMENTS = [
    b"a1 ",
    b"UID ",
    b"FETCH ",
    b"SEARCH ",
    b"STORE ",
    b"APPEND ",
    b"LOGIN ",
    b"SELECT ",
    b"LIST ",
    b"NOTIFY SET ",
    b"STATUS ",
    b"SORT ",
    b"THREAD ",
    b"ID ",
    b"GETMETADATA ",
    b"SETMETADATA ",
    b"ESEARCH ",
    b"1:*",
    b"$",
    b"(",
    b")",
    b"[",
    b"]",
    b"<0.10>",
    b"BODY.PEEK",
    b"HEADER.FIELDS",
    b" ",
    b"\r\n",
    b"{3}\r\n",
    b"{2+}\r\n",
    b"~{1}\r\n",
    b"{99999999999}\r\n",
    b'"',
    b"\\",
    b"\x00",
    b"NIL",
    b"INBOX",
    b"&U,BTFw-",
    b"OR ",
    b"NOT ",
    b"FLAGS ",
    b"+FLAGS ",
    b"(\\Seen)",
    b"CHARSET UTF-8 ",
    b"RETURN (",
    b"ALL",
    b"1-Feb-1994",
    b'"07-Feb-1994 21:52:25 -0800"',
    b"CATENATE (",
    b"URL ",
    b"TEXT ",
    b"MODSEQ 5",
]

streams = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=5), max_size=40).map(b"".join),
)


def _small() -> IMAPServerProtocol:
    return IMAPServerProtocol(max_line=200, max_literal=50, max_append_literal=100, max_command_octets=120)


@settings(max_examples=200, deadline=None)
@given(streams)
def test_arbitrary_bytes_only_defined_events(data: bytes) -> None:
    for utf8 in (False, True):
        p = _small()
        p.utf8_enabled = utf8
        p.receive_data(data)
        for ev in drain(p):
            assert isinstance(ev, EVENT_TYPES)
            if isinstance(ev, CommandError | LiteralTooBig):
                assert ev.reply_bytes.endswith(b"\r\n") and ev.reply_bytes.count(b"\r\n") == 1


@settings(max_examples=200, deadline=None)
@given(streams, st.lists(st.integers(min_value=1, max_value=20), max_size=50))
def test_chunking_does_not_change_events(data: bytes, cuts: list[int]) -> None:
    chunks = []
    rest = data
    for c in cuts:
        chunks.append(rest[:c])
        rest = rest[c:]
    chunks.append(rest)
    kw = {"max_line": 200, "max_literal": 50, "max_append_literal": 100, "max_command_octets": 120}
    assert feed(chunks, **kw) == feed([data], **kw)


@settings(max_examples=200, deadline=None)
@given(streams)
def test_modes_never_raise(data: bytes) -> None:
    p = _small()
    p.begin_auth_continuation("a")
    p.receive_data(data)
    drain(p)
    p.begin_idle("b")
    p.receive_data(data)
    drain(p)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50) | st.binary(max_size=50))
def test_encoded_string_is_one_value(v: str | bytes) -> None:
    """A string the serialiser encodes parses back, through our own parser, to the same octets."""
    enc = R.encode_value(v)
    raw = v.encode() if isinstance(v, str) else v
    if b"\x00" in raw:
        return  # only literal8 can carry NUL, not a LOGIN argument
    p = IMAPServerProtocol()
    line = b"a LOGIN " + enc + b" x\r\n"
    p.receive_data(line)
    evs = [e for e in drain(p) if not isinstance(e, ContinuationNeeded)]
    assert len(evs) == 1 and isinstance(evs[0], Command)
    args = evs[0].args
    assert isinstance(args, Login) and args.userid == raw


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2**32 - 1), min_size=1, max_size=30))
def test_sequence_set_roundtrip(nums: list[int]) -> None:
    s = SequenceSet.from_numbers(nums)
    assert SequenceSet.parse(str(s)) == s
    top = max(nums)
    assert all(s.contains(n, top) for n in nums)
    assert sum(b - a + 1 for a, b in s.resolve(top)) == len(set(nums))
