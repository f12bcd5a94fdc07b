"""SMTP smuggling regression tests (CVE-2023-51764 class): only <CRLF>.<CRLF> ends DATA."""

from __future__ import annotations

import pytest

from mailhouse.proto.smtp import Data, Mail, MessageEnd, Quit, Rcpt
from mailhouse.proto.smtp_client import DataEncoder, SMTPClientProtocol
from tests.proto.smtp_harness import body, three_ways

PREFIX = b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<user@ourdomain>\r\nDATA\r\nSubject: s\r\n\r\nbody"
SMUGGLED = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@ourdomain>\r\nDATA\r\nsmuggled\r\n"
SUFFIX = b"\r\n.\r\nQUIT\r\n"

VARIANTS = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r.\n",
    b"\r\n.\r\r\n",
    b"\r\n\x00.\r\n",
    b"\r\r\n.\n\r\n",
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v) for v in VARIANTS])
def test_fake_end_of_data_does_not_end_message(variant: bytes) -> None:
    ev = three_ways(PREFIX + variant + SMUGGLED + SUFFIX)
    kinds = [type(e) for e in ev]
    assert kinds.count(MessageEnd) == 1
    assert kinds.count(Mail) == 1 and kinds.count(Rcpt) == 1 and kinds.count(Data) == 1
    assert kinds[-1] is Quit
    assert b"MAIL FROM:<evil@x.test>" in body(ev)  # stays inside the first message
    end = ev[-2]
    assert isinstance(end, MessageEnd)
    if variant != b"\r\n\x00.\r\n":
        assert end.bare_newline  # the adapter rejects it with 550 5.6.2


def test_real_end_of_data_ends_message() -> None:
    ev = three_ways(PREFIX + b"\r\n.\r\n" + SMUGGLED + SUFFIX)
    kinds = [type(e) for e in ev]
    assert kinds.count(MessageEnd) == 2  # the second message is a real, separate one
    assert kinds.count(Mail) == 2


def test_stuffed_dot_does_not_end() -> None:
    ev = three_ways(PREFIX + b"\r\n..\r\n" + SMUGGLED + SUFFIX)
    assert [type(e) for e in ev].count(MessageEnd) == 1
    assert b"\r\n.\r\nMAIL FROM:<evil" in body(ev)


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v) for v in VARIANTS])
def test_client_encoder_never_emits_fake_terminator(variant: bytes) -> None:
    """CVE-2026-33604 class: a dot after a bare CR/LF must be stuffed when we relay."""
    msg = b"Subject: s\r\n\r\nbody" + variant + SMUGGLED
    wire = SMTPClientProtocol().message_data(msg)
    assert wire.endswith(b"\r\n.\r\n")
    assert wire.count(b"\r\n.\r\n") == 1
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    ev = three_ways(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<user@ourdomain>\r\nDATA\r\n" + wire)
    end = ev[-1]
    assert isinstance(end, MessageEnd) and not end.bare_newline
    assert [type(e) for e in ev].count(Mail) == 1


def test_encoder_chunked_equals_whole() -> None:
    msg = b".a\r\r\n.\r.\n.\r\n..\rx\n"
    whole = DataEncoder()
    expected = whole.feed(msg) + whole.finish()
    enc = DataEncoder()
    out = b"".join(enc.feed(msg[i : i + 1]) for i in range(len(msg))) + enc.finish()
    assert out == expected
