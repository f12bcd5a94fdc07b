"""Minimal blocking clients for the login-throttle tests, each bound to a chosen loopback source
address (127.a.b.c) so one test machine plays many client IPs. Plaintext: the servers under test
allow it (``[auth] allow_plaintext = true``), which keeps TLS handshakes out of the timings."""

from __future__ import annotations

import base64
import socket

TIMEOUT = 120.0  # generous: the machine is loaded and the answers are delayed on purpose


class Line:
    def __init__(self, addr: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(addr, TIMEOUT, source_address=(source, 0))
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data + b"\r\n")

    def close(self) -> None:
        self.sock.close()


class Smtp(Line):
    """Submission: greeting and EHLO read on open; `auth` answers the AUTH PLAIN reply line."""

    def __init__(self, addr: tuple[str, int], source: str) -> None:
        super().__init__(addr, source)
        self.greeting = self.reply()
        if self.greeting.startswith(b"220"):
            self.send(b"EHLO client.test")
            self.reply()

    def reply(self) -> bytes:
        line = self.line()
        while line[3:4] == b"-":
            line = self.line()
        return line

    def auth(self, user: str, password: str) -> bytes:
        self.send(b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()))
        return self.reply()


class Imap(Line):
    def __init__(self, addr: tuple[str, int], source: str) -> None:
        super().__init__(addr, source)
        self.greeting = self.line()
        self.n = 0

    def auth(self, user: str, password: str) -> bytes:
        self.n += 1
        tag = f"a{self.n}".encode()
        self.send(tag + b' LOGIN "' + user.encode() + b'" "' + password.encode() + b'"')
        while True:
            line = self.line()
            if line.startswith(tag + b" ") or not line:
                return line


class Pop3(Line):
    def __init__(self, addr: tuple[str, int], source: str) -> None:
        super().__init__(addr, source)
        self.greeting = self.line()

    def auth(self, user: str, password: str) -> bytes:
        self.send(b"USER " + user.encode())
        self.line()
        self.send(b"PASS " + password.encode())
        return self.line()


def http_status(addr: tuple[str, int], source: str, path: str = "/login") -> int:
    c = Line(addr, source)
    try:
        c.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: mail.example.org\r\nConnection: close\r\n\r\n".encode())
        status = c.line()
        return int(status.split()[1])
    finally:
        c.close()


def add_cheap_users(mh: object, addresses: list[str], password: str) -> None:
    """Accounts whose argon2id hash has the cheapest parameters (argon2 verifies with the
    parameters stored in the hash): a wrong guess then costs ~1 ms instead of ~50 ms (seconds on
    a loaded machine), so the timings these tests assert are the throttle's, not argon2's."""
    from argon2 import PasswordHasher

    from mailhouse.accounts.admin import Admin

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)

    async def add(a: Admin) -> None:
        for addr in addresses:
            await a.store.add_account(addr, cheap)

    mh.admin(add)  # type: ignore[attr-defined]
