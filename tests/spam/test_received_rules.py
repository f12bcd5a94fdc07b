"""Forged Received chains (spam/headerrules.py, issue 14 §3 header anomalies): each rule fires on
a made-up chain and stays silent on real ones; end to end through port 25 with the reason in
``mailhouse spam explain``."""

from __future__ import annotations

import smtplib

import pytest

from mailhouse.spam.headerrules import HeaderAnomalies, received_parts
from tests.spam.helpers import GOOD_HEAD, HOST, ctx, names, run

LIST_HOP = b"Received: from lists.example.net (lists.example.net [198.51.100.7])\r\n\tby mx.other.test with ESMTPS id 1; Mon, 07 Dec 2026 10:00:05 +0000\r\n"
ORIGIN = b"Received: from laptop (unknown [192.0.2.99])\r\n\tby mail.sender.test with ESMTPSA id 2; Mon, 07 Dec 2026 10:00:01 +0000\r\n"
OURS_TOP = f"Received: from {HOST} ([192.0.2.10])\r\n\tby relay.sender.test with ESMTP; Mon, 07 Dec 2026 10:00:02 +0000\r\n".encode()
BY_OURS_TOP = f"Received: from laptop ([10.0.0.2]) (comment: by nobody)\r\n\tby {HOST.upper()}. (Mailhouse) with ESMTPSA; Mon, 07 Dec 2026 10:00:02 +0000\r\n".encode()
OURS_LOWER = f"Received: from laptop ([10.0.0.2])\r\n\tby {HOST} (Mailhouse) with ESMTPSA id 3; Mon, 07 Dec 2026 10:00:00 +0000\r\n".encode()
BACKWARDS = ORIGIN.replace(b"07 Dec 2026", b"09 Dec 2026")  # older hop stamped two days later


def _hits(received: bytes) -> set[str]:
    return names(run(HeaderAnomalies(), ctx(received + GOOD_HEAD + b"\r\nbody\r\n")))


def test_received_parts() -> None:
    assert received_parts(
        "from a.test (b.test [192.0.2.1]) by C.Test. with ESMTP; Mon, 07 Dec 2026 10:00:00 +0000"
    ) == (
        "a.test",
        "c.test",
        1796637600.0,
    )
    assert received_parts("by only.test id 1") == ("", "only.test", None)
    assert received_parts("garbage; not a date") == ("", "", None)


@pytest.mark.parametrize(
    ("chain", "fired"),
    [
        (OURS_TOP + ORIGIN, "RCVD_FORGED_OURS"),  # the client says the message came from us
        (BY_OURS_TOP, "RCVD_FORGED_OURS"),  # ... or through us (case and trailing dot ignored)
        (LIST_HOP + BACKWARDS, "RCVD_DATE_ORDER"),
    ],
)
def test_forged_received_fires(chain: bytes, fired: str) -> None:
    assert _hits(chain) == {fired}


@pytest.mark.parametrize(
    "chain",
    [
        b"",  # no Received at all
        LIST_HOP + ORIGIN,  # an ordinary chain
        LIST_HOP + OURS_LOWER,  # our own message back from a mailing list
        LIST_HOP + ORIGIN.replace(b"10:00:01", b"09:00:01"),  # an hour of clock skew
        LIST_HOP + b"Received: by x.test; not a date\r\n",  # an unreadable date is no order
    ],
)
def test_real_chains_do_not_fire(chain: bytes) -> None:
    assert _hits(chain) == set()


def test_forged_received_through_port_25(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory()
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    forged = f"Received: from {mh.hostname} ([127.0.0.1])\r\n\tby bot with SMTP; Mon, 07 Dec 2026 10:00:00 +0000\r\n".encode()
    msg = forged + GOOD_HEAD.replace(b"bob@example.org", b"alice@example.org") + b"\r\nhi\r\n"
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
        c.ehlo("bot.sender.test")
        c.mail("ann@sender.test")
        c.rcpt("alice@example.org")
        code, reply = c.data(msg)
    assert code == 250, reply
    out = mh.cli("spam", "explain", reply.decode().rsplit(" ", 1)[1]).stdout
    assert "RCVD_FORGED_OURS" in out and f"came from our own server {mh.hostname}" in out, out
