"""The POP3 maildrop lock (RFC 1939 §8, RFC 2449 §8.1.1 `[IN-USE]`).

One POP3 session per maildrop, across sessions of one worker, across worker
processes (`[server] workers`), released on QUIT, on a dropped connection and when
the holding process dies.
"""

from __future__ import annotations

import poplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailhouse.store.locks import FileMaildropLocks
from tests.mailhouse_proc import MailhouseProcess

from .conftest import POP3From, login, new_account, next_source_ip, start_server


def _in_use(mh: MailhouseProcess, user: str) -> bytes:
    c = POP3From(*mh.addr("pop3"), source=next_source_ip())
    c.user(user)
    with pytest.raises(poplib.error_proto) as e:
        c.pass_("correct-horse-42")
    c.quit()  # still in AUTHORIZATION: QUIT is a plain sign-off
    return e.value.args[0]


def test_second_session_gets_in_use(pop3_plain: MailhouseProcess) -> None:
    user = new_account(pop3_plain)
    a = POP3From(*pop3_plain.addr("pop3"), source=next_source_ip())
    login(a, user)
    assert _in_use(pop3_plain, user).startswith(b"-ERR [IN-USE]")
    # the refused client stays in AUTHORIZATION and may try again once the holder quits
    b = POP3From(*pop3_plain.addr("pop3"), source=next_source_ip())
    b.user(user)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        b.pass_("correct-horse-42")
    assert a.quit().startswith(b"+OK")  # the lock is released before this +OK
    assert login(b, user).startswith(b"+OK")
    # a dropped connection releases the lock too
    b.close()
    end = time.monotonic() + 5
    while True:
        c = POP3From(*pop3_plain.addr("pop3"), source=next_source_ip())
        try:
            login(c, user)
            break
        except poplib.error_proto:
            c.close()
            assert time.monotonic() < end, "lock not released after disconnect"
            time.sleep(0.05)
    c.quit()


def test_other_users_are_not_locked(pop3_plain: MailhouseProcess) -> None:
    u1, u2 = new_account(pop3_plain), new_account(pop3_plain)
    a = POP3From(*pop3_plain.addr("pop3"), source=next_source_ip())
    b = POP3From(*pop3_plain.addr("pop3"), source=next_source_ip())
    login(a, u1)
    assert login(b, u2).startswith(b"+OK")
    a.quit()
    b.quit()


_HOLDER = """
import sys, time
from pathlib import Path
from mailhouse.store.locks import FileMaildropLocks
lease = FileMaildropLocks(Path(sys.argv[1])).try_acquire(7)
print("held" if lease else "busy", flush=True)
time.sleep(60)
"""


def test_file_lock_excludes_other_processes_and_dies_with_them(tmp_path: Path) -> None:
    locks = FileMaildropLocks(tmp_path / "locks")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "locks")], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert locks.try_acquire(7) is None  # held by another process
        other = locks.try_acquire(8)  # another maildrop is free
        assert other is not None
        other.release_now()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the flock, no stale lock file state
        holder.wait()
    lease = locks.try_acquire(7)
    assert lease is not None
    assert locks.try_acquire(7) is None  # also exclusive within one process
    lease.release_now()
    lease.release_now()  # idempotent
    again = locks.try_acquire(7)
    assert again is not None
    again.release_now()


def test_in_use_across_worker_processes(tmp_path: Path) -> None:
    """With `[server] workers = 2` connections land on both workers (SO_REUSEPORT);
    every second session is refused, whichever process serves it."""
    mh = start_server(tmp_path, "[auth]\nallow_plaintext = true\n[server]\nworkers = 2\n")
    try:
        user = new_account(mh)
        a = poplib.POP3(*mh.addr("pop3"), timeout=30)
        login(a, user)
        for _ in range(6):  # P(all six on the holder's worker) = 1/64 with two workers
            assert _in_use(mh, user).startswith(b"-ERR [IN-USE]")
        a.quit()
        b = poplib.POP3(*mh.addr("pop3"), timeout=30)
        assert login(b, user).startswith(b"+OK")
        b.quit()
    finally:
        mh.stop()
