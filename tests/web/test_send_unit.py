"""``web.send.build_message_file`` (issue 12 item 2): the message built with attachments streamed
from files is octet for octet the one ``build_message`` makes with the data in memory."""

from __future__ import annotations

import email
import email.generator
import email.policy
import random
from pathlib import Path

import pytest

from mailhouse.web import send
from mailhouse.web.send import Attachment, Draft, build_message, build_message_file


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 57 * 16 * 1024 + 5, 3 * 1024 * 1024 + 7])
def test_streamed_attachments_equal_inline_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(
        email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: "==B==")
    )
    monkeypatch.setattr(send.email.utils, "formatdate", lambda *a, **k: "Mon, 07 Dec 2026 12:00:00 -0000")
    monkeypatch.setattr(send, "B64_CHUNK", 57 * 3)  # several chunks even for small files
    data = random.Random(size).randbytes(size)
    other = b"second \xff attachment"
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(other)
    base = dict(sender="alice@example.org", to="bob@example.org", subject="résumé", body="hi\n")
    inline = Draft(
        **base,  # type: ignore[arg-type]
        attachments=[
            Attachment("carried.txt", "text/plain", b"kept in memory\r\n"),
            Attachment("a.bin", "application/octet-stream", data),
            Attachment("b é.pdf", "application/pdf", other),
        ],
    )
    files = Draft(
        **base,  # type: ignore[arg-type]
        attachments=[
            Attachment("carried.txt", "text/plain", b"kept in memory\r\n"),
            Attachment("a.bin", "application/octet-stream", b"", tmp_path / "a"),
            Attachment("b é.pdf", "application/pdf", b"", tmp_path / "b"),
        ],
    )
    want = build_message(inline, "mail.example.org", message_id="<m@example.org>")
    out = tmp_path / "out.eml"
    n = build_message_file(files, "mail.example.org", out, message_id="<m@example.org>")
    assert out.read_bytes() == want
    assert n == len(want)


def test_display_name_and_reply_to_from_settings() -> None:
    d = Draft(
        sender="zoe@example.org",
        to="bob@example.org",
        name="Zoë Q. Public",
        reply_to="a@example.org, b@x.test",
    )
    msg = email.message_from_bytes(build_message(d, "mx.example.org"), policy=email.policy.default)
    assert msg["From"] == '"Zoë Q. Public" <zoe@example.org>'
    assert msg["Reply-To"] == "a@example.org, b@x.test"
    plain = email.message_from_bytes(
        build_message(Draft(sender="zoe@example.org"), "mx"), policy=email.policy.default
    )
    assert plain["From"] == "zoe@example.org" and plain["Reply-To"] is None
