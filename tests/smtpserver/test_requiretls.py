"""REQUIRETLS (RFC 8689 §4.1) on our listeners, against a real `mailhouse serve`: the keyword is
offered only once the session is TLS (after STARTTLS, or on 465), the MAIL parameter is refused in
the clear, and a submission's REQUIRETLS is kept with the message in the queue."""

from __future__ import annotations

import asyncio
import smtplib

from mailhouse.store import open_store
from tests.mailhouse_proc import MailhouseProcess
from tests.smtpserver.test_submission import inbox, submission, tls_context


def test_smtp_offers_requiretls_only_after_starttls(mailhouse: MailhouseProcess) -> None:
    with smtplib.SMTP(*mailhouse.addr("smtp"), local_hostname="client.test", timeout=30) as c:
        c.ehlo()
        assert c.has_extn("starttls") and not c.has_extn("requiretls")
        assert c.mail("carol@remote.test", ["REQUIRETLS"]) == (
            530,
            b"5.7.10 REQUIRETLS needs a TLS session (STARTTLS first)",
        )
        c.starttls(context=tls_context())
        c.ehlo()
        assert c.has_extn("requiretls")
        assert c.mail("carol@remote.test", ["REQUIRETLS"])[0] == 250
        assert c.rcpt("bob@example.org")[0] == 250
        assert c.data(b"Subject: over TLS\r\n\r\nrequiretls inbound\r\n")[0] == 250
    assert any(b"requiretls inbound" in m for m in inbox(mailhouse, "bob@example.org"))


def test_requiretls_takes_no_value(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        assert c.mail("alice@example.org", ["REQUIRETLS=YES"])[0] == 501


def test_implicit_tls_offers_requiretls(mailhouse: MailhouseProcess) -> None:
    with smtplib.SMTP_SSL(*mailhouse.addr("submissions"), context=tls_context(), timeout=30) as c:
        c.ehlo("client.test")
        assert c.has_extn("requiretls")


def test_submission_requiretls_is_kept_in_the_queue(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        c.sendmail(
            "alice@example.org",
            ["dave@remote.test"],
            b"From: alice@example.org\r\nSubject: s\r\n\r\nhush\r\n",
            mail_options=["REQUIRETLS"],
        )
        c.sendmail(
            "alice@example.org",
            ["erin@remote.test"],
            b"From: alice@example.org\r\nSubject: s\r\n\r\nplain\r\n",
        )

    async def flags() -> dict[str, str]:
        store = open_store(f"sqlite:///{mailhouse.data_dir}/mailhouse.db", mailhouse.data_dir)
        await store.open()
        try:
            return {e.recipients[0].address: e.extra.get("requiretls", "") for e in await store.list()}
        finally:
            await store.close()

    assert asyncio.run(flags()) == {"dave@remote.test": "1", "erin@remote.test": ""}
