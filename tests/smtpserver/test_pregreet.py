"""The pregreet test (issue 12 item 8) over real sockets: postscreen's multi-line greeting, a
passing client remembered (per process and in the store, for every node), a pregreeter refused
and remembered, trusted networks exempt, and real MTAs (swaks, Postfix) still delivering.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import MailhouseProcess

WAIT = 2.0  # seconds: long enough that "no wait" is clearly visible on a loaded machine
PREGREET = f"[server]\nsmtp_pregreet_wait = {WAIT}\n"


def _start(factory: Callable[..., MailhouseProcess], extra: str = PREGREET, **kw: Any) -> MailhouseProcess:
    mh = factory(extra=extra, **kw)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    return mh.start()


def _greeting(addr: tuple[str, int]) -> tuple[RawSMTP, list[bytes], float]:
    """Connect and read the whole greeting: (session, its lines, seconds until its last line)."""
    t0 = time.monotonic()
    s = RawSMTP(addr)
    lines = [s.line()]
    while lines[-1][3:4] == b"-":
        lines.append(s.line())
    return s, lines, time.monotonic() - t0


def test_first_line_at_once_final_line_after_the_wait(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    t0 = time.monotonic()
    s = RawSMTP(mh.addr("smtp"))
    # postscreen_greet_banner: RFC 5321 §4.2.1 multi-line reply, first line now
    assert s.line() == b"220-mail.example.org ESMTP"
    first = time.monotonic() - t0
    assert s.line() == b"220 mail.example.org ESMTP Mailhouse"
    final = time.monotonic() - t0
    assert first < WAIT / 2, first
    assert final >= WAIT * 0.9, final
    assert s.cmd(b"EHLO client.test").startswith(b"250-mail.example.org")


def test_passing_client_is_greeted_at_once_next_time(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    s, lines, took = _greeting(mh.addr("smtp"))
    assert took >= WAIT * 0.9 and len(lines) == 2, (took, lines)
    s.cmd(b"QUIT")
    s.close()
    for _ in range(3):  # remembered: one line, no wait (well below the pregreet wait)
        s, lines, took = _greeting(mh.addr("smtp"))
        assert lines == [b"220 mail.example.org ESMTP Mailhouse"], lines
        assert took < WAIT / 4, took
        assert s.cmd(b"HELO client.test") == b"250 mail.example.org"
        s.close()


def test_pass_survives_restart_through_the_store(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    s, lines, took = _greeting(mh.addr("smtp"))
    assert len(lines) == 2
    s.close()
    mh.stop()
    mh.start()  # a new process: empty cache, the mark is read from the store
    s, lines, took = _greeting(mh.addr("smtp"))
    assert lines == [b"220 mail.example.org ESMTP Mailhouse"] and took < WAIT / 4, (lines, took)
    s.close()


def test_client_talking_before_the_final_line_is_refused(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    s = RawSMTP(mh.addr("smtp"))
    assert s.line() == b"220-mail.example.org ESMTP"
    s.send(b"EHLO bot.test\r\n")  # a bot that reads one line and talks
    assert s.line() == b"554 5.5.1 Error: you talked before the greeting"
    assert s.closed()
    # remembered as failing: refused at once, even when it now waits politely
    t0 = time.monotonic()
    s = RawSMTP(mh.addr("smtp"))
    assert s.line() == b"554 5.5.1 Error: you talked before the greeting"
    assert time.monotonic() - t0 < WAIT / 2
    assert s.closed()
    assert mailbox(mh, "alice@example.org") == []


def test_client_talking_at_once_is_refused(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    s = RawSMTP(mh.addr("smtp"))
    s.send(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
    assert s.line() == b"220-mail.example.org ESMTP"
    assert s.line() == b"554 5.5.1 Error: you talked before the greeting"
    assert s.closed()


def test_fail_ttl_zero_lets_it_retry(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory, extra=PREGREET + "smtp_pregreet_fail_ttl = 0\n")
    s = RawSMTP(mh.addr("smtp"))
    s.send(b"HELO bot.test\r\n")
    assert s.reply().endswith(b"554 5.5.1 Error: you talked before the greeting")
    s, lines, took = _greeting(mh.addr("smtp"))
    assert len(lines) == 2, lines  # tested again, and passes
    s.close()


def test_trusted_networks_are_exempt(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory, extra=PREGREET + '[limits]\ntrusted_networks = ["127.0.0.0/8"]\n')
    s, lines, took = _greeting(mh.addr("smtp"))
    assert lines == [b"220 mail.example.org ESMTP Mailhouse"] and took < WAIT / 4, (lines, took)
    s.close()


def test_swaks_delivers_through_the_test(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    host, port = mh.addr("smtp")
    outs = []
    for i in range(2):  # tested, then remembered
        r = subprocess.run(
            ["swaks", "--server", host, "--port", str(port), "--from", "s@remote.test"]
            + ["--to", "alice@example.org", "--header", f"Subject: swaks {i}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as", r.stdout)
        outs.append(r.stdout)
    assert "220-mail.example.org ESMTP" in outs[0]
    assert "220-" not in outs[1]
    assert len(mailbox(mh, "alice@example.org")) == 2


def test_postfix_relays_through_the_test(mailhouse_factory, postfix_factory) -> None:  # type: ignore[no-untyped-def]
    mh = _start(mailhouse_factory)
    host, port = mh.addr("smtp")
    pf = postfix_factory(
        mode="relay", host="127.0.0.2", relay_to=f"{host}:{port}", relay_domains=["example.org"]
    )
    with smtplib.SMTP(pf.host, pf.port) as c:
        c.sendmail("s@remote.test", ["alice@example.org"], b"Subject: via postfix\r\n\r\nhi\r\n")
    deadline = time.monotonic() + 60
    while not mailbox(mh, "alice@example.org") and time.monotonic() < deadline:
        time.sleep(0.2)
    (msg,) = mailbox(mh, "alice@example.org")
    assert b"Subject: via postfix" in msg
