"""Tests for RFC 5321 path parsing and relay-trick detection (mailhouse.proto.smtp_address)."""

from __future__ import annotations

import pytest

from mailhouse.proto.smtp_address import parse_path, relay_tricks


def test_plain_and_case() -> None:
    a = parse_path(b"<User@Example.TEST>", smtputf8=False)
    assert a is not None and a.local_part == "User" and a.domain == "example.test"
    assert a.mailbox == "User@example.test" and not relay_tricks(a)


def test_quoted_local_part() -> None:
    a = parse_path(b'<"a\\"b c"@x.test>', smtputf8=False)
    assert a is not None and a.is_quoted and a.local_part == 'a"b c'
    assert a.mailbox == '"a\\"b c"@x.test'
    b = parse_path(b'<"plain"@x.test>', smtputf8=False)
    assert b is not None and b.mailbox == "plain@x.test"


def test_source_route_stripped_and_reported() -> None:
    a = parse_path(b"<@hop1.test,@hop2.test:u@dest.test>", smtputf8=False)
    assert a is not None and a.had_source_route and a.source_route == ("hop1.test", "hop2.test")
    assert a.domain == "dest.test" and relay_tricks(a) == "source-route"


def test_literals() -> None:
    a = parse_path(b"<u@[IPv6:2001:DB8::1]>", smtputf8=False)
    assert a is not None and a.is_literal and a.domain == "[IPv6:2001:db8::1]"
    assert parse_path(b"<u@[300.1.1.1]>", smtputf8=False) is None
    assert parse_path(b"<u@[x-tag:abc]>", smtputf8=False) is not None


def test_trailing_dot() -> None:
    a = parse_path(b"<u@ours.test.>", smtputf8=False)
    assert a is not None and a.trailing_dot and a.domain == "ours.test"
    assert parse_path(b"<u@ours..test>", smtputf8=False) is None


@pytest.mark.parametrize(
    "raw",
    [b"<>", b"<u>", b"<u@>", b"<@x>", b"<a..b@x.test>", b"<.a@x.test>", b"<u@x_y.test>", b"<u@x.test",
     b"<\"unterminated@x.test>", b"<u@-x.test>", b"<u@" + b"a" * 64 + b".test>", b"<u\x00@x.test>",
     b"<" + b"a" * 250 + b"@x.test>"],
)  # fmt: skip
def test_invalid(raw: bytes) -> None:
    assert parse_path(raw, smtputf8=True) is None


def test_smtputf8() -> None:
    raw = "<δοκιμή@παράδειγμα.TEST>".encode()
    assert parse_path(raw, smtputf8=False) is None  # RFC 6531: only with SMTPUTF8
    a = parse_path(raw, smtputf8=True)
    assert a is not None and a.local_part == "δοκιμή" and a.domain == "παράδειγμα.test"
    assert parse_path(b"<\xff@x.test>", smtputf8=True) is None  # invalid UTF-8
