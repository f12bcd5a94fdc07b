"""Small helpers for end-to-end tests: read a mailbox through the store, talk raw SMTP."""

from __future__ import annotations

import asyncio
import socket
import time

from mailhouse.store import open_store
from tests.mailhouse_proc import MailhouseProcess


async def _mailbox(mh: MailhouseProcess, address: str, mailbox: str) -> list[bytes]:
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        acc = await store.get_account(address)
        assert acc is not None, f"no account {address}"
        mb = await store.get_mailbox(acc.id, mailbox)
        assert mb is not None
        return [await store.blobs.get(m.blob_key) for m in await store.list_messages(mb.id)]
    finally:
        await store.close()


def mailbox(mh: MailhouseProcess, address: str, mailbox: str = "INBOX") -> list[bytes]:
    return asyncio.run(_mailbox(mh, address, mailbox))


def wait_mailbox(
    mh: MailhouseProcess, address: str, count: int, mailbox_name: str = "INBOX", timeout: float = 15.0
) -> list[bytes]:
    end = time.time() + timeout
    msgs: list[bytes] = []
    while time.time() < end:
        msgs = mailbox(mh, address, mailbox_name)
        if len(msgs) >= count:
            return msgs
        time.sleep(0.2)
    return msgs


class RawSMTP:
    """A line-oriented raw socket client, like a person at telnet."""

    def __init__(self, addr: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffer={self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> bytes:
        """A whole (possibly multi-line) reply, lines joined with \\n."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()
