"""Greylisting at RCPT on port 25 (issue 14 §3, spam/greylist.py): a new (network, sender,
recipient) triplet gets ``451 4.7.1``, a real retry after ``[spam] greylist_delay`` passes and the
client's network is remembered; trusted networks, authenticated submission and DNSWL-listed
clients are exempt. Time is controlled by config (a one-second delay) and real retries."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable

import pytest

from tests.helpers import mailbox
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.smtpserver.test_submission import submission

DELAY = 1.0
MSG = b"From: ann@sender.test\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def _server(factory: Callable[..., MailhouseProcess], spam: str = "", dns: str = "") -> MailhouseProcess:
    extra = f"[spam]\ngreylisting = true\ngreylist_delay = {DELAY}\n{spam}\n"
    extra += f'[dns]\nnameservers = ["{dns}"]\n' if dns else ""
    mh = factory(extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    return mh.start()


def _attempt(
    mh: MailhouseProcess,
    sender: str = "ann@sender.test",
    rcpt: str = "alice@example.org",
    source: str = "127.0.0.1",
) -> tuple[int, bytes]:
    """One delivery attempt: the RCPT reply, and the message sent if RCPT was accepted."""
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30, source_address=(source, 0)) as c:
        c.ehlo("mail.sender.test")
        c.mail(sender)
        code, reply = c.rcpt(rcpt)
        if code == 250:
            assert c.data(MSG)[0] == 250
    return code, reply


def test_new_triplet_is_deferred_and_a_retry_after_the_delay_passes(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory)
    code, reply = _attempt(mh)
    assert code == 451 and reply.startswith(b"4.7.1 Greylisted"), reply
    code, _ = _attempt(mh)  # too soon: still deferred
    assert code == 451
    assert mailbox(mh, "alice@example.org") == []
    time.sleep(DELAY + 0.5)
    assert _attempt(mh)[0] == 250  # the real retry
    assert len(mailbox(mh, "alice@example.org")) == 1
    # the network passed: another address of its /24, another sender and recipient get no delay
    assert _attempt(mh, "zed@other.test", "bob@example.org", source="127.0.0.7")[0] == 250
    assert "greylist: new triplet 127.0.0.0/24" in mh.logtext()


def test_triplet_not_retried_in_time_starts_over(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, "greylist_expire = 1.5")
    assert _attempt(mh)[0] == 451
    time.sleep(2.0)  # past the expiry: the first attempt is forgotten
    assert _attempt(mh)[0] == 451
    time.sleep(DELAY + 0.2)
    assert _attempt(mh)[0] == 250


def test_off_by_default(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory()
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    assert _attempt(mh)[0] == 250


def test_trusted_networks_and_submission_are_exempt(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, 'trusted_networks = ["127.0.0.9/32"]')
    assert _attempt(mh, source="127.0.0.9")[0] == 250
    with submission(mh) as c:
        c.sendmail(
            "alice@example.org", ["bob@example.org"], MSG.replace(b"ann@sender.test", b"alice@example.org")
        )
    assert len(mailbox(mh, "bob@example.org")) == 1
    assert _attempt(mh, source="127.0.0.10")[0] == 451  # the rest of the network is greylisted


@pytest.fixture(scope="module")
def allow_list(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    return dns_server_factory(a={"5.0.0.127.wl.test": "127.0.0.2"})  # client 127.0.0.5 is allow-listed


def test_dnswl_listed_client_is_exempt(mailhouse_factory, allow_list: DNSServer) -> None:  # type: ignore[no-untyped-def]
    mh = _server(mailhouse_factory, 'dnswl = ["wl.test"]', dns=allow_list.nameserver)
    assert _attempt(mh, source="127.0.0.5")[0] == 250
    assert _attempt(mh, source="127.0.0.6")[0] == 451  # not listed
