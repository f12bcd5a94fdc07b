"""Sieve at delivery end to end: a script uploaded over ManageSieve (STARTTLS) and activated,
then a message over real SMTP to port 25. Until the Sieve language is merged every script fails
to run (delivery.sieve.UnavailableRunner): the message must still land in INBOX, and the user gets
one notice however many messages arrive."""

from __future__ import annotations

import smtplib

from mailhouse.store.api import Store
from tests.mailhouse_proc import MailhouseProcess
from tests.managesieve.conftest import Client, account, script_literal, sieve_server  # noqa: F401 (fixtures)
from tests.pop3server.conftest import with_store

MESSAGE = b"From: carol@remote.test\r\nTo: {rcpt}\r\nSubject: hello {n}\r\nMessage-ID: <e2e{n}@remote.test>\r\n\r\nHi.\r\n"


def _inbox(mh: MailhouseProcess, address: str) -> list[bytes]:
    async def read(store: Store) -> list[bytes]:
        acc = await store.get_account(address)
        assert acc is not None
        mb = await store.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        return [await store.blobs.get(m.blob_key) for m in await store.list_messages(mb.id)]

    return with_store(mh, read)


def test_failing_script_keeps_mail_in_inbox_and_notifies_once(
    sieve_server: MailhouseProcess,  # noqa: F811
    account: str,  # noqa: F811
) -> None:
    c = Client(sieve_server.addr("managesieve"))
    try:
        c.response()
        c.starttls()
        assert c.login(account).startswith(b"OK")
        script = b'require "fileinto";\r\nfileinto "Elsewhere";\r\n'
        assert c.cmd(b'PUTSCRIPT "main" ' + script_literal(script))[1].startswith(b"OK")
        assert c.cmd(b'SETACTIVE "main"')[1].startswith(b"OK")
    finally:
        c.close()
    with smtplib.SMTP(*sieve_server.addr("smtp"), timeout=30) as s:
        for n in (1, 2):
            s.sendmail(
                "carol@remote.test",
                [account],
                MESSAGE.replace(b"{rcpt}", account.encode()).replace(b"{n}", b"%d" % n),
            )
    inbox = _inbox(sieve_server, account)
    assert sum(b"Subject: hello" in m for m in inbox) == 2  # never lost
    notices = [m for m in inbox if b"Subject: Your mail filter failed" in m]
    assert len(notices) == 1 and b"(main)" in notices[0]
