"""A raw-socket SMTP client that streams a large message without holding it (for memory tests)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from tests.mailhouse_proc import MailhouseProcess


class RawSmtp:
    """One SMTP session over a plain socket; commands are sent one at a time (no pipelining)."""

    def __init__(self, addr: tuple[str, int], timeout: float = 120.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, bytes]:
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def data(self, chunks: Iterable[bytes]) -> tuple[int, bytes]:
        """DATA with CHUNKS already dot-stuffed and ending in CRLF; the end marker is added."""
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        for c in chunks:
            self.sock.sendall(c)
        self.sock.sendall(b".\r\n")
        return self.reply()

    def bdat(self, chunks: Iterable[bytes]) -> tuple[int, bytes]:
        """One BDAT per chunk, the last with LAST; the first error reply is returned."""
        items = list(chunks)
        for i, c in enumerate(items):
            last = " LAST" if i == len(items) - 1 else ""
            self.sock.sendall(f"BDAT {len(c)}{last}\r\n".encode() + c)
            code, text = self.reply()
            if code != 250:
                return code, text
        return code, text

    def close(self) -> None:
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


def big_body(size: int, line: bytes = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"):
    """Lines of LINE totalling about SIZE octets, yielded in ~1 MiB pieces."""
    per = max(1, (1 << 20) // len(line))
    piece = line * per
    sent = 0
    while sent < size:
        yield piece
        sent += len(piece)


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) of PID from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def smtp_only(factory: Callable[..., MailhouseProcess], max_size: int, inflight: int) -> MailhouseProcess:
    """A started Mailhouse with SMTP only, hosting alice@example.org, with these message limits."""
    mh = factory(
        services=("smtp",),
        extra=f"[limits]\nmax_message_size = {max_size}\nmax_inflight_bytes = {inflight}\n",
    )
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    return mh.start()
