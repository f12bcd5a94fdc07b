"""``web.uploads`` (issue 12 item 2): per-request and per-user caps, files removed on exit."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from mailhouse.web.uploads import USER_UPLOAD_FACTOR, UploadSpool, UploadTooBig, remove_stale


async def test_request_files_are_private_and_removed(tmp_path: Path) -> None:
    spool = UploadSpool(tmp_path / "up", max_message_size=1000)
    async with spool.request(7) as req:
        saved = await req.add(io.BytesIO(b"x" * 300), "a.bin", "application/octet-stream")
        out = req.spool_path()
        out.write_bytes(b"message")
        assert saved.path.read_bytes() == b"x" * 300 and saved.size == 300
        assert saved.path.stat().st_mode & 0o777 == 0o600
    assert not saved.path.exists() and not out.exists()
    assert spool._in_use == {}


async def test_per_request_cap(tmp_path: Path) -> None:
    spool = UploadSpool(tmp_path / "up", max_message_size=1000)
    async with spool.request(7) as req:
        await req.add(io.BytesIO(b"x" * 600), "a", "")
        with pytest.raises(UploadTooBig):
            await req.add(io.BytesIO(b"y" * 600), "b", "")  # 1200 > max_message_size
    assert list((tmp_path / "up").iterdir()) == [] and spool._in_use == {}


async def test_per_user_cap_across_requests_in_flight(tmp_path: Path) -> None:
    spool = UploadSpool(tmp_path / "up", max_message_size=1000)
    reqs = [spool.request(7) for _ in range(USER_UPLOAD_FACTOR + 1)]
    for r in reqs[:USER_UPLOAD_FACTOR]:
        await r.add(io.BytesIO(b"x" * 900), "a", "")
    with pytest.raises(UploadTooBig):
        await reqs[-1].add(io.BytesIO(b"x" * 900), "a", "")  # this user has 1800 in flight
    async with spool.request(8) as other:  # another user is not affected
        await other.add(io.BytesIO(b"x" * 900), "a", "")
    for r in reqs:
        await r.__aexit__(None, None, None)
    assert spool._in_use == {}
    async with spool.request(7) as again:  # released: the user may upload again
        await again.add(io.BytesIO(b"x" * 900), "a", "")


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_files_of_stopped_processes_are_removed_at_start(tmp_path: Path) -> None:
    root = tmp_path / "up"
    root.mkdir()
    dead, live = _dead_pid(), os.getppid()
    names = {
        "dead_att": f"{dead}.{'a' * 24}.att",
        "dead_eml": f"{dead}.{'b' * 24}.eml",
        "live": f"{live}.{'c' * 24}.att",  # another worker's request in flight
        "old_unnamed": f"{'d' * 24}.eml",  # an older version's name, an hour old
        "new_unnamed": f"{'e' * 24}.att",
        "other": "README",
    }
    for n in names.values():
        (root / n).write_bytes(b"x")
    os.utime(root / names["old_unnamed"], (time.time() - 7200, time.time() - 7200))
    spool = UploadSpool(root, max_message_size=1000)  # what WebState.build does at start-up
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [names["live"], names["new_unnamed"], names["other"]]
    )
    assert remove_stale(root) == 0 and spool.root == root


async def test_own_pid_files_are_kept_while_in_use(tmp_path: Path) -> None:
    spool = UploadSpool(tmp_path / "up", max_message_size=1000)
    async with spool.request(7) as req:
        saved = await req.add(io.BytesIO(b"x"), "a", "")
        assert saved.path.name.startswith(f"{os.getpid()}.")
        assert remove_stale(tmp_path / "up") == 0 and saved.path.exists()
    (tmp_path / "up" / f"{os.getpid()}.{'f' * 24}.eml").write_bytes(b"x")
    old = time.time() - 86400  # same pid, but from before this process (a container's pid 1)
    os.utime(tmp_path / "up" / f"{os.getpid()}.{'f' * 24}.eml", (old, old))
    assert remove_stale(tmp_path / "up") == 1
