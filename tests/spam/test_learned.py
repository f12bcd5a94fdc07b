"""The recipients' own lists and Bayes classifier inside the port-25 verdict (spam/learned.py,
issue 14 §3): a real `mailhouse serve`, lists and training written to its store, mail over SMTP,
the result read from the delivered message's X-Spam-Status and the mailbox it landed in."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from mailhouse.accounts.admin import Admin
from mailhouse.spam.bayes import Bayes
from mailhouse.store.api import ListKind
from tests.helpers import mailbox
from tests.imapserver.server_helpers import start_server
from tests.mailhouse_proc import MailhouseProcess
from tests.spam.corpus import corpus


def _msg(sender: str, subject: str, body: bytes, n: int) -> bytes:
    return (
        (
            f"From: <{sender}>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{n}@sender.test>\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


def _send(mh: MailhouseProcess, sender: str, msg: bytes) -> int:
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
        c.ehlo("mail.sender.test")
        c.mail(sender)
        c.rcpt("alice@example.org")
        code, _ = c.data(msg)
    return code


def _status(msg: bytes) -> bytes:
    head = msg.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return next(line for line in head.split(b"\r\n") if line.startswith(b"X-Spam-Status:"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(
        tmp_path_factory.mktemp("learned"),
        extra="[spam]\nbayes_min_spam = 5\nbayes_min_ham = 5\n",
        users=("alice",),
    )
    try:
        yield mh
    finally:
        mh.stop()


def _set_list(mh: MailhouseProcess, entry: str, kind: ListKind) -> None:
    async def run(a: Admin) -> None:
        acc = await a.store.get_account("alice@example.org")
        assert acc is not None
        await a.store.set_sender_list(acc.id, entry, kind)

    mh.admin(run)


def test_a_blocked_sender_goes_to_junk_with_the_reason(server: MailhouseProcess) -> None:
    _set_list(server, "foe.test", ListKind.BLOCK)
    assert _send(server, "joe@foe.test", _msg("joe@foe.test", "hello", b"Hi Alice.", 1)) == 250
    (msg,) = [m for m in mailbox(server, "alice@example.org", "Junk") if b"joe@foe.test" in m]
    assert b"USER_BLOCKED" in _status(msg)


def test_an_allowed_sender_gets_the_bonus(server: MailhouseProcess) -> None:
    _set_list(server, "pal@friend.test", ListKind.ALLOW)
    assert _send(server, "pal@friend.test", _msg("pal@friend.test", "lunch", b"At noon?", 2)) == 250
    (msg,) = [m for m in mailbox(server, "alice@example.org") if b"pal@friend.test" in m]
    assert b"USER_ALLOWED" in _status(msg) and b"USER_BLOCKED" not in _status(msg)


def test_the_recipients_trained_classifier_scores_the_message(server: MailhouseProcess) -> None:
    spams, hams = corpus(7, 41)

    async def train(a: Admin) -> None:
        acc = await a.store.get_account("alice@example.org")
        assert acc is not None
        bayes = Bayes(a.store, min_spam=5, min_ham=5)
        try:
            for s, h in zip(spams[:40], hams[:40], strict=True):
                await bayes.train(acc.id, s, spam=True)
                await bayes.train(acc.id, h, spam=False)
        finally:
            bayes.close()

    server.admin(train)
    assert _send(server, "promo@bulk.example", spams[40]) == 250
    assert _send(server, "colleague@example.org", hams[40]) == 250
    got = mailbox(server, "alice@example.org") + mailbox(server, "alice@example.org", "Junk")

    def delivered(sent: bytes) -> bytes:
        mid = next(line for line in sent.split(b"\r\n") if line.startswith(b"Message-ID:"))
        return next(m for m in got if mid in m)

    assert b"BAYES_9" in _status(delivered(spams[40]))  # BAYES_95 / BAYES_99: like the trained spam
    ham_status = _status(delivered(hams[40]))
    assert b"BAYES_00" in ham_status or b"BAYES_01" in ham_status or b"BAYES_05" in ham_status
