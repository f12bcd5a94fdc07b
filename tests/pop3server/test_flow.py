"""The session's I/O rules on the asyncio.Protocol adapter: idle autologout (also inside a
SASL exchange), flow control both ways (a pipelining client that does not read while it
sends, a body bigger than the one-piece write limit), EOF after pipelined commands."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mailhouse.pop3server.server import MAX_PENDING_INPUT, WRITE_WHOLE_LIMIT
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .conftest import PLAINTEXT_OK, RawPop3, deliver, new_account, sample, start_server


@pytest.fixture(scope="module")
def pop3_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("pop3idle"), PLAINTEXT_OK + "[server]\npop3_idle_timeout = 1\n")
    yield mh
    mh.stop()


def _login(mh: MailhouseProcess, user: str) -> RawPop3:
    r = RawPop3(*mh.addr("pop3"))
    assert r.cmd(b"USER " + user.encode()).startswith(b"+OK")
    assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    return r


def test_idle_autologout_deletes_nothing(pop3_idle: MailhouseProcess) -> None:
    user = new_account(pop3_idle)
    deliver(pop3_idle, user, [sample(1), sample(2)])
    r = _login(pop3_idle, user)
    assert r.cmd(b"DELE 1").startswith(b"+OK")
    t0 = time.monotonic()
    assert r.line() == b"-ERR Autologout: idle for too long\r\n"  # RFC 1939 §3
    assert 0.9 < time.monotonic() - t0 < 10
    assert r.line() == b""  # closed
    r.close()
    r = _login(pop3_idle, user)  # lock released; no UPDATE happened (RFC 1939 §6)
    assert r.cmd(b"STAT").startswith(b"+OK 2 ")
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_idle_autologout_inside_sasl_exchange(pop3_idle: MailhouseProcess) -> None:
    r = RawPop3(*pop3_idle.addr("pop3"))
    assert r.cmd(b"AUTH LOGIN").startswith(b"+ ")  # waits for the user name
    assert r.line() == b"-ERR Autologout: idle for too long\r\n"
    assert r.line() == b""
    r.close()


def test_active_session_is_not_logged_out(pop3_idle: MailhouseProcess) -> None:
    user = new_account(pop3_idle)
    r = _login(pop3_idle, user)
    for _ in range(6):  # 3 s of activity, 0.5 s apart: never 1 s idle
        time.sleep(0.5)
        assert r.cmd(b"NOOP") == b"+OK\r\n"
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_pipelined_flood_without_reading(pop3_plain: MailhouseProcess) -> None:
    """More pipelined commands than MAX_PENDING_INPUT while the client does not read:
    the server pauses reading and writing in turn, and answers every command in order."""
    user = new_account(pop3_plain)
    deliver(pop3_plain, user, [sample(1)])
    r = _login(pop3_plain, user)
    n = 4 * MAX_PENDING_INPUT // len(b"LIST 1\r\n")
    sender = threading.Thread(target=r.send, args=(b"LIST 1\r\n" * n + b"QUIT\r\n",))
    sender.start()
    time.sleep(0.5)  # the client reads nothing for a while: both directions fill up
    expected = r.line()
    assert expected.startswith(b"+OK 1 ")
    for _ in range(n - 1):
        assert r.line() == expected
    assert r.line().startswith(b"+OK")  # QUIT
    sender.join()
    r.close()


def test_big_message_streamed_to_a_slow_reader(pop3_plain: MailhouseProcess) -> None:
    user = new_account(pop3_plain)
    line = b"x" * 70 + b"\r\n"
    body = b".dot line\r\n" + line * (2 * WRITE_WHOLE_LIMIT // len(line))  # bigger than one write
    deliver(pop3_plain, user, [sample(1, body)])
    r = _login(pop3_plain, user)
    r.send(b"RETR 1\r\n")
    time.sleep(0.5)  # let the server fill the socket and wait for the drain
    first = r.line()
    assert first.startswith(b"+OK")
    size = int(first.split()[1])
    got = r.multiline()
    data = b"".join(ln + b"\r\n" for ln in got)
    assert b"\r\n..dot line\r\n" in data  # dot-stuffed on the wire
    assert len(data) - data.count(b"\r\n..") == size  # the octet count before stuffing
    assert hashlib.sha256(data.split(b"\r\n\r\n", 1)[1]).digest() == hashlib.sha256(b"." + body).digest()
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_pipelined_quit_then_eof_commits(pop3_plain: MailhouseProcess) -> None:
    """The client sends DELE + QUIT and half-closes at once: the UPDATE still runs."""
    user = new_account(pop3_plain)
    deliver(pop3_plain, user, [sample(1), sample(2)])
    r = _login(pop3_plain, user)
    r.send(b"DELE 1\r\nQUIT\r\n")
    r.sock.shutdown(socket.SHUT_WR)
    assert r.line().startswith(b"+OK")
    assert r.line().startswith(b"+OK")  # QUIT: committed before this +OK
    r.close()
    r = _login(pop3_plain, user)
    assert r.cmd(b"STAT").startswith(b"+OK 1 ")
    r.cmd(b"QUIT")
    r.close()


def test_client_that_stops_reading_a_big_body_is_dropped(pop3_idle: MailhouseProcess) -> None:
    """The idle timeout also covers a RETR whose client stopped reading (zero window)."""
    user = new_account(pop3_idle)
    line = b"y" * 70 + b"\r\n"
    deliver(pop3_idle, user, [sample(1, line * (8 * WRITE_WHOLE_LIMIT // len(line)))])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a tiny window
    sock.settimeout(10)
    sock.connect(pop3_idle.addr("pop3"))
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    for cmd in (b"USER " + user.encode(), b"PASS " + PASSWORD.encode()):
        sock.sendall(cmd + b"\r\n")
        assert f.readline().startswith(b"+OK")
    sock.sendall(b"RETR 1\r\n")
    time.sleep(4)  # read nothing: the server's writes stall, then its idle timer (1 s) fires
    got = 0
    try:
        while chunk := f.read1(65536):
            got += len(chunk)
    except ConnectionResetError:
        pass  # aborted: what was in flight may be discarded
    assert got < 8 * WRITE_WHOLE_LIMIT  # the body was not delivered in full
    sock.close()
    r = _login(pop3_idle, user)  # the lock was released with the dropped session
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()
