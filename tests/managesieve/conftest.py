"""Fixtures for the ManageSieve tests: a real `mailhouse serve` with the managesieve listener (and
SMTP for deliveries), a raw-socket client that speaks RFC 5804, one account per test."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhouse.store.api import Store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.pop3server.conftest import new_account, next_source_ip, unverified, with_store

SERVICES = ("smtp", "managesieve")
STRICT_EXTRA = "[sieve]\nmax_scripts = 3\nmax_script_size = 2000\n"


@pytest.fixture(scope="module")
def sieve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = MailhouseProcess(tmp_path_factory.mktemp("msieve"), services=SERVICES, extra=STRICT_EXTRA)
    mh.add_domain("example.org")
    mh.start()
    yield mh
    mh.stop()


@pytest.fixture
def account(sieve_server: MailhouseProcess) -> str:
    return new_account(sieve_server)


_RESP = re.compile(rb"^(OK|NO|BYE)( \(([^)]*)\))?( (\"(?:[^\"\\]|\\.)*\"|\{\d+\}))?\r\n$")


class Client:
    """A small RFC 5804 client over a raw socket (what a Thunderbird add-on sends, byte for byte)."""

    def __init__(self, addr: tuple[str, int], source: str | None = None) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            addr, 30, source_address=(source or next_source_ip(), 0)
        )
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[list[bytes], bytes]:
        """Lines until the final OK/NO/BYE; literals read whole. Returns (data lines, final line
        with a trailing literal text inlined)."""
        lines: list[bytes] = []
        while True:
            ln = self.line()
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:
                ln = ln[: m.start()] + b"{" + self.take(int(m.group(1))) + b"}" + self.line()
            if _RESP.match(ln) or ln.startswith((b"OK", b"NO", b"BYE")):
                return lines, ln
            lines.append(ln)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, data: bytes) -> tuple[list[bytes], bytes]:
        self.send(data + b"\r\n")
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.cmd(b"STARTTLS")[1].startswith(b"OK")
        assert not self.buf
        self.sock = unverified().wrap_socket(self.sock, server_hostname="mail.example.org")
        caps, final = self.response()  # RFC 5804 §2.2: capabilities again after TLS
        assert final.startswith(b"OK")
        return caps

    def login(self, user: str, password: str = PASSWORD) -> bytes:
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        return self.cmd(b'AUTHENTICATE "PLAIN" "' + token + b'"')[1]

    def close(self) -> None:
        self.sock.close()


def script_literal(script: bytes) -> bytes:
    return b"{%d+}\r\n" % len(script) + script


def caps_dict(lines: list[bytes]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ln in lines:
        parts = re.findall(rb'"((?:[^"\\]|\\.)*)"', ln)
        out[parts[0].decode()] = parts[1].decode() if len(parts) > 1 else None
    return out


__all__ = ["Client", "Path", "Store", "caps_dict", "script_literal", "with_store"]
