"""Fixtures for the POP3 server tests: real `mailhouse serve` processes, real clients.

Two module-scoped servers keep the suite fast: `pop3_plain` allows USER/PASS and AUTH
without TLS (`[auth] allow_plaintext = true`), `pop3_strict` keeps the default (login
only over TLS). Each test gets its own account (`account` fixture) so tests never see
each other's messages, and its own loopback source address where the shared per-IP
login throttle matters.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import poplib
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from mailhouse.accounts.passwords import make_credentials
from mailhouse.store import open_store
from mailhouse.store.api import Mailbox, ScramKeys, Store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

T = TypeVar("T")

SERVICES = ("smtp", "pop3", "pop3s", "imap")  # IMAP: another session on the same maildrop
PLAINTEXT_OK = "[auth]\nallow_plaintext = true\n"
_accounts = itertools.count(1)
_source_ips = itertools.count(2)


def start_server(root: Path, extra: str = "") -> MailhouseProcess:
    mh = MailhouseProcess(root, services=SERVICES, extra=extra)
    mh.add_domain("example.org")
    return mh.start()


@pytest.fixture(scope="module")
def pop3_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("pop3plain"), PLAINTEXT_OK)
    yield mh
    mh.stop()


@pytest.fixture(scope="module")
def pop3_strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("pop3strict"))
    yield mh
    mh.stop()


@functools.cache
def _credentials() -> tuple[str, ScramKeys]:
    return make_credentials(PASSWORD)  # hashed once: argon2 per account would dominate the suite


def new_account(mh: MailhouseProcess) -> str:
    """A fresh account with password PASSWORD, written through the store the server uses."""
    address = f"user{next(_accounts)}@example.org"
    pw_hash, scram = _credentials()

    async def add(store: Store) -> None:
        await store.add_account(address, pw_hash, scram=scram)

    with_store(mh, add)
    return address


def deliver(mh: MailhouseProcess, rcpt: str, messages: list[bytes]) -> None:
    """Deliver over the server's SMTP listener (the real inbound path)."""
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as s:
        for m in messages:
            s.sendmail("sender@remote.test", [rcpt], m)


def sample(i: int, body: bytes = b"") -> bytes:
    return (
        f"From: sender@remote.test\r\nTo: x@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <m{i}@remote.test>\r\n\r\n".encode()
        + (body or f"Body of message {i}\r\n.leading dot\r\n".encode())
    )


def unverified() -> ssl.SSLContext:
    return ssl._create_unverified_context()  # self-signed test certificate


def next_source_ip() -> str:
    """A fresh loopback address, each in its own /24, so the login throttle of one test (per IP
    and per /24 network: accounts/throttle.py) never slows another."""
    n = next(_source_ips)
    return f"127.{n // 250}.{n % 250 + 2}.1"


class POP3From(poplib.POP3):
    """poplib.POP3 bound to a chosen loopback source address."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 30.0) -> None:
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


@pytest.fixture
def account(pop3_plain: MailhouseProcess) -> str:
    return new_account(pop3_plain)


@pytest.fixture
def client(pop3_plain: MailhouseProcess) -> Iterator[Callable[[], POP3From]]:
    """Factory of plaintext poplib clients, each test on its own source address."""
    src = next_source_ip()
    opened: list[POP3From] = []

    def make() -> POP3From:
        c = POP3From(*pop3_plain.addr("pop3"), source=src)
        opened.append(c)
        return c

    yield make
    for c in opened:
        try:
            c.close()
        except OSError:
            pass


def login(c: poplib.POP3, user: str, password: str = PASSWORD) -> bytes:
    c.user(user)
    return c.pass_(password)


class RawPop3:
    """A line-level POP3 client over a plain socket, for malformed and pipelined input."""

    def __init__(self, host: str, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), 10, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline(4096)

    def cmd(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.line()

    def multiline(self) -> list[bytes]:
        out = []
        while (ln := self.line()) not in (b".\r\n", b""):
            out.append(ln.rstrip(b"\r\n"))
        return out

    def starttls(self) -> None:
        self.file.close()
        self.sock = unverified().wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def with_store(mh: MailhouseProcess, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run FN against the server's store, opened from this process (another real client
    of the same SQLite/blob store, as an IMAP session in another worker would be)."""

    async def run() -> T:
        store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def inbox_of(store: Store, address: str) -> Mailbox:
    acc = await store.get_account(address)
    assert acc is not None
    mb = await store.get_mailbox(acc.id, "INBOX")
    assert mb is not None
    return mb
