"""Modified UTF-7 (RFC 3501 §5.1.3): examples, strictness, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto.imap import mutf7


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        (
            "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e",
            b"~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        ),  # RFC 3501 §5.1.3
        ("INBOX", b"INBOX"),
        ("&", b"&-"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("A&B", b"A&-B"),
        ("\U0001f600", b"&2D3eAA-"),  # surrogate pair
        ("", b""),
        ("a\x00b", b"a&AAA-b"),
    ],
)
def test_examples(text: str, wire: bytes) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@pytest.mark.parametrize(
    "wire",
    [
        b"&",  # unterminated
        b"&Jjo",  # unterminated
        b"&Jjo!-",  # bad base64 char
        b"&AGE-",  # printable ASCII "a" encoded
        b"&U,BTFw-&ZeVnLIqe-",  # adjacent shifts
        b"&U,BTF-",  # odd UTF-16 length / leftover bits
        b"&2D0-",  # lone high surrogate
        b"&AOk=-",  # padding
        b"\xc3\xa9",  # 8-bit
        b"a\tb",  # control char
        b"&U/BTFw-",  # "/" instead of ","
        b"&AOl-",  # non-zero padding bits
    ],
)
def test_strict_rejects(wire: bytes) -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(wire)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.encode("\ud800")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_roundtrip_any_str(s: str) -> None:
    wire = mutf7.encode(s)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert mutf7.decode(wire) == s


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet="&-AZaz09+,/ U", max_size=20).map(str.encode))
def test_decode_is_canonical(b: bytes) -> None:
    try:
        text = mutf7.decode(b)
    except mutf7.MUTF7Error:
        return
    assert mutf7.encode(text) == b


@pytest.mark.parametrize(
    ("wire", "pattern"),
    [
        (b"!#$$&'+,-.0123456789:;<=>?@^_`|[}%*", "!#$$&'+,-.0123456789:;<=>?@^_`|[}%*"),  # issue 13
        (b"a&*", "a&*"),
        (b"a&-*", "a&*"),
        (b"a&Jjo-*", "a\u263a*"),
        (b"a&Jjo-&*", "a\u263a&*"),
        (b"&AGE-%", "&AGE-%"),  # non-canonical (printable "a" in base64): as written
        (b"&Jjo-&Jjo-", "\u263a&Jjo-"),  # an adjacent second shift is not canonical: as written
        (b"&", "&"),
    ],
)
def test_decode_pattern(wire: bytes, pattern: str) -> None:
    """A LIST pattern decodes ``&`` only where it forms a valid shift (RFC 3501 §5.1.3)."""
    assert mutf7.decode_pattern(wire) == pattern


def test_decode_pattern_refuses_non_printable() -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode_pattern(b"a\x01*")


@given(st.text())
def test_decode_pattern_agrees_with_decode_on_names(s: str) -> None:
    try:
        wire = mutf7.encode(s)
    except mutf7.MUTF7Error:
        return
    assert mutf7.decode_pattern(wire) == s


@given(st.text(alphabet="&-AZaz09+,%*'. ", max_size=24))
def test_decode_pattern_never_refuses_printable(s: str) -> None:
    mutf7.decode_pattern(s.encode())
