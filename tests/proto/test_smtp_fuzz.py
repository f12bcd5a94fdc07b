"""Hypothesis fuzzing of the SMTP cores: command parser, DATA reader, client replies, paths."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto import smtp
from mailhouse.proto.smtp import MessageEnd
from mailhouse.proto.smtp_address import parse_path, relay_tricks
from mailhouse.proto.smtp_client import (
    NEED_DATA,
    DataEncoder,
    ReplyProtocolError,
    ServerReply,
    SMTPClientProtocol,
)
from tests.proto.smtp_harness import body, drive

FUZZ = settings(max_examples=200, deadline=None)
EVENT_TYPES = tuple(getattr(smtp, n) for n in smtp.__all__ if isinstance(getattr(smtp, n), type)
                    and n in ("Helo", "Mail", "Rcpt", "Data", "MessageChunk", "MessageEnd", "Bdat", "BdatChunkEnd",
                              "Rset", "Noop", "Quit", "Vrfy", "Help", "StartTLS", "Auth", "AuthResponse",
                              "CommandError", "TooManyErrors"))  # fmt: skip
HEAD = b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<u@ourdomain>\r\nDATA\r\n"

TOKENS = [
    b"EHLO c\r\n", b"HELO c\r\n", b"MAIL FROM:<a@x.test>", b" SIZE=10", b" BODY=BINARYMIME", b" SMTPUTF8",
    b"RCPT TO:<u@ourdomain>", b" NOTIFY=NEVER", b" ORCPT=rfc822;a+40b", b"DATA", b"BDAT 3", b"BDAT 0 LAST",
    b" LAST", b"RSET", b"NOOP", b"QUIT", b"STARTTLS", b"AUTH PLAIN", b"AUTH LOGIN =", b"VRFY x", b"HELP",
    b"\r\n", b"\n", b"\r", b".", b"\r\n.\r\n", b"\x00", b"\xff", b"<", b">", b" ", b"x" * 600, b"abc", b"\"",
]  # fmt: skip
commandish = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=20)), max_size=40).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@FUZZ
@given(commandish, st.lists(st.integers(min_value=0), max_size=10))
def test_command_parser_total_and_chunking_invariant(data: bytes, cuts: list[int]) -> None:
    whole, p, sent = drive([data], max_message_size=100, max_errors=10)
    assert all(isinstance(e, EVENT_TYPES) for e in whole)
    chunked, _, sent2 = drive(split(data, cuts), max_message_size=100, max_errors=10)
    assert chunked == whole
    assert sent2 == sent


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    whole, _, _ = drive([HEAD + data], max_message_size=50)
    chunked, _, _ = drive(split(HEAD + data, cuts), max_message_size=50)
    assert chunked == whole


def reference_data(raw: bytes) -> tuple[bytes, bool] | None:
    """Model of RFC 5321 §4.1.1.4 / §4.5.2 on a whole buffer."""
    s = b"\r\n" + raw
    idx = s.find(b"\r\n.\r\n")
    if idx < 0:
        return None
    msg = s[2 : idx + 2]
    lines = msg.split(b"\r\n")
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    rest = msg.replace(b"\r\n", b"")
    return unstuffed, (b"\r" in rest or b"\n" in rest)


@FUZZ
@given(
    st.lists(
        st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b".\r\n", b"\r\n.\r\n"]), max_size=40
    ).map(b"".join),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_data_reader_matches_model(raw: bytes, cuts: list[int]) -> None:
    expected = reference_data(raw)
    events, _, _ = drive(split(HEAD + raw, cuts), max_message_size=10_000)
    ends = [e for e in events if isinstance(e, MessageEnd)]
    if expected is None:
        assert not ends
        return
    assert ends[0].bare_newline == expected[1]
    first = events[: events.index(ends[0])]
    assert body(first) == expected[0]
    assert ends[0].size == len(expected[0])


@FUZZ
@given(
    st.lists(
        st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b".\r\n", b"\r\n.\r\n"]), max_size=60
    ).map(b"".join),
    st.lists(st.integers(min_value=0), max_size=10),
    st.integers(min_value=10, max_value=16),
    st.sampled_from([10_000, 7]),
)
def test_data_reader_windows_match_model(raw: bytes, cuts: list[int], window: int, limit: int) -> None:
    """The bulk DATA reader with tiny windows (every border inside a marker or a stuffed dot is
    hit) and past the size limit (windows that emit nothing) still matches the model."""
    expected = reference_data(raw)
    old = smtp.DATA_CHUNK_SIZE
    smtp.DATA_CHUNK_SIZE = window
    try:
        events, _, _ = drive(split(HEAD + raw, cuts), max_message_size=limit)
    finally:
        smtp.DATA_CHUNK_SIZE = old
    ends = [e for e in events if isinstance(e, MessageEnd)]
    if expected is None:
        assert not ends
        return
    assert ends[0].bare_newline == expected[1]
    assert ends[0].size == len(expected[0])
    assert ends[0].too_big == (len(expected[0]) > limit)
    first = events[: events.index(ends[0])]
    assert body(first) == expected[0][:limit]


def test_data_reader_past_the_limit_reads_big_chunks_to_the_end() -> None:
    """A chunk several windows long, all past the size limit, is read to its end marker."""
    line = b"y" * 998 + b"\r\n"
    wire = HEAD + line * 2000 + b".\r\n"
    for size in (len(wire), 70_000, 300_000):
        events, _, _ = drive(
            [wire[i : i + size] for i in range(0, len(wire), size)], max_message_size=100_000
        )
        ends = [e for e in events if isinstance(e, MessageEnd)]
        assert ends == [MessageEnd(2_000_000, True, False)], size


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_client_encoder_roundtrip(msg: bytes, cuts: list[int]) -> None:
    enc = DataEncoder()
    wire = b"".join(enc.feed(c) for c in split(msg, cuts)) + enc.finish()
    assert wire == SMTPClientProtocol().message_data(msg)
    events, _, _ = drive([HEAD + wire + b"NOOP\r\n"], max_message_size=10_000)
    ends = [e for e in events if isinstance(e, MessageEnd)]
    assert len(ends) == 1 and not ends[0].bare_newline
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", msg)
    if normalised and not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert body(events) == normalised


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
def test_client_reply_parser(data: bytes, cuts: list[int]) -> None:
    def run(chunks: list[bytes]) -> list[object]:
        c = SMTPClientProtocol(max_reply_line=64, max_reply_lines=5)
        out: list[object] = []
        for chunk in chunks:
            c.receive_data(chunk)
            while (ev := c.next_event()) is not NEED_DATA:
                assert isinstance(ev, ServerReply | ReplyProtocolError)
                out.append(ev)
        return out

    assert run(split(data, cuts)) == run([data])


@FUZZ
@given(st.binary(max_size=80), st.booleans())
def test_parse_path_total(raw: bytes, utf8: bool) -> None:
    addr = parse_path(raw, smtputf8=utf8)
    if addr is not None:
        assert addr.domain == addr.domain.encode().lower().decode()
        relay_tricks(addr)
        assert (
            parse_path(b"<" + addr.mailbox.encode() + b">", smtputf8=True) is not None
            or addr.had_source_route
        )
