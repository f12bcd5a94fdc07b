"""Fixtures for the IMAP server tests: one real `mailhouse serve` per test module (starting a
server costs ~2 s, so modules share one and use their own users or mailboxes), plus a raw
line-level IMAP client for what imaplib/imapclient hide (literals, pipelining, exact bytes)."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

USERS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
    "sync1",
    "sync2",
    "sync3",
    "sync4",
)


def tls_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _provision(mh: MailhouseProcess, users: tuple[str, ...]) -> None:
    # In-process through accounts.admin (what `mailhouse user add` runs): one interpreter
    # instead of one CLI process per user keeps module setup around a second.
    # The password hash is computed once and shared by the test users (same password).
    from mailhouse.accounts.admin import Admin
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.store import open_store

    mh.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        await Admin(store).add_domain("example.org")
        pw_hash, scram = make_credentials(PASSWORD)
        for u in users:
            await store.add_account(f"{u}@example.org", pw_hash, scram=scram)
    finally:
        await store.close()


def start_server(root: Path, extra: str = "", users: tuple[str, ...] = USERS) -> MailhouseProcess:
    import asyncio

    mh = MailhouseProcess(root, extra=extra)
    asyncio.run(_provision(mh, users))
    return mh.start()


@pytest.fixture(scope="session")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("imap"))
    try:
        yield mh
    finally:
        mh.stop()


def login(mh: MailhouseProcess, user: str) -> imaplib.IMAP4_SSL:
    c = imaplib.IMAP4_SSL(*mh.addr("imaps"), ssl_context=tls_ctx(), timeout=20)
    c.login(f"{user}@example.org", PASSWORD)
    return c


def deliver(
    mh: MailhouseProcess,
    user: str,
    subject: str = "hello",
    body: str = "body text\r\n",
    extra_headers: str = "",
) -> None:
    msg = (
        f"From: Sender <sender@remote.test>\r\nTo: {user}@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@remote.test>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
        f"{extra_headers}\r\n{body}"
    )
    with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as s:
        s.sendmail("sender@remote.test", [f"{user}@example.org"], msg.encode())


def wait_exists(c: imaplib.IMAP4, mailbox: str, n: int, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        typ, data = c.status(mailbox, "(MESSAGES)")
        if typ == "OK" and int(re.search(rb"MESSAGES (\d+)", data[0]).group(1)) >= n:  # type: ignore[union-attr]
            return
        time.sleep(0.1)
    raise AssertionError(f"{mailbox} never reached {n} messages")


class RawIMAP:
    """Exact-bytes IMAP client: send lines, read responses (literals included)."""

    def __init__(self, addr: tuple[str, int], *, tls: bool = True, timeout: float = 20.0) -> None:
        sock = socket.create_connection(addr, timeout=timeout)
        self.sock: socket.socket = tls_ctx().wrap_socket(sock) if tls else sock
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; buffer={self.buf[:200]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line, with any literals it announces inlined."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            ln, self.buf = self.buf.split(b"\r\n", 1)
            out += ln
            m = re.search(rb"~?\{(\d+)\}$", ln)
            if not m:
                return out
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            out += b"\r\n" + self.buf[:size]
            self.buf = self.buf[size:]

    def until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + b" "):
                return lines

    def cmd(self, text: bytes | str) -> list[bytes]:
        self.n += 1
        tag = b"R%d" % self.n
        if isinstance(text, str):
            text = text.encode()
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def login(self, user: str) -> None:
        r = self.cmd(f'LOGIN {user}@example.org "{PASSWORD}"')
        assert b" OK " in r[-1], r

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1]


def raw_client(mh: MailhouseProcess, user: str) -> RawIMAP:
    """A logged-in ``RawIMAP`` over imaps for ``user@example.org``."""
    c = RawIMAP(mh.addr("imaps"))
    c.login(user)
    return c
