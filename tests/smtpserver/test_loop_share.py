"""Issue 12 item 1: big SMTP DATA transfers leave the event loop to the other clients.

Ten clients send 40 MB each over DATA while a second client's NOOPs measure the loop. What the
loop spends per octet is read from the loop thread's own CPU time (``/proc/PID/task/PID/stat``),
which a loaded machine stretches far less than wall-clock latency: the core finds the end marker
and stuffed dots in one pass per window, and the spool no longer re-normalises DATA line endings
(it was ~9 ns of loop CPU per octet, now ~5 on the 2-core test machine). That figure is printed,
not asserted (speed belongs in bench/); the test holds the probe's responsiveness.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from tests.mailhouse_proc import MailhouseProcess
from tests.smtpserver.stream_client import RawSmtp, big_body, smtp_only

SENDERS = 10
SIZE = 40 * 1000 * 1000


def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds (user + system) of thread TID of process PID."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def data_mh(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    return smtp_only(mailhouse_factory, 60_000_000, 1_000_000_000)


def test_ten_40mb_data_transfers_leave_the_loop_to_a_noop_client(data_mh: MailhouseProcess) -> None:
    assert data_mh.proc is not None
    pid = data_mh.proc.pid  # the loop runs on the main thread: its tid is the pid
    warm = RawSmtp(data_mh.addr("smtp"))
    warm.cmd("EHLO warm.test")
    warm.cmd("MAIL FROM:<x@remote.test>")
    warm.cmd("RCPT TO:<alice@example.org>")
    assert warm.data([b"Subject: warm\r\n\r\nhello\r\n"])[0] == 250
    warm.close()
    body = b"".join(big_body(SIZE))
    codes: list[int] = []

    def send() -> None:
        s = RawSmtp(data_mh.addr("smtp"))
        s.cmd("EHLO big.test")
        s.cmd("MAIL FROM:<x@remote.test>")
        s.cmd("RCPT TO:<alice@example.org>")
        codes.append(s.data([b"Subject: big\r\n\r\n", body])[0])
        s.close()

    probe = RawSmtp(data_mh.addr("smtp"))
    assert probe.cmd("EHLO probe.test")[0] == 250
    cpu0 = thread_cpu(pid, pid)
    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for t in senders:
        t.start()
    noops: list[float] = []
    while any(t.is_alive() for t in senders):
        t0 = time.perf_counter()
        assert probe.cmd("NOOP")[0] == 250
        noops.append(time.perf_counter() - t0)
        time.sleep(0.01)
    for t in senders:
        t.join()
    loop_cpu = thread_cpu(pid, pid) - cpu0
    probe.close()
    noops.sort()
    ns = loop_cpu * 1e9 / (SENDERS * SIZE)
    seen = (
        f"loop CPU {loop_cpu:.2f} s = {ns:.1f} ns/octet; {len(noops)} NOOPs, "
        f"p50 {noops[len(noops) // 2] * 1000:.1f} ms, max {noops[-1] * 1000:.0f} ms"
    )
    print(seen)
    assert codes == [250] * SENDERS
    assert len(noops) > 20, seen  # the probe got turns all along
    assert noops[-1] < 2.0, seen  # never frozen (a loaded machine's scheduler accounts for the rest)
