"""Mail from other servers gets SPF and DKIM checked against real DNS (dnsmasq on loopback)."""

from __future__ import annotations

import smtplib

from tests.helpers import mailbox


def test_spf_pass_fail_and_forged_results_removed(mailhouse_factory, dns_server_factory) -> None:  # type: ignore[no-untyped-def]
    dns = dns_server_factory(
        txt={"good.test": "v=spf1 ip4:127.0.0.1 -all", "bad.test": "v=spf1 ip4:192.0.2.1 -all"}
    )
    # [spam] off: the headerless SPF-failing message would score as Junk (issue 14); here only
    # the Authentication-Results matter, and both messages are read from INBOX
    extra = f'[dns]\nnameservers = ["{dns.nameserver}"]\n[spam]\nenabled = false\n'
    mh = mailhouse_factory(verify_inbound=True, extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    forged = b"Authentication-Results: mail.example.org; spf=pass smtp.mailfrom=bad.test\r\n"
    with smtplib.SMTP(*mh.addr("smtp")) as c:
        c.sendmail("someone@good.test", ["alice@example.org"], b"Subject: good\r\n\r\nhi\r\n")
        c.sendmail("someone@bad.test", ["alice@example.org"], forged + b"Subject: bad\r\n\r\nhi\r\n")
    good, bad = mailbox(mh, "alice@example.org")
    assert b"Authentication-Results: mail.example.org;\r\n\tspf=pass smtp.mailfrom=good.test" in good
    assert b"dkim=none" in good
    assert b"spf=fail smtp.mailfrom=bad.test" in bad
    assert b"spf=pass smtp.mailfrom=bad.test" not in bad  # the forged header is gone
