"""The DNS circuit breaker of the spam look-ups (spam/lookup.py, issue 14 §5): with a resolver that
reads every query and never answers, a few look-ups time out, then look-ups are skipped for a
cool-down (a DNS_TEMPERROR result, no waiting), one probe goes out after it, and a resolver that
answers again closes the breaker. Asserted on the queries the black hole received and the
look-ups attempted, never on time."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable, Iterator

import pytest

from mailhouse.spam.lookup import Lookup
from tests.helpers import mailbox
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.smtpserver.test_dns_budget import BlackHole

WAIT = 0.6  # seconds each look-up may wait (at least MIN_COUNTED_WAIT, so a time-out counts)


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    bh = BlackHole()
    yield bh
    bh.close()


@pytest.fixture(scope="module")
def alive(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    return dns_server_factory(ptr={"20.2.0.192.in-addr.arpa": "mail.good.test"})


async def _ptrs(lookup: Lookup, n: int) -> list[list[str] | None]:
    return [await lookup.ptr(f"192.0.2.{i}", WAIT) for i in range(1, n + 1)]


def test_dead_resolver_is_asked_threshold_times_then_skipped(black_hole: BlackHole) -> None:
    lookup = Lookup([("127.0.0.1", black_hole.port)], threshold=3, cooldown=3600.0)
    assert asyncio.run(_ptrs(lookup, 20)) == [None] * 20  # could not tell, every time
    assert lookup.attempted == 3 and lookup.skipped == 17
    assert black_hole.queries == 3
    assert lookup.breaker_open


def test_probe_after_cooldown_reopens_or_closes(black_hole: BlackHole, alive: DNSServer) -> None:
    lookup = Lookup([("127.0.0.1", black_hole.port)], threshold=2, cooldown=0.5)
    asyncio.run(_ptrs(lookup, 5))
    assert lookup.attempted == 2
    time.sleep(0.6)
    asyncio.run(_ptrs(lookup, 5))  # one probe, unanswered: open again at once
    assert lookup.attempted == 3 and lookup.breaker_open
    time.sleep(0.6)
    lookup.resolver.nameservers = Lookup([(alive.host, int(alive.port or 53))]).resolver.nameservers
    assert asyncio.run(lookup.ptr("192.0.2.20", WAIT)) == ["mail.good.test"]  # the probe is answered
    assert not lookup.breaker_open
    assert asyncio.run(lookup.ptr("192.0.2.21", WAIT)) == []  # asked, not skipped
    assert lookup.attempted == 5


def test_a_short_wait_timing_out_does_not_count(black_hole: BlackHole) -> None:
    lookup = Lookup([("127.0.0.1", black_hole.port)], threshold=1, cooldown=3600.0)
    assert asyncio.run(lookup.ptr("192.0.2.1", 0.1)) is None  # a budget nearly spent: no verdict
    assert not lookup.breaker_open


MSG = (
    b"From: Ann <ann@sender.test>\r\nTo: alice@example.org\r\nSubject: dns down\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m.%d@sender.test>\r\n\r\nhello\r\n"
)


def test_twenty_messages_cost_a_few_lookups_not_twenty_budgets(
    mailhouse_factory, black_hole: BlackHole
) -> None:  # type: ignore[no-untyped-def]
    extra = (
        f'[spam]\ntimeout = 1.0\ndnsbl = ["bl.test"]\n[dns]\nnameservers = ["127.0.0.1:{black_hole.port}"]\n'
    )
    mh: MailhouseProcess = mailhouse_factory(extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    replies = []
    with smtplib.SMTP(*mh.addr("smtp"), timeout=60) as c:
        c.ehlo("mail.sender.test")
        for i in range(20):
            c.mail("ann@sender.test")
            c.rcpt("alice@example.org")
            code, reply = c.data(MSG % i)
            assert code == 250, reply
            replies.append(reply)
    # each message asks PTR and the DNS list: without the breaker 40 queries or more; with it,
    # those of the first message or two (each query counts; a look-up is one datagram in 1 s)
    assert 0 < black_hole.queries <= 6, black_hole.queries
    assert len(mailbox(mh, "alice@example.org")) == 20  # all delivered, none deferred
    last = replies[-1].decode().rsplit(" ", 1)[1]
    out = mh.cli("spam", "explain", last).stdout
    assert "DNS_TEMPERROR" in out and "resolver has not been answering" in out, out
