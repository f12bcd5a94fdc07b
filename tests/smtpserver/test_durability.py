"""A 250 means the message is on disk: SIGKILL right after it loses nothing, duplicates nothing."""

from __future__ import annotations

import re
import smtplib
import threading
from collections import Counter

from tests.helpers import mailbox
from tests.mailhouse_proc import MailhouseProcess


def test_sigkill_right_after_250(mailhouse: MailhouseProcess) -> None:
    c = smtplib.SMTP(*mailhouse.addr("smtp"))
    c.ehlo("client.test")
    c.mail("x@remote.test")
    c.rcpt("alice@example.org")
    code, _ = c.data(b"Subject: durable\r\nX-Test-Id: kill-1\r\n\r\nmust survive\r\n")
    assert code == 250
    mailhouse.kill9()  # no chance to flush anything after the reply
    c.close()
    mailhouse.start()
    msgs = mailbox(mailhouse, "alice@example.org")
    assert [m.count(b"X-Test-Id: kill-1") for m in msgs] == [1]


def test_sigkill_under_load_every_250_delivered_exactly_once(mailhouse: MailhouseProcess) -> None:
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int) -> None:
        i = 0
        try:
            c = smtplib.SMTP(*mailhouse.addr("smtp"), timeout=10)
            c.ehlo("client.test")
            while not stop.is_set() and i < 400:
                tid = f"t{n}-{i}"
                i += 1
                c.mail("x@remote.test")
                c.rcpt("alice@example.org")
                c.rcpt("bob@example.org")
                code, _ = c.data(f"Subject: load\r\nX-Test-Id: {tid}\r\n\r\nbody\r\n".encode())
                if code == 250:
                    with lock:
                        acked.append(tid)
        except (smtplib.SMTPException, OSError):
            return

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 60:
        threading.Event().wait(0.01)
    mailhouse.kill9()
    stop.set()
    for t in threads:
        t.join(20)
    mailhouse.start()
    for who in ("alice@example.org", "bob@example.org"):
        ids = Counter(
            m.group(1).decode()
            for msg in mailbox(mailhouse, who)
            if (m := re.search(rb"X-Test-Id: (\S+)", msg))
        )
        assert all(n == 1 for n in ids.values()), (
            f"duplicates for {who}: {[k for k, v in ids.items() if v > 1]}"
        )
        missing = [t for t in acked if t not in ids]
        assert not missing, f"{who} lost acknowledged messages {missing[:5]}"
