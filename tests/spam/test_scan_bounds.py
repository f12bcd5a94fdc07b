"""Huge and malformed input is bounded (issue 14 §3, §6): the content scan reads the header section
and at most BODY_SCAN_MAX octets of a spooled body, looks at MAX_PARTS parts, never raises."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailhouse.spam import scan as scan_mod
from mailhouse.spam.content import ContentRules
from mailhouse.spam.headers import fields, strip_incoming
from mailhouse.spam.rules import Hit
from mailhouse.store.spool import BodyFile, SpooledMessage
from tests.spam.helpers import GOOD_HEAD, ctx, names, run


def test_a_spooled_body_is_read_only_up_to_the_scan_bound(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    body = tmp_path / "body"
    size = 8 * scan_mod.BODY_SCAN_MAX
    with body.open("wb") as f:
        f.write(b"https://bit.ly/early\r\n")
        f.write(b"x" * (size - 100))
        f.write(b"\r\n" + scan_mod.GTUBE + b"\r\n")  # past the bound: never read
    msg = SpooledMessage(GOOD_HEAD + b"\r\n", BodyFile(body, 0, body.stat().st_size))
    read: list[int] = []
    real = SpooledMessage.body_chunks

    def counting(self: SpooledMessage, size: int = 1 << 20):  # type: ignore[no-untyped-def]
        for piece in real(self, size):
            read.append(len(piece))
            yield piece

    monkeypatch.setattr(SpooledMessage, "body_chunks", counting)
    s = scan_mod.scan(msg)
    assert s.truncated and not s.gtube
    assert "bit.ly" in s.url_hosts
    assert sum(read) <= scan_mod.BODY_SCAN_MAX + 64 * 1024  # at most one read chunk past the bound


def test_many_parts_and_broken_mime_are_scanned_without_error() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(5000))
    msg = GOOD_HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts
    assert run(ContentRules(), ctx(msg)) == []
    broken = (
        GOOD_HEAD
        + b'Content-Type: multipart/mixed; boundary="\r\n\r\n--\x00\xff\r\nContent-Type: text/html; charset=nope\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n"
    )
    run(ContentRules(), ctx(broken))  # no exception
    assert run(ContentRules(), ctx(b"\x00\xff garbage without any header\r\n")) == []


def test_scan_runs_once_per_message() -> None:
    c = ctx(GOOD_HEAD + b"\r\nhttps://bit.ly/x\r\n")

    async def twice() -> bool:
        a, b = await asyncio.gather(c.scan(), c.scan())
        return a is b

    assert asyncio.run(twice())


def test_x_spam_fields_in_spamassassin_format() -> None:
    hits = [Hit("GTUBE", 1000.0, "x"), Hit("HTML_ONLY", 0.7, "y")]
    out = fields(1000.7, 5.0, hits).decode()
    assert out.startswith("X-Spam-Flag: YES\r\nX-Spam-Score: 1000.7\r\nX-Spam-Status: Yes, score=1000.7")
    unfolded = out.replace("\r\n\t", " ")
    assert (
        "X-Spam-Status: Yes, score=1000.7 required=5.0 tests=GTUBE,HTML_ONLY autolearn=no version=Mailhouse\r\n"
        in unfolded
    )
    assert all(len(line) <= 78 for line in out.split("\r\n"))
    ham = fields(0.4, 5.0, []).decode()
    assert "X-Spam-Flag" not in ham
    assert "X-Spam-Status: No, score=0.4 required=5.0 tests=none autolearn=no" in ham.replace("\r\n\t", " ")


def test_incoming_x_spam_fields_are_removed() -> None:
    head = b"X-Spam-Status: No, score=-100\r\nFrom: a@b.test\r\nX-Spam-Flag: NO\r\nx-spam-score:\r\n -100\r\n"
    assert strip_incoming(head) == b"From: a@b.test\r\n"
    assert names([]) == set()
