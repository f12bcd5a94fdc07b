"""Never an open relay: every address form that could route elsewhere is refused."""

from __future__ import annotations

import pytest

from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import MailhouseProcess


@pytest.mark.parametrize(
    ("rcpt", "expected"),
    [
        (b"<victim@elsewhere.test>", b"554 5.7.1"),  # plain relay attempt
        (b"<victim%elsewhere.test@example.org>", b"554 5.7.1"),  # percent hack
        (b'<"victim@elsewhere.test"@example.org>', b"554 5.7.1"),  # quoted local part
        (b"<@example.org:victim@elsewhere.test>", b"554 5.7.1"),  # source route
        (b"<elsewhere.test!victim@example.org>", b"554 5.7.1"),  # bang path
        (b"<alice@example.org.>", b"554 5.7.1"),  # trailing dot
        (b"<alice@[127.0.0.1]>", b"554 5.7.1"),  # address literal
        (b"<victim@elsewhere.test.>", b"554 5.7.1"),
        (b"<nobody@example.org>", b"550 5.1.1"),  # unknown local user
        (b"<alice@EXAMPLE.ORG>", b"250 2.1.5"),  # domains are case-insensitive
    ],
)
def test_relay_forms(mailhouse: MailhouseProcess, rcpt: bytes, expected: bytes) -> None:
    s = RawSMTP(mailhouse.addr("smtp"))
    s.reply()
    s.cmd(b"EHLO attacker.test")
    assert s.cmd(b"MAIL FROM:<spammer@attacker.test>") == b"250 2.1.0 Ok"
    assert s.cmd(b"RCPT TO:" + rcpt).startswith(expected)
    s.cmd(b"QUIT")


def test_no_relay_even_after_starttls_and_no_auth_on_port_25(mailhouse: MailhouseProcess) -> None:
    import smtplib
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(*mailhouse.addr("smtp")) as c:
        c.starttls(context=ctx)
        c.ehlo("attacker.test")
        assert not c.has_extn("auth")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            c.sendmail("spammer@attacker.test", ["victim@elsewhere.test"], b"Subject: spam\r\n\r\n.\r\n")
        assert ei.value.recipients["victim@elsewhere.test"][0] == 554
    assert mailbox(mailhouse, "alice@example.org") == []
