"""`mailhouse serve` as a process: SIGHUP reloads, SIGTERM drains and exits 0, workers share ports."""

from __future__ import annotations

import signal
import smtplib
import time

from tests.helpers import mailbox


def _size(mh) -> int:  # type: ignore[no-untyped-def]
    with smtplib.SMTP(*mh.addr("smtp")) as c:
        c.ehlo("client.test")
        return int(c.esmtp_features["size"])


def test_sighup_reloads_and_sigterm_exits_cleanly(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory(services=("smtp",), extra="[limits]\nmax_message_size = 100000\n")
    mh.add_domain("example.org")
    mh.start()
    assert _size(mh) == 100000
    mh.cfgfile.write_text(
        mh.cfgfile.read_text().replace("max_message_size = 100000", "max_message_size = 200000")
    )
    mh.proc.send_signal(signal.SIGHUP)
    assert mh.wait_log("configuration reloaded")
    assert _size(mh) == 200000
    # a broken file on reload keeps the running configuration
    mh.cfgfile.write_text(
        mh.cfgfile.read_text().replace("max_message_size = 200000", "max_message_size = -1")
    )
    mh.proc.send_signal(signal.SIGHUP)
    assert mh.wait_log("reload failed")
    assert _size(mh) == 200000
    assert mh.stop(signal.SIGTERM) == 0


def test_two_workers_share_the_port(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    mh = mailhouse_factory(services=("smtp",), extra="[server]\nworkers = 2\n")
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    for i in range(20):
        with smtplib.SMTP(*mh.addr("smtp")) as c:
            c.sendmail("x@remote.test", ["alice@example.org"], f"Subject: w{i}\r\n\r\nx\r\n".encode())
    assert len(mailbox(mh, "alice@example.org")) == 20
    t0 = time.time()
    assert mh.stop(signal.SIGTERM) == 0
    assert time.time() - t0 < 15
