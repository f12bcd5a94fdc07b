"""Listeners shared by worker processes (runtime/listener.py): one socket, taken by whichever
worker is waiting.

With SO_REUSEPORT each worker had its own accept queue and the kernel hashed every new
connection to one of them whatever that worker was doing: a client sent to a busy (here:
stopped) worker waited for it while the other one idled. With the socket bound once before the
fork, a stopped worker holds no connection that another worker could serve.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

from tests.mailhouse_proc import MailhouseProcess

#: A connection that gets no greeting in this time sits in a stopped worker's queue (the
#: running worker greets a known client at once).
GREETING_WAIT = 20.0


def _greeting(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=GREETING_WAIT) as s:
        try:
            return s.recv(512)
        except TimeoutError:
            return b""


def test_a_stopped_worker_holds_no_connection(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    mh = mailhouse_factory(services=("smtp",), extra="[server]\nworkers = 2\nsmtp_pregreet_wait = 0\n")
    mh.start()
    assert mh.proc is not None
    # the port is open once the parent bound it, just before it forks: wait for both workers
    workers: list[int] = []
    deadline = time.monotonic() + 20
    while len(workers) < 2 and time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(mh.proc.pid)], capture_output=True, text=True)
        workers = [int(p) for p in out.stdout.split()]
        time.sleep(0.05)
    assert len(workers) == 2
    # and until both serve: a worker stopped while opening the store would hold its write lock,
    # and the other one could never start (a race of the test, not of the server)
    while mh.logtext().count(" ready (pid ") < 2 and time.monotonic() < deadline + 40:
        time.sleep(0.05)
    assert mh.logtext().count(" ready (pid ") == 2, mh.logtext()[-2000:]
    os.kill(workers[0], signal.SIGSTOP)
    try:
        # 8 connections from different source ports: SO_REUSEPORT would send about half to the
        # stopped worker (all eight on the running one: 1 in 256)
        greetings = [_greeting(mh.addr("smtp")) for _ in range(8)]
    finally:
        os.kill(workers[0], signal.SIGCONT)
    assert all(g.startswith(b"220 ") for g in greetings), greetings


def test_bind_shared_takes_address_literals_and_binds_ipv6_only() -> None:
    from mailhouse.runtime import listener

    listener.bind_shared([("::1", 0), ("127.0.0.1", 0), ("localhost", 0)])
    try:
        assert set(listener._shared) == {("::1", 0), ("127.0.0.1", 0)}  # a name: each worker binds it
        v6 = listener._shared[("::1", 0)]
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1  # as create_server does
    finally:
        for key in [("::1", 0), ("127.0.0.1", 0)]:
            listener._shared.pop(key).close()
