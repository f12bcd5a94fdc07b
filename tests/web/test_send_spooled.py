"""Issue 12 item 2 (webmail send/save): the message built in a file reaches the accept path and
the Sent/Drafts copy as a ``SpooledMessage`` (header section in memory, body a range of the
file) and is stored octet for octet as the same message handed over as bytes would be."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse import config, services
from mailhouse.mailauth import dkim, dkimkeys
from mailhouse.store.crlf import to_crlf
from mailhouse.web import send
from mailhouse.web.send import Attachment, Draft, build_message_file, spooled_file, store_copy, submit


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[services.Services]:
    cfg = config.from_dict(
        {"hostname": "mail.example.org", "data_dir": str(tmp_path), "dns": {"nameservers": ["127.0.0.1:9"]}}
    )
    s = await services.build(cfg)
    await s.store.add_domain("example.org")
    await s.store.add_account("alice@example.org", "x")
    await s.store.add_account("bob@example.org", "x")
    for key in dkimkeys.generate("example.org", "mh"):
        await s.store.set_dkim_key(key)
    yield s
    await s.outbound.pool.close()
    await s.store.close()


def _built(tmp_path: Path, size: int) -> tuple[Path, int]:
    (tmp_path / "att").write_bytes(random.Random(size).randbytes(size))
    d = Draft(
        sender="alice@example.org",
        to="bob@example.org",
        bcc="carol@elsewhere.test",
        subject="résumé",
        body="one\ntwo\rthree\r\n",
        attachments=[Attachment("a.bin", "application/octet-stream", b"", tmp_path / "att")],
    )
    out = tmp_path / "out.eml"
    return out, build_message_file(d, "mail.example.org", out, message_id="<m@example.org>")


@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024 + 5])
def test_spooled_file_is_the_message(tmp_path: Path, size: int) -> None:
    out, n = _built(tmp_path, size)
    whole = out.read_bytes()
    assert whole == to_crlf(whole) and n == len(whole)  # CRLF already: a blob as it is
    for memory_max in (0, 10**9):
        msg = spooled_file(out, n, memory_max=memory_max)
        assert msg.in_memory == (memory_max > 0) and msg.size == n and msg.to_bytes() == whole
        assert msg.head.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in msg.head[:-2]


async def test_delivered_and_sent_copies_equal_the_bytes_path(
    svc: services.Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["QID0000000AA", "QID0000000BB"])  # delivery keys are per queue id
    monkeypatch.setattr(send, "new_queue_id", lambda: next(ids))
    monkeypatch.setattr(send.email.utils, "formatdate", lambda *a, **k: "Mon, 07 Dec 2026 12:00:00 -0000")
    t0 = time.time()
    monkeypatch.setattr(svc.envelope.msa.signer, "_clock", lambda: t0)  # the same t= both times
    alice = await svc.store.get_account("alice@example.org")
    bob = await svc.store.get_account("bob@example.org")
    assert alice is not None and bob is not None
    out, n = _built(tmp_path, 3 * 1024 * 1024 + 5)
    whole = out.read_bytes()
    spooled = spooled_file(out, n)
    assert not spooled.in_memory  # the body stays in the file
    for message in (whole, spooled):
        await submit(
            svc, alice, "alice@example.org", ["bob@example.org", "carol@elsewhere.test"], message, "::1"
        )
        await store_copy(svc, alice, send.SENT, message, frozenset({"\\Seen"}))
    inbox = await svc.store.get_mailbox(bob.id, "INBOX")
    sent = await svc.store.get_mailbox(alice.id, send.SENT)
    assert inbox is not None and sent is not None
    got = [await svc.store.blobs.get(r.blob_key) for r in await svc.store.list_messages(inbox.id)]
    assert len(got) == 2 and got[0] == got[1].replace(b"QID0000000BB", b"QID0000000AA")
    assert b"Received: from [::1]" in got[0] and b"\r\nBcc:" not in got[0]  # the MSA's repairs
    assert got[0].endswith(spooled.to_bytes()[len(spooled.head) :])
    queued = await svc.store.claim_due(time.time() + 60, "test", 60, 10)  # the Bcc, remote
    q = sorted([await svc.store.blobs.get(e.blob_key) for e in queued], key=lambda b: b"BB" in b)
    assert len(q) == 2 and q[0] == q[1].replace(b"QID0000000BB", b"QID0000000AA")
    assert got[0] == b"Return-Path: <alice@example.org>\r\n" + q[0]
    copies = [await svc.store.blobs.get(r.blob_key) for r in await svc.store.list_messages(sent.id)]
    assert copies == [whole, whole]  # the Sent copy keeps Bcc and is not signed
    records = {
        f"{k.selector}._domainkey.example.org.".encode(): k.public_record.encode()
        for k in await svc.store.get_dkim_keys("example.org")
    }
    results = dkim.verify(got[1], dnsfunc=lambda name, timeout=5: records.get(name))
    assert [r.result for r in results] == ["pass", "pass"]  # signed in a streaming pass
