"""Sieve at delivery end to end: scripts uploaded over ManageSieve (STARTTLS) and activated, then
messages over real SMTP to port 25: fileinto, reject before the 250, redirect queued with X-Loop,
vacation once per sender, notify by mailto, and a failing script → INBOX + one notice."""

from __future__ import annotations

import smtplib

import pytest

from mailhouse.store.api import QueueEntry, Store
from tests.mailhouse_proc import MailhouseProcess
from tests.managesieve.conftest import Client, account, script_literal, sieve_server  # noqa: F401 (fixtures)
from tests.pop3server.conftest import with_store

SCRIPT = b"""require ["fileinto", "mailbox", "reject", "vacation"];
if header :contains "subject" "offer" { reject "No offers, thank you."; stop; }
if header :contains "subject" "report" { fileinto :create "Reports"; stop; }
if header :contains "subject" "forward" { redirect "boss@elsewhere.test"; stop; }
vacation :days 3 :subject "Away" "Back on Monday.";
"""


def _msg(rcpt: str, subject: str, sender: str = "carol@remote.test") -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\nHi.\r\n"
    ).encode()


def _upload(mh: MailhouseProcess, user: str, script: bytes) -> None:
    c = Client(mh.addr("managesieve"))
    try:
        c.response()
        c.starttls()
        assert c.login(user).startswith(b"OK")
        assert c.cmd(b"CHECKSCRIPT " + script_literal(script))[1].startswith(b"OK")
        assert c.cmd(b'PUTSCRIPT "main" ' + script_literal(script))[1].startswith(b"OK")
        assert c.cmd(b'SETACTIVE "main"')[1].startswith(b"OK")
    finally:
        c.close()


def _folder(mh: MailhouseProcess, address: str, name: str) -> list[bytes]:
    async def read(store: Store) -> list[bytes]:
        acc = await store.get_account(address)
        assert acc is not None
        mb = await store.get_mailbox(acc.id, name)
        if mb is None:
            return []
        return [await store.blobs.get(m.blob_key) for m in await store.list_messages(mb.id)]

    return with_store(mh, read)


def _queue(mh: MailhouseProcess) -> list[tuple[QueueEntry, bytes]]:
    async def read(store: Store) -> list[tuple[QueueEntry, bytes]]:
        return [(e, await store.blobs.get(e.blob_key)) for e in await store.list()]

    return with_store(mh, read)


def test_filters_at_port_25(sieve_server: MailhouseProcess, account: str) -> None:  # noqa: F811
    _upload(sieve_server, account, SCRIPT)
    with smtplib.SMTP(*sieve_server.addr("smtp"), timeout=30) as s:
        s.sendmail("carol@remote.test", [account], _msg(account, "monthly report"))
        with pytest.raises(smtplib.SMTPDataError) as ei:  # RFC 5429 §2.1: refused before the 250
            s.sendmail("carol@remote.test", [account], _msg(account, "special offer"))
        assert ei.value.smtp_code == 550 and b"No offers, thank you." in ei.value.smtp_error
        s.sendmail("carol@remote.test", [account], _msg(account, "please forward"))
        for n in (1, 2):  # vacation: one reply to carol however many messages
            s.sendmail("carol@remote.test", [account], _msg(account, f"hello {n}"))
    assert len(_folder(sieve_server, account, "Reports")) == 1
    inbox = _folder(sieve_server, account, "INBOX")
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in inbox) == [b"hello 1", b"hello 2"]
    queued = [(e, d) for e, d in _queue(sieve_server) if account.encode() in d]
    redirects = [(e, d) for e, d in queued if [r.address for r in e.recipients] == ["boss@elsewhere.test"]]
    assert len(redirects) == 1 and redirects[0][1].startswith(f"X-Loop: {account}\r\n".encode())
    replies = [(e, d) for e, d in queued if e.sender == "" and b"Subject: Away" in d]
    assert len(replies) == 1 and [r.address for r in replies[0][0].recipients] == ["carol@remote.test"]
    assert b"Auto-Submitted: auto-replied" in replies[0][1] and b"Back on Monday." in replies[0][1]


def test_failing_script_keeps_mail_in_inbox_and_notifies_once(
    sieve_server: MailhouseProcess,  # noqa: F811
    account: str,  # noqa: F811
) -> None:
    _upload(sieve_server, account, b'require "include";\r\ninclude "missing";\r\n')
    with smtplib.SMTP(*sieve_server.addr("smtp"), timeout=30) as s:
        for n in (1, 2):
            s.sendmail("carol@remote.test", [account], _msg(account, f"hello {n}"))
    inbox = _folder(sieve_server, account, "INBOX")
    assert sum(b"Subject: hello" in m for m in inbox) == 2  # never lost
    notices = [m for m in inbox if b"Subject: Your mail filter failed" in m]
    assert len(notices) == 1 and b"(main)" in notices[0] and b"not found" in notices[0]


def test_notify_over_smtp(sieve_server: MailhouseProcess, account: str) -> None:  # noqa: F811
    script = (
        b'require ["enotify", "variables"];\r\n'
        b'if header :matches "subject" "*" { set "s" "${1}"; }\r\n'
        b'notify :message "New: ${s}" "mailto:dave@elsewhere.test?from=evil@x.test&body=Look.";\r\n'
    )
    _upload(sieve_server, account, script)
    with smtplib.SMTP(*sieve_server.addr("smtp"), timeout=30) as s:
        s.sendmail("carol@remote.test", [account], _msg(account, "quarterly numbers"))
        # RFC 5436 §2.7: no notification about an auto-submitted message
        s.sendmail(
            "carol@remote.test", [account], b"Auto-Submitted: auto-replied\r\n" + _msg(account, "auto")
        )
    assert len(_folder(sieve_server, account, "INBOX")) == 2
    notes = [(e, d) for e, d in _queue(sieve_server) if b"Auto-Submitted: auto-notified" in d]
    assert len(notes) == 1
    e, d = notes[0]
    assert e.sender == "" and [r.address for r in e.recipients] == ["dave@elsewhere.test"]
    assert f"From: {account}\r\n".encode() in d and b"Subject: New: quarterly numbers\r\n" in d
    assert b"evil@" not in d and d.endswith(b"\r\n\r\nLook.\r\n")
