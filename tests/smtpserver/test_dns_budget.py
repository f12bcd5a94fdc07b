"""DNS outages do not stall mail (issue 12 item 9): with a nameserver that reads every query and
never answers (UDP and TCP, on loopback), the end-of-DATA reply comes within the message's DNS
budget, the message is accepted, and Authentication-Results says temperror (RFC 8601 §2.7,
RFC 7208 §2.6.6)."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mailhouse.mailauth import dkim, dkimkeys
from tests.helpers import mailbox

MARGIN = 4.0  # seconds on top of the budget: a loaded machine, thread start-up, delivery


class BlackHole:
    """A 'nameserver' on 127.0.0.1 that reads every query (UDP and TCP) and never answers."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.queries = 0
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._udp, daemon=True).start()
        threading.Thread(target=self._tcp, daemon=True).start()

    def _udp(self) -> None:
        while not self.stopped:
            try:
                self.udp.recvfrom(4096)
            except OSError:
                return
            self.queries += 1

    def _tcp(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self.queries += 1
            self.held.append(conn)  # read nothing back, answer nothing, keep it open

    def close(self) -> None:
        self.stopped = True
        for s in (self.udp, self.tcp, *self.held):
            s.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    bh = BlackHole()
    yield bh
    bh.close()


def _signed_message() -> bytes:
    keys = dkimkeys.generate("signer.test", "sel")
    msg = b"From: a@signer.test\r\nTo: alice@example.org\r\nSubject: dns down\r\n\r\nbody\r\n"
    return dkim.sign(msg, "signer.test", keys)


@pytest.mark.parametrize("budget", [None, 2.0])
def test_unanswering_resolver_costs_at_most_the_budget(
    mailhouse_factory,  # type: ignore[no-untyped-def]
    black_hole: BlackHole,
    budget: float | None,
) -> None:
    extra = f'[dns]\nnameservers = ["127.0.0.1:{black_hole.port}"]\n'
    if budget is not None:
        extra += f"[mailauth]\nverify_inbound = true\ndns_budget = {budget}\n"
    mh = mailhouse_factory(verify_inbound=True, extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    limit = (budget or 5.0) + MARGIN  # the default budget is 5 s
    with smtplib.SMTP(*mh.addr("smtp"), timeout=60) as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        c.rcpt("alice@example.org")
        t0 = time.monotonic()
        code, reply = c.data(_signed_message())
        took = time.monotonic() - t0
    assert code == 250, reply  # accepted, not deferred
    assert took < limit, f"end-of-DATA reply after {took:.1f} s (budget {budget or 5.0} s)"
    assert black_hole.queries > 0  # the lookups did go to the black hole
    (msg,) = mailbox(mh, "alice@example.org")
    head = msg.split(b"\r\n\r\n", 1)[0]
    assert b"spf=temperror smtp.mailfrom=sender.test" in head, head
    assert b"dkim=temperror header.d=signer.test header.s=sel" in head, head
