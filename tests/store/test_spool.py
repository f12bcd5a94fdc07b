"""`store.spool`: messages collected piecewise, in memory when small, on disk when big;
`BlobStore.put_file` makes a blob of a spooled message (issue 12 item 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailhouse.store.blobfiles import FileBlobStore
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import HEAD_MAX, CrlfStream, HeaderTooLarge, Spool, SpooledMessage


@pytest.mark.parametrize(
    "data", [b"", b"a", b"a\r", b"a\r\n", b"\r", b"\n", b"a\nb\rc\r\nd", b"\r\r\n\n\r", b"x\r\n\r\n"]
)
def test_crlf_stream_equals_to_crlf_for_every_split(data: bytes) -> None:
    for i in range(len(data) + 1):
        s = CrlfStream()
        assert s.feed(data[:i]) + s.feed(data[i:]) + s.end() == to_crlf(data)


def test_small_message_stays_in_memory(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.write(b"Subject: x\r\n\r\nbody\r\n")
    msg = sp.finish()
    assert msg.in_memory and msg.head == b"Subject: x\r\n\r\n" and msg.body == b"body\r\n"
    assert list(tmp_path.iterdir()) == []


def test_big_message_goes_to_a_file_and_discard_removes_it(tmp_path: Path) -> None:
    sp = Spool(tmp_path, memory_max=100)
    head = b"Subject: big\r\n\r\n"
    sp.write(head)
    for _ in range(50):
        sp.write(b"y" * 998 + b"\r\n")
    msg = sp.finish()
    assert not msg.in_memory and msg.head == head
    assert msg.size == len(head) + 50 * 1000
    assert msg.to_bytes() == head + (b"y" * 998 + b"\r\n") * 50
    assert max(len(c) for c in msg.body_chunks(4096)) == 4096
    assert len(list(tmp_path.iterdir())) == 1
    sp.discard()
    assert list(tmp_path.iterdir()) == []


def test_header_section_without_end_is_refused_when_on_disk(tmp_path: Path) -> None:
    sp = Spool(tmp_path, memory_max=100)
    for i in range(HEAD_MAX // 20 + 10):
        sp.write(b"X-H%06d: 1234567\r\n" % i)
    with pytest.raises(HeaderTooLarge):
        sp.finish()
    sp.discard()


def test_headers_only_message() -> None:
    msg = SpooledMessage.from_bytes(b"Subject: no body\r\n")
    assert msg.head == b"Subject: no body\r\n" and msg.body == b""
    assert SpooledMessage.from_bytes(b"\r\nbody\r\n").head == b"\r\n"


def test_file_blob_put_file_prefix_and_range(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"HEADBODY" * 100_000)
    blobs = FileBlobStore(tmp_path / "blobs")
    key = asyncio.run(blobs.put_file(src, prefix=b"Return-Path: <>\r\n", offset=4, length=800_000 - 8))
    assert blobs.get_sync(key) == b"Return-Path: <>\r\n" + (b"HEADBODY" * 100_000)[4:-4]
    assert src.exists()  # the source is left as it is
    assert [p.name for p in (tmp_path / "blobs").rglob("*.tmp")] == []


def test_remove_stale_keeps_live_processes_files(tmp_path: Path) -> None:
    import os
    import subprocess

    p = subprocess.Popen(["true"])  # noqa: S603,S607
    p.wait()
    (tmp_path / f"{p.pid}.abc.msg").write_bytes(b"x")  # its process has exited
    (tmp_path / f"{os.getpid()}.def.msg").write_bytes(b"y")  # ours: alive
    (tmp_path / "other-file").write_bytes(b"z")
    from mailhouse.store.spool import remove_stale

    assert remove_stale(tmp_path) == 1
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([f"{os.getpid()}.def.msg", "other-file"])
