"""Issue 12 item 2: SMTP messages stream to disk; memory does not scale with message size."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.mailhouse_proc import MailhouseProcess
from tests.smtpserver.stream_client import RawSmtp, big_body, vm_status

BIG = 48 * 1000 * 1000
MAX_SIZE = 60 * 1000 * 1000


@pytest.fixture
def big_mh(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    mh = mailhouse_factory(services=("smtp",), extra=f"[limits]\nmax_message_size = {MAX_SIZE}\n")
    mh.add_domain("example.org")
    for u in ("alice", "bob", "carol", "dave"):
        mh.add_user(f"{u}@example.org")
    return mh.start()


def test_rss_bounded_four_parallel_48mb(big_mh: MailhouseProcess) -> None:
    assert big_mh.proc is not None
    pid = big_mh.proc.pid
    # warm the process up with one small message so imports and caches are in place
    c = RawSmtp(big_mh.addr("smtp"))
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    assert c.data([b"Subject: warm\r\n\r\nhello\r\n"])[0] == 250
    c.close()
    before = vm_status(pid)
    results: list[int] = []

    def send(user: str) -> None:
        s = RawSmtp(big_mh.addr("smtp"))
        s.cmd("EHLO client.test")
        s.cmd(f"MAIL FROM:<x@remote.test> SIZE={BIG}")
        s.cmd(f"RCPT TO:<{user}@example.org>")
        code, _ = s.data([b"Subject: big\r\n\r\n", *big_body(BIG)])
        results.append(code)
        s.close()

    threads = [threading.Thread(target=send, args=(u,)) for u in ("alice", "bob", "carol", "dave")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    after = vm_status(pid)
    grown_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(
        f"RSS before {before['VmRSS'] / 1024:.0f} MB, peak after {after['VmHWM'] / 1024:.0f} MB, +{grown_mb:.0f} MB"
    )
    assert results == [250, 250, 250, 250]
    assert grown_mb < 100, f"server peak RSS grew by {grown_mb:.0f} MB for 4 × 48 MB messages"
