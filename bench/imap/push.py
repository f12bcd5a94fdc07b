"""IMAP push latency: from the ``250`` of an SMTP delivery to ``* n EXISTS`` on an IDLE session.

One IMAP client LOGINs, SELECTs INBOX and IDLEs; an SMTP client then delivers ``--samples``
messages one at a time, each after the previous EXISTS arrived, and the time from the final
``250`` after DATA to the EXISTS line is recorded. With ``--nodes 2`` the store is a PostgreSQL
database shared by two Mailhouse nodes (127.0.0.2 and 127.0.0.3): SMTP goes to the second node
and IMAP to the first, so the wake-up crosses LISTEN/NOTIFY. Printed: p50, p90 and max in ms.

Goal (issue 13 §2): p50 < 50 ms on one node, < 150 ms across two PostgreSQL nodes.

    .venv/bin/python -m bench.imap.push [--samples 30] [--nodes 1|2]
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

USER = "push@example.org"


class IdleWatcher:
    """A blocking IMAP client (plain socket or TLS) that IDLEs and reports EXISTS lines."""

    def __init__(self, addr: tuple[str, int], *, tls: bool = False) -> None:
        sock = socket.create_connection(addr, timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the node's self-signed certificate
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.f = sock.makefile("rb")
        self.n = 0
        if not self.f.readline().startswith(b"* OK"):
            raise RuntimeError("no greeting")

    def cmd(self, line: str) -> list[bytes]:
        self.n += 1
        tag = f"p{self.n}".encode()
        self.sock.sendall(tag + b" " + line.encode() + b"\r\n")
        out = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise ConnectionError("closed")
            out.append(ln)
            if ln.startswith(tag + b" "):
                if ln.split()[1] != b"OK":
                    raise RuntimeError(f"{line!r}: {ln!r}")
                return out

    def idle(self) -> None:
        self.sock.sendall(b"i IDLE\r\n")
        if not self.f.readline().startswith(b"+"):
            raise RuntimeError("IDLE refused")

    def next_exists(self, timeout: float = 10.0) -> int:
        self.sock.settimeout(timeout)
        while True:
            ln = self.f.readline()
            if not ln:
                raise ConnectionError("closed during IDLE")
            if ln.startswith(b"* ") and ln.endswith(b" EXISTS\r\n"):
                return int(ln.split()[1])

    def done(self) -> None:
        self.sock.sendall(b"DONE\r\n")
        while not self.f.readline().startswith(b"i "):
            pass

    def close(self) -> None:
        try:
            self.cmd("LOGOUT")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def smtp_send(sock: socket.socket, f: object, i: int, user: str = USER) -> float:
    """One message on an open SMTP session; returns the monotonic time of the final 250."""
    rf = f  # a binary file over the socket

    def reply() -> bytes:
        while True:
            ln: bytes = rf.readline()  # type: ignore[attr-defined]
            if not ln:
                raise ConnectionError("SMTP closed")
            if ln[3:4] != b"-":
                return ln

    body = f"From: x@remote.test\r\nTo: {user}\r\nSubject: push {i}\r\n\r\nping {i}\r\n.\r\n".encode()
    for line in (b"MAIL FROM:<x@remote.test>\r\n", f"RCPT TO:<{user}>\r\n".encode(), b"DATA\r\n"):
        sock.sendall(line)
        r = reply()
        if r[:1] not in (b"2", b"3"):
            raise RuntimeError(f"SMTP {line!r}: {r!r}")
    sock.sendall(body)
    r = reply()
    t = time.monotonic()
    if not r.startswith(b"250"):
        raise RuntimeError(f"SMTP DATA: {r!r}")
    return t


def measure(
    imap: tuple[str, int], smtp: tuple[str, int], samples: int, *, tls: bool = False, user: str = USER
) -> list[float]:
    """Seconds from each delivery's 250 (on SMTP) to its EXISTS (on an IDLE session of IMAP)."""
    w = IdleWatcher(imap, tls=tls)
    s = socket.create_connection(smtp, timeout=10)
    sf = s.makefile("rb")
    try:
        w.cmd(f'LOGIN "{user}" "{PASSWORD}"')
        exists = int(next(ln for ln in w.cmd("SELECT INBOX") if ln.endswith(b" EXISTS\r\n")).split()[1])
        w.idle()
        greeting = sf.readline()
        while greeting[3:4] == b"-":  # a multi-line greeting (pregreet test): wait for its end
            greeting = sf.readline()
        if not greeting.startswith(b"220"):
            raise RuntimeError("no SMTP greeting")
        s.sendall(b"EHLO bench.test\r\n")
        while sf.readline()[3:4] == b"-":
            pass
        out = []
        for i in range(samples):
            t_ack = smtp_send(s, sf, i, user)
            while True:
                n = w.next_exists()
                if n > exists:
                    break
            out.append(time.monotonic() - t_ack)
            exists = n
        w.done()
        s.sendall(b"QUIT\r\n")
        return out
    finally:
        w.close()
        s.close()


def pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0.0


def report(label: str, lat: Sequence[float]) -> str:
    return (
        f"{label}: {len(lat)} deliveries, 250 -> EXISTS p50 {pct(lat, 0.5) * 1000:.1f} ms,"
        f" p90 {pct(lat, 0.9) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms"
    )


def one_node(root: Path, samples: int) -> list[float]:
    mh = MailhouseProcess(root, services=("smtp", "imap"), extra="[auth]\nallow_plaintext = true\n")
    mh.add_domain("example.org")
    mh.add_user(USER)
    with mh:
        return measure(mh.addr("imap"), mh.addr("smtp"), samples)


def two_nodes(root: Path, samples: int) -> list[float]:
    from tests.peers.postgres import PostgresInstance

    with PostgresInstance() as pg:
        url = pg.create_database("push")
        nodes = []
        for i, host in enumerate(("127.0.0.2", "127.0.0.3")):
            (root / f"n{i}").mkdir()
            nodes.append(
                MailhouseProcess(
                    root / f"n{i}",
                    host=host,
                    store_url=url,
                    services=("smtp", "imap"),
                    extra="[auth]\nallow_plaintext = true\n",
                )
            )
        nodes[0].add_domain("example.org")
        nodes[0].add_user(USER)
        for n in nodes:
            n.start()
        try:
            return measure(nodes[0].addr("imap"), nodes[1].addr("smtp"), samples)
        finally:
            for n in nodes:
                n.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        lat = one_node(root, a.samples) if a.nodes == 1 else two_nodes(root, a.samples)
    goal = 50 if a.nodes == 1 else 150
    print(report(f"push latency, {a.nodes} node(s)", lat) + f"   (goal p50 < {goal} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
