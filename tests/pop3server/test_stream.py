"""Unit tests of ``pop3server.stream`` (issue 12 item 2): chunked dot-stuffing and TOP's end
equal the whole-message functions for every chunk split."""

from __future__ import annotations

import random

import pytest

from mailhouse.pop3server import stream
from mailhouse.pop3server.maildrop import top
from mailhouse.proto.pop3 import dot_stuff_crlf

SAMPLES = [
    b"Subject: x\r\n\r\n.leading\r\n..two\r\nmid.dot\r\n.\r\nend\r\n",
    b".Subject: starts with a dot\r\n\r\nbody\r\n",
    b"\r\nno header\r\n.x\r\n",
    b"Subject: no body\r\n",
    b"Subject: no final crlf\r\n\r\nlast line",
    b"H: 1\r\n\r\n" + b"".join(b".%d\r\nline %d\r\n" % (i, i) for i in range(200)),
]


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    async def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    return read


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
async def test_body_chunks_equal_whole_dot_stuffing(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(stream, "CHUNK", chunk)
    for data in SAMPLES:
        got = b"".join([p async for p in stream.body_chunks(_reader(data), len(data))])
        assert got == dot_stuff_crlf(data), data[:30]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
async def test_top_end_matches_top(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(stream, "CHUNK", chunk)
    for data in SAMPLES:
        for lines in (0, 1, 2, 3, 50, 1000):
            end = await stream.top_end(_reader(data), len(data), lines)
            # on the wire (stored messages end with CRLF; dot-stuffing adds a missing one)
            assert dot_stuff_crlf(data[:end]) == dot_stuff_crlf(top(data, lines)), (data[:30], lines)


async def test_random_splits_of_dot_lines() -> None:
    rnd = random.Random(5)
    for _ in range(300):
        data = b"".join(rnd.choice([b".", b"\r\n", b"a", b"..", b"\r\n."]) for _ in range(40)) + b"\r\n"
        stuffer = stream.DotStuffer()
        out, i = b"", 0
        while i < len(data):
            n = rnd.randint(1, 6)
            out += stuffer.feed(data[i : i + n])
            i += n
        assert out + stuffer.end() == dot_stuff_crlf(data)


async def test_a_message_that_ends_early_aborts() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    with pytest.raises(ConnectionAbortedError):
        async for _ in stream.body_chunks(_reader(data), len(data) + 10):
            pass
