"""One DNS budget per message (issue 12 item 9): DKIM's look-ups share a deadline, and
`dnsbudget.check` returns within the budget with temperror for what did not finish."""

from __future__ import annotations

import socket
import time

from mailhouse.mailauth import dkim, dkimkeys, dnsbudget, spf


def _twice_signed() -> bytes:
    msg = b"From: a@signer.test\r\nSubject: x\r\n\r\nbody\r\n"
    msg = dkim.sign(msg, "signer.test", dkimkeys.generate("signer.test", "one"))
    return dkim.sign(msg, "signer.test", dkimkeys.generate("signer.test", "two"))


def test_dkim_lookups_share_one_deadline() -> None:
    asked: list[float] = []

    def slow(name: bytes, timeout: float = 5.0) -> bytes | None:
        asked.append(timeout)
        time.sleep(timeout)
        raise dkim.dkimpy.DnsTimeoutError("no answer")

    t0 = time.monotonic()
    results = dkim.verify(_twice_signed(), dnsfunc=slow, deadline=t0 + 1.0)
    took = time.monotonic() - t0
    assert took < 2.5, took  # not 4 × 5 s: every look-up got only the time left
    assert all(t <= 1.0 for t in asked), asked
    assert results and all(r.result == "temperror" for r in results), results


def test_unfinished_results() -> None:
    assert spf.unfinished("x@Sender.TEST", "helo.test", "why") == spf.SpfResult(
        "temperror", "why", "sender.test", "mailfrom"
    )
    assert spf.unfinished("", "Helo.Test", "why").identity == "helo"
    res = dkim.unfinished(_twice_signed(), "why")  # one per signature (rsa + ed25519 per key set)
    assert [r.selector[:3] for r in res] == ["two", "two", "one", "one"]
    assert {r.result for r in res} == {"temperror"}


async def test_check_returns_within_budget() -> None:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing, answers nothing
    hole.bind(("127.0.0.1", 0))
    ns = [("127.0.0.1", hole.getsockname()[1])]
    try:
        t0 = time.monotonic()
        s, d = await dnsbudget.check(_twice_signed(), "192.0.2.1", "a@signer.test", "h.test", ns, 1.0)
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert took < 1.0 + dnsbudget.GRACE + 3.0, took  # generous: the machine may be loaded
    assert s is not None and s.result == "temperror"
    assert d is not None and d and all(r.result == "temperror" for r in d)
