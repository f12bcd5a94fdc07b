"""A deterministic ~40 MB MIME message and /proc memory probes for the streaming tests
(issue 12 item 2: FETCH BODY[] and POP3 RETR of a 40 MB message).

The text part puts lines starting with "." exactly on 256 KiB borders (the chunk size of the
streaming readers) and a CRLF split across one, so dot-stuffing and literal framing at chunk
borders are exercised; the attachment is base64 of bytes including NUL (BINARY → literal8).
"""

from __future__ import annotations

import base64
import random
import socket
import time
from functools import lru_cache

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

BORDER = 256 * 1024
BOUNDARY = b"=_big_boundary_42"


def _text_part(start: int, size: int) -> bytes:
    """Lines of text from offset START of the message, with '.'-lines on chunk borders."""
    out = bytearray()
    n = 0
    while len(out) < size:
        pos = start + len(out)
        nxt = (pos // BORDER + 1) * BORDER  # the next border
        gap = nxt - pos
        if gap >= 4 and n % 3 == 0:
            out += b"x" * (gap - 2) + b"\r\n"  # the next line starts exactly on the border
            out += b".dot line on a border\r\n" if n % 2 == 0 else b"..two dots\r\n"
        elif gap >= 3 and n % 3 == 1:
            out += b"y" * (gap - 1) + b"\r\n"  # CR is the border's last octet, LF the next's first
            out += b".after a split CRLF\r\n"
        else:
            out += b"line %d of the text part with some words in it\r\n" % n
            if n % 5 == 2:
                out += b".\r\n"  # a lone dot line: must never end the POP3 response
        n += 1
    return bytes(out)


@lru_cache(maxsize=2)
def big_message(total: int = 40_000_000) -> bytes:
    head = (
        b"From: Big Sender <big@remote.test>\r\nTo: someone@example.org\r\nSubject: a big one\r\n"
        b"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\nMessage-ID: <big-40mb@remote.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="' + BOUNDARY + b'"\r\n\r\n'
        b"preamble\r\n--" + BOUNDARY + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    text = _text_part(len(head), 2 * 1024 * 1024)
    mid = (
        b"\r\n--" + BOUNDARY + b"\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="blob.bin"\r\n\r\n'
    )
    tail = b"\r\n--" + BOUNDARY + b"--\r\n"
    room = total - len(head) - len(text) - len(mid) - len(tail)
    payload = random.Random(42).randbytes(room * 57 // 78)  # base64 with 76-char lines + CRLF
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    return head + text + mid + b64 + tail


def attachment_payload(total: int = 40_000_000) -> bytes:
    msg = big_message(total)
    start = msg.index(b"\r\n\r\n", msg.index(b"Content-Transfer-Encoding: base64")) + 4
    end = msg.rindex(b"\r\n--" + BOUNDARY + b"--")
    return base64.b64decode(b"".join(msg[start:end].split()))


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, /proc/PID/clear_refs "5")."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def mem_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


class Reader:
    """Reads a socket into one growing buffer without quadratic copies (40 MB responses)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError(f"closed; buffered {bytes(self.buf[self.pos : self.pos + 200])!r}")
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                out = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                self._compact()
                return out
            self._fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            self._fill()
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        self._compact()
        return out

    def _compact(self) -> None:
        if self.pos > (1 << 22):
            del self.buf[: self.pos]
            self.pos = 0


async def provision(mh: MailhouseProcess, user: str, messages: list[bytes]) -> None:
    """Domain example.org, USER with the test password, MESSAGES in its INBOX (before start)."""
    from mailhouse.accounts.admin import Admin
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.store import open_store
    from mailhouse.store.api import NewMessage

    mh.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        await Admin(store).add_domain("example.org")
        pw_hash, scram = make_credentials(PASSWORD)
        acc = await store.add_account(user, pw_hash, scram=scram)
        inbox = await store.get_mailbox(acc.id, "INBOX")
        assert inbox is not None
        for m in messages:
            await store.deliver(m, [NewMessage(inbox.id, "", len(m), frozenset(), time.time())])
    finally:
        await store.close()
