"""Issue 12 item 5 against a real `mailhouse serve`: a descriptor storm and several workers.

* With RLIMIT_NOFILE lowered on the server process (``prlimit``), a storm of connections from
  many addresses (each under its per-address limit) exhausted the descriptors before the change:
  a fresh client was accepted and dropped without a word (uvloop's EMFILE handling) or left
  waiting. Now the per-process cap keeps headroom: the fresh client gets ``421 4.3.2`` and,
  after the storm, every listener serves again.
* With ``[server] workers = 2`` the per-address limit is counted in the table the workers share,
  so it holds however the kernel spreads the connections (before: no limit at all).
"""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import pytest

from tests.mailhouse_proc import MailhouseProcess

pytestmark = pytest.mark.timeout(180)

NOFILE = 256


def _connect(addr: tuple[str, int], source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(20)
    s.bind((source, 0))
    s.connect(addr)
    return s


def _line(s: socket.socket) -> bytes:
    """The first line the server sends (b"" if it closed without one)."""
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            chunk = s.recv(512)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        buf += chunk
    return buf


def _close(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()
    socks.clear()


def _sockets_per_worker(mh: MailhouseProcess) -> dict[int, int]:
    """Open sockets of each worker process of MH (the children of the `serve` process)."""
    assert mh.proc is not None
    pid = mh.proc.pid
    kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    out = {}
    for k in kids:
        fds = Path(f"/proc/{k}/fd")
        out[k] = sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))
    return out


def test_descriptor_storm_leaves_a_clean_refusal_and_working_listeners(tmp_path: Path) -> None:
    mh = MailhouseProcess(tmp_path, services=("smtp", "imap"), extra="[server]\nsmtp_pregreet_wait = 0\n")
    mh.start()
    storm: list[socket.socket] = []
    try:
        assert mh.proc is not None
        resource.prlimit(mh.proc.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        for i in range(8):  # 8 addresses × 45: each under the per-address limit of 50
            for _ in range(45):
                storm.append(_connect(mh.addr("smtp"), f"127.0.2.{i + 1}"))
        lines = [_line(s) for s in storm]
        greeted = sum(ln.startswith(b"220 ") for ln in lines)
        assert 50 <= greeted < NOFILE, greeted
        # a fresh client is told, not dropped or left hanging
        fresh = _connect(mh.addr("smtp"), "127.0.2.99")
        assert _line(fresh) == b"421 4.3.2 Too many connections, try again later\r\n"
        fresh.close()
        imap = _connect(mh.addr("imap"), "127.0.2.99")
        assert _line(imap) == b"* BYE [UNAVAILABLE] Too many connections\r\n"
        imap.close()
        _close(storm)
        time.sleep(1.0)
        # after the storm every listener serves again
        for svc, greeting in (("smtp", b"220 "), ("imap", b"* OK")):
            s = _connect(mh.addr(svc), "127.0.2.98")
            assert _line(s).startswith(greeting), svc
            s.close()
        assert mh.proc.poll() is None
    finally:
        _close(storm)
        mh.stop()


def test_workers_share_the_per_address_limit(tmp_path: Path) -> None:
    mh = MailhouseProcess(
        tmp_path,
        services=("smtp",),
        extra="[server]\nworkers = 2\nsmtp_pregreet_wait = 0\n",  # the default limit: 50 per address
    )
    mh.start()
    socks: list[socket.socket] = []
    try:
        end = time.time() + 30
        while mh.logtext().count(" ready (pid ") < 2 and time.time() < end:
            time.sleep(0.1)  # both workers listen
        before = _sockets_per_worker(mh)
        for _ in range(60):
            socks.append(_connect(mh.addr("smtp"), "127.0.3.1"))
        lines = [_line(s) for s in socks]
        assert sum(ln.startswith(b"220 ") for ln in lines) == 50, lines
        assert sum(ln.startswith(b"421 4.7.0 Too many connections") for ln in lines) == 10, lines
        # both workers hold some of them (else this would not show that the table is shared)
        held = [n - before[pid] for pid, n in _sockets_per_worker(mh).items()]
        assert len(held) == 2 and all(n >= 5 for n in held), held
        _close(socks)
        time.sleep(1.0)  # both workers saw the closes: the slots are free again
        for _ in range(50):
            socks.append(_connect(mh.addr("smtp"), "127.0.3.1"))
        assert all(_line(s).startswith(b"220 ") for s in socks)
    finally:
        _close(socks)
        mh.stop()
