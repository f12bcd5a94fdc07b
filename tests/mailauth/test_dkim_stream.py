"""DKIM over a streamed body (issue 12 item 2): the piecewise canonicalisation gives dkimpy's bytes
for any split, and signing/verifying a spooled message matches the in-memory path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.mailauth import dkim, dkimkeys
from mailhouse.store.api import DkimKey
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import Spool, SpooledMessage

EDGE_BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"x",
    b"x ",
    b"x\r",
    b"x \r",
    b"plain text, single spaces\r\nonly\r\n\r\n",
    b"a  b\t\tc \r\n \t\r\n\r\n",
    b"end with space \r\n",
    b" lead\r\n\ttab\r\nend  ",
    b"a \r\n\r\nb\r\n",
    b"bare\rcr\r\n\r\n\r\n",
    b"\r\n\r\n\r\ncontent after empty lines\r\n",
]


def canon_pieces(body: bytes, relaxed: bool, cuts: list[int]) -> bytes:
    out: list[bytes] = []
    c = dkim.BodyCanon(relaxed, out.append)
    pos = 0
    for cut in sorted(set(cuts)):
        c.feed(body[pos:cut])
        pos = cut
    c.feed(body[pos:])
    c.end()
    return b"".join(out)


@pytest.mark.parametrize("body", EDGE_BODIES)
def test_piecewise_canonicalisation_matches_dkimpy_at_every_split(body: bytes) -> None:
    for relaxed, ref in ((True, Relaxed.canonicalize_body(body)), (False, Simple.canonicalize_body(body))):
        assert canon_pieces(body, relaxed, []) == ref
        for i in range(len(body) + 1):
            assert canon_pieces(body, relaxed, [i]) == ref, (relaxed, i)
        assert canon_pieces(body, relaxed, list(range(len(body)))) == ref  # byte by byte


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b" ", b"\t", b"\r\n", b"\r", b"a", b"bc", b"  ", b"\r\n\r\n"]), max_size=40),
    st.lists(st.integers(0, 80), max_size=6),
)
def test_piecewise_canonicalisation_fuzz(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(parts)
    cuts = [c for c in cuts if c <= len(body)]
    assert canon_pieces(body, True, cuts) == Relaxed.canonicalize_body(body)
    assert canon_pieces(body, False, cuts) == Simple.canonicalize_body(body)


def test_body_hashes_with_length_limit() -> None:
    body = b"hello  world \r\nsecond line\r\n\r\n"
    specs = [(b"relaxed", b"rsa-sha256", None), (b"simple", b"rsa-sha1", 7), (b"relaxed", b"rsa-sha256", 5)]
    got = dkim.body_hashes([body[:3], body[3:]], specs)
    assert got[specs[0]] == hashlib.sha256(Relaxed.canonicalize_body(body)).digest()
    assert got[specs[1]] == hashlib.sha1(Simple.canonicalize_body(body)[:7]).digest()
    assert got[specs[2]] == hashlib.sha256(Relaxed.canonicalize_body(body)[:5]).digest()


MESSAGE_HEAD = (
    b"From: Alice <alice@a.test>\r\n"
    b"To: bob@b.test\r\n"
    b"Subject: streamed\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <s@a.test>\r\n"
    b"\r\n"
)


@pytest.fixture(scope="module")
def keys() -> list[DkimKey]:
    return dkimkeys.generate("a.test", "mh")


def spooled(tmp_path: Path, data: bytes) -> SpooledMessage:
    sp = Spool(tmp_path, memory_max=1024)
    for i in range(0, len(data), 777):
        sp.write(data[i : i + 777])
    msg = sp.finish()
    assert not msg.in_memory
    return msg


def test_sign_spooled_equals_sign(tmp_path: Path, keys: list[DkimKey]) -> None:
    body = b"line  with\t spaces \r\n" * 5000 + b"\r\n\r\n"
    data = MESSAGE_HEAD + body
    msg = spooled(tmp_path, data)
    signer = dkim.DkimSigner(clock=lambda: 1_700_000_000)
    sigs = signer.sign_spooled(msg, "a.test", keys)
    assert sigs + data == signer.sign(data, "a.test", keys)


def test_verify_spooled_uses_keys_and_catches_tampering(tmp_path: Path, keys: list[DkimKey]) -> None:
    records = {f"{k.selector}._domainkey.a.test".encode(): k.public_record.encode() for k in keys}

    def dnsfunc(name: bytes, timeout: float = 5.0) -> bytes | None:
        return records.get(name.rstrip(b"."))

    body = b"0123456789 abcdef\r\n" * 20000
    signed = dkim.sign(MESSAGE_HEAD + body, "a.test", keys)
    results = dkim.verify(spooled(tmp_path / "a", signed), dnsfunc=dnsfunc)
    assert [r.result for r in results] == ["pass", "pass"]
    assert [r.result for r in dkim.verify(signed, dnsfunc=dnsfunc)] == ["pass", "pass"]
    tampered = signed[:-40] + b"X" + signed[-39:]
    results = dkim.verify(spooled(tmp_path / "b", tampered), dnsfunc=dnsfunc)
    assert [r.result for r in results] == ["fail", "fail"]
    assert all("body hash mismatch" in r.error for r in results)


def test_crlf_normalised_as_to_crlf(tmp_path: Path) -> None:
    data = b"A: b\nC: d\r\r\n\rbody\rmore\nend"
    for step in (1, 2, 3, 5, 1000):
        sp = Spool(tmp_path, memory_max=4)
        for i in range(0, len(data), step):
            sp.write(data[i : i + step])
        msg = sp.finish()
        assert msg.to_bytes() == to_crlf(data), step
        sp.discard()
