"""SRS end to end (issue 15 item 6): a real `mailhouse serve` forwards through an alias to a
Postfix peer, real DNS (dnsmasq) and a scriptable SMTP peer as the original sender's MX.

  fwd.test     Mailhouse F (mx.fwd.test, 127.0.0.61): alias fwd@fwd.test → carol@pf2.test;
               SRS domain = its host name mx.fwd.test, SPF "ip4:127.0.0.61"
  pf2.test     Postfix (mx.pf2.test, 127.0.0.62), local delivery to maildirs
  orig.test    FakeSMTP (mx.orig.test, 127.0.0.63): the original sender's MX, SPF "ip4:127.0.0.63"
  first.test   the same FakeSMTP: another forwarder whose SRS0 address F wraps as SRS1
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import secrets
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse.delivery.srs import SECRET_NAME, SrsCodec
from mailhouse.mailauth import spf
from mailhouse.store import open_store
from tests.mailhouse_proc import MailhouseProcess
from tests.queue.test_outbound_e2e import mh_extra, port25_lock, wait_until  # noqa: F401 (fixture)
from tests.smtpclient.fake_server import FakeSMTP

pytestmark = pytest.mark.slow

F_IP, PF_IP, ORIG_IP = "127.0.0.61", "127.0.0.62", "127.0.0.63"


class Lab:
    def __init__(self, f: MailhouseProcess, postfix: Any, orig: FakeSMTP, dns: Any) -> None:
        self.f, self.postfix, self.orig, self.dns = f, postfix, orig, dns

    def codec(self, clock: float | None = None) -> SrsCodec:
        """F's codec, with the secret read from its store (to make addresses as F would)."""

        async def secret() -> bytes:
            store = open_store(f"sqlite:///{self.f.data_dir / 'mailhouse.db'}", self.f.data_dir)
            await store.open()
            try:
                return bytes.fromhex(await store.shared_secret(SECRET_NAME.format(1), "00"))
            finally:
                await store.close()

        key = asyncio.run(secret())
        now = time.time() if clock is None else clock
        return SrsCodec("mx.fwd.test", [key], 21, clock=lambda: now)


@pytest.fixture(scope="module")
def lab(
    port25_lock: None,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    dns_server_factory: Any,
    postfix_factory: Any,
) -> Iterator[Lab]:
    dns = dns_server_factory(
        mx={
            "pf2.test": [(10, "mx.pf2.test")],
            "orig.test": [(10, "mx.orig.test")],
            "first.test": [(10, "mx.orig.test")],
            "fwd.test": [(10, "mx.fwd.test")],
        },
        a={"mx.fwd.test": F_IP, "mx.pf2.test": PF_IP, "mx.orig.test": ORIG_IP},
        txt={
            "mx.fwd.test": f"v=spf1 ip4:{F_IP} -all",  # the SRS domain: F's outbound address
            "orig.test": f"v=spf1 ip4:{ORIG_IP} -all",  # only the original sender's own server
        },
    )
    root = tmp_path_factory.mktemp("srs")
    f = MailhouseProcess(
        root,
        host=F_IP,
        hostname="mx.fwd.test",
        services=("smtp",),
        ports={"smtp": 25},
        extra=mh_extra(dns) + f'source_address = "{F_IP}"\n',
    )
    f.add_domain("fwd.test")
    f.cli("alias", "add", "fwd@fwd.test", "carol@pf2.test")
    orig = FakeSMTP(ORIG_IP, 25).start_thread()
    postfix = postfix_factory(mode="local", host=PF_IP, port=25, domains=["pf2.test"])
    f.start()
    try:
        yield Lab(f, postfix, orig, dns)
    finally:
        f.stop()
        orig.stop_thread()
        assert not dns.forwarded()


def send(lab: Lab, sender: str, rcpt: str, body: str) -> None:
    with smtplib.SMTP(F_IP, 25, local_hostname="mx.orig.test", timeout=20) as s:
        s.sendmail(sender, [rcpt], body)


def delivered_with(lab: Lab, token: str) -> bytes:
    def look() -> bytes | None:
        for p in lab.postfix.delivered("carol@pf2.test"):
            data = Path(p).read_bytes()
            if token.encode() in data:
                return data
        return None

    return wait_until(look, timeout=45, what="the forwarded copy at Postfix")  # type: ignore[no-any-return]


def return_path(raw: bytes) -> str:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    return str(m["Return-Path"]).strip("<>")


def test_forwarded_mail_carries_srs_sender_spf_passes_and_bounce_returns(lab: Lab) -> None:
    token = secrets.token_hex(6)
    send(
        lab,
        "alice@orig.test",
        "fwd@fwd.test",
        f"From: alice@orig.test\r\nSubject: {token}\r\n\r\n{token}\r\n",
    )
    raw = delivered_with(lab, token)
    srs = return_path(raw)
    assert re.fullmatch(r"SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=orig\.test=alice@mx\.fwd\.test", srs), srs
    # Postfix saw F connect from its source address; SPF for the SRS sender passes from there,
    # where the original sender would have failed (the reason for SRS)
    assert f"[{F_IP}]" in raw.decode("ascii", "replace")
    assert spf.check(F_IP, srs, "mx.fwd.test", [(lab.dns.host, lab.dns.port)]).result == "pass"
    assert spf.check(F_IP, "alice@orig.test", "mx.fwd.test", [(lab.dns.host, lab.dns.port)]).result == "fail"

    # the destination bounces to the SRS address: F verifies it and sends the bounce on to alice
    n0 = len(lab.orig.transactions)
    dsn = f"From: MAILER-DAEMON@mx.pf2.test\r\nSubject: Undelivered {token}\r\n\r\nbounce {token}\r\n"
    with smtplib.SMTP(F_IP, 25, local_hostname="mx.pf2.test", timeout=20) as s:
        s.sendmail("", [srs], dsn)
    tx = wait_until(
        lambda: [t for t in lab.orig.transactions[n0:] if token.encode() in t.data],
        what="bounce at orig.test",
    )[0]
    assert tx.accepted == ["alice@orig.test"] and tx.mail.startswith(b"MAIL FROM:<>")


def test_srs_address_case_folded_still_verifies(lab: Lab) -> None:
    srs = lab.codec().forward("bob@orig.test")
    with smtplib.SMTP(F_IP, 25, local_hostname="mx.pf2.test", timeout=20) as s:
        s.ehlo()
        assert s.mail("")[0] == 250
        code, msg = s.rcpt(srs.lower())
    assert code == 250, msg


@pytest.mark.parametrize("how", ["forged", "expired", "malformed"])
def test_forged_or_expired_srs_refused_at_rcpt(lab: Lab, how: str) -> None:
    if how == "forged":
        good = lab.codec().forward("alice@orig.test")
        addr = good.replace("=alice@", "=mallory@")  # the hash no longer covers it
    elif how == "expired":
        addr = lab.codec(clock=time.time() - 30 * 86400).forward("alice@orig.test")
    else:
        addr = "SRS0=zz@mx.fwd.test"
    with smtplib.SMTP(F_IP, 25, local_hostname="mx.pf2.test", timeout=20) as s:
        s.ehlo()
        assert s.mail("")[0] == 250
        code, msg = s.rcpt(addr)
    assert code == 550 and msg.startswith(b"5.1.1"), (code, msg)


def test_srs1_double_forward_and_its_bounce(lab: Lab) -> None:
    token = secrets.token_hex(6)
    other = SrsCodec("first.test", [b"first-forwarder-secret"], 21)
    srs0 = other.forward("alice@orig.test")  # alice's mail already went through first.test
    send(lab, srs0, "fwd@fwd.test", f"From: alice@orig.test\r\nSubject: {token}\r\n\r\n{token}\r\n")
    srs1 = return_path(delivered_with(lab, token))
    local = srs0.split("@")[0]
    assert srs1.startswith("SRS1=") and srs1.endswith(f"=first.test=={local[5:]}@mx.fwd.test"), srs1
    # a bounce to the SRS1 address goes straight back to the first forwarder
    n0 = len(lab.orig.transactions)
    with smtplib.SMTP(F_IP, 25, local_hostname="mx.pf2.test", timeout=20) as s:
        s.sendmail("", [srs1], f"Subject: bounce {token}\r\n\r\n{token}\r\n")
    tx = wait_until(
        lambda: [t for t in lab.orig.transactions[n0:] if token.encode() in t.data],
        what="bounce at first.test",
    )[0]
    assert tx.accepted == [srs0] and tx.mail.startswith(b"MAIL FROM:<>")
    assert other.reverse(srs0) == "alice@orig.test"
