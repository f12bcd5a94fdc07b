"""Spam scoring end to end (issue 14 §3-§5): messages over real SMTP to a running `mailhouse serve`,
DNS lists answered by dnsmasq on loopback, results seen through IMAP and `mailhouse spam explain`."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from tests.helpers import mailbox
from tests.imapserver.server_helpers import login
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CLEAN = (
    b"From: Ann <ann@sender.test>\r\nTo: alice@example.org\r\nSubject: lunch\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <lunch.1@sender.test>\r\n\r\nAt noon?\r\n"
)
SPAM = CLEAN.replace(b"lunch.1@", b"gtube.1@").replace(b"At noon?", GTUBE)


def _server(factory: Callable[..., MailhouseProcess], spam: str = "", dns: str = "") -> MailhouseProcess:
    # no [spam] table unless asked: the defaults alone must score (and main's config runs it)
    extra = (f"[spam]\n{spam}\n" if spam else "") + (f'[dns]\nnameservers = ["{dns}"]\n' if dns else "")
    mh = factory(extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    return mh.start()


def _send(mh: MailhouseProcess, msg: bytes, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30, source_address=(source, 0)) as c:
        c.ehlo("mail.sender.test")
        c.mail("ann@sender.test")
        c.rcpt("alice@example.org")
        code, reply = c.data(msg)
    return code, reply


def test_gtube_is_refused_550_with_the_reason(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory)
    code, reply = _send(mh, SPAM)
    assert code == 550, reply
    assert reply.startswith(b"5.7.1") and b"GTUBE" in reply
    assert mailbox(mh, "alice@example.org") == []
    assert mailbox(mh, "alice@example.org", "Junk") == []


def test_gtube_below_reject_threshold_lands_in_junk_and_is_explained(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, "reject_threshold = 5000.0")
    code, reply = _send(mh, SPAM)
    assert code == 250, reply
    queue_id = reply.decode().rsplit(" ", 1)[1]
    c = login(mh, "alice")
    try:
        assert c.select("INBOX")[1] == [b"0"]
        typ, data = c.select("Junk")
        assert typ == "OK" and data == [b"1"]
        _, fetched = c.fetch("1", "(BODY.PEEK[HEADER])")
        head = fetched[0][1]
        assert b"X-Spam-Flag: YES\r\n" in head
        assert b"X-Spam-Status: Yes, score=1000." in head and b"tests=GTUBE" in head.replace(b"\r\n\t", b" ")
    finally:
        c.logout()
    out = mh.cli("spam", "explain", queue_id).stdout
    assert f"queue id:   {queue_id}" in out
    assert "verdict:    junk" in out
    assert "1000.0  GTUBE" in out and "GTUBE spam test string" in out
    assert "MISSING" not in out  # Date, Message-ID, From are all there
    by_mid = mh.cli("spam", "explain", "<gtube.1@sender.test>").stdout
    assert by_mid == out
    assert "spam " + queue_id in mh.logtext() and "GTUBE(1000)" in mh.logtext()


def test_clean_mail_gets_no_flag_and_stays_in_inbox(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory)
    forged = b"X-Spam-Status: No, score=-50.0\r\nX-Spam-Flag: NO\r\n" + SPAM
    assert _send(mh, CLEAN)[0] == 250
    (msg,) = mailbox(mh, "alice@example.org")
    head = msg.split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Status: No, score=" in head and b"X-Spam-Flag" not in head
    # a sender's own X-Spam fields do not whitelist it: they are removed, and GTUBE is refused
    assert _send(mh, forged)[0] == 550
    r = mh.cli("spam", "explain", "nosuchid", check=False)
    assert r.returncode == 1 and "no spam verdict" in r.stdout


def test_trusted_networks_are_not_scored(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, 'trusted_networks = ["127.0.0.0/8"]')
    assert _send(mh, SPAM)[0] == 250
    (msg,) = mailbox(mh, "alice@example.org")
    assert b"X-Spam-" not in msg.split(b"\r\n\r\n", 1)[0]


def test_disabled_scores_nothing(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, "enabled = false")
    assert _send(mh, SPAM)[0] == 250
    assert b"X-Spam-" not in mailbox(mh, "alice@example.org")[0]


@pytest.fixture(scope="module")
def lists(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    return dns_server_factory(
        a={
            "5.0.0.127.bl.test": "127.0.0.2",  # client 127.0.0.5 listed
            "6.0.0.127.bl.test": "127.255.255.254",  # client 127.0.0.6: the "public resolver" error
            "spammer.test.dbl.test": "127.0.1.2",
        }
    )


def test_dnsbl_listed_client_goes_to_junk(mailhouse_factory, lists: DNSServer) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, 'dnsbl = ["bl.test=6.0"]', dns=lists.nameserver)
    assert _send(mh, CLEAN, source="127.0.0.5")[0] == 250
    (msg,) = mailbox(mh, "alice@example.org", "Junk")
    assert b"RCVD_IN_DNSBL_BL_TEST" in msg
    # the error code is no listing: INBOX
    assert _send(mh, CLEAN.replace(b"lunch.1", b"lunch.2"), source="127.0.0.6")[0] == 250
    (msg,) = mailbox(mh, "alice@example.org")
    assert b"RCVD_IN_DNSBL" not in msg


def test_domain_blocklist_and_reject_threshold(mailhouse_factory, lists: DNSServer) -> None:  # type: ignore[no-untyped-def]
    mh = _server(
        mailhouse_factory,
        'domain_blocklists = ["dbl.test=9"]\njunk_threshold = 4.0\nreject_threshold = 8.0',
        dns=lists.nameserver,
    )
    code, reply = _send(mh, CLEAN + b"https://www.spammer.test/offer\r\n")
    assert code == 550 and b"DOMAIN_IN_DBL_TEST" in reply and b"spammer.test" in reply, reply
