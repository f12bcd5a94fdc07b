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


def test_sighup_reloads_the_auth_throttle(mailhouse_factory) -> None:  # type: ignore[no-untyped-def]
    """SIGHUP applies a new `[auth] ban_after` to the running node: before, the throttle kept the
    limits it was built with, so a ban switched on by a reload never came."""
    from tests.accounts.wire import Smtp

    auth = "[auth]\nallow_plaintext = true\nfailure_delay = 0.01\nmax_failure_delay = 0.02\n"
    mh = mailhouse_factory(services=("submission",), extra=auth + "ban_after = 0\n")
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    addr, ip = mh.addr("submission"), "127.0.0.1"

    def fail(times: int) -> None:
        for _ in range(times):
            c = Smtp(addr, ip)
            assert c.auth("alice@example.org", "wrong").startswith(b"535")
            c.close()

    fail(3)
    assert Smtp(addr, ip).greeting.startswith(b"220")  # ban_after = 0: never banned
    mh.cfgfile.write_text(mh.cfgfile.read_text().replace("ban_after = 0", "ban_after = 3"))
    mh.proc.send_signal(signal.SIGHUP)
    assert mh.wait_log("configuration reloaded")
    fail(1)  # the fourth failure in the window: banned
    assert Smtp(addr, ip).greeting.startswith(b"554 5.7.1")
    assert mh.stop(signal.SIGTERM) == 0
