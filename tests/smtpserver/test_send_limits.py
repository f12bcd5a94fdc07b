"""Per-account send rate and recipients-per-day limits on submission (issue 12 item 12), against
a real `mailhouse serve`: a compromised account's burst of sends is stopped at MAIL FROM with
``450 4.7.1``, its recipients beyond the daily budget at RCPT TO with ``452 4.5.3`` (RFC 5321
§4.5.3.1.10), trusted networks are exempt, and the default configuration stops the burst that
went through before (15 sends in 0.3 s; here 31 in a row against the default 30 a minute).
"""

from __future__ import annotations

import dataclasses
import smtplib
import time
from collections.abc import Callable

from mailhouse.config import Config
from tests.mailhouse_proc import MailhouseProcess

from .test_submission import inbox, submission

MSG = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: burst\r\n\r\nhello\r\n"


def _start(factory: Callable[..., MailhouseProcess], extra: str = "") -> MailhouseProcess:
    mh = factory(extra=extra + "[auth]\nallow_plaintext = true\n")
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    return mh.start()


def _burst(mh: MailhouseProcess, n: int) -> list[tuple[int, bytes]]:
    """N messages from alice, each its own MAIL FROM: the MAIL replies."""
    out = []
    with submission(mh) as c:
        for _ in range(n):
            code, text = c.mail("alice@example.org")
            out.append((code, text))
            if code == 250:
                assert c.rcpt("bob@example.org")[0] == 250
                assert c.data(MSG)[0] == 250
            else:
                c.rset()
    return out


def test_default_send_rate_stops_a_burst(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    mh = _start(mailhouse_factory)
    t0 = time.monotonic()
    replies = _burst(mh, 31)
    assert time.monotonic() - t0 < 60  # all inside one window, even on a loaded machine
    assert [c for c, _ in replies[:30]] == [250] * 30
    code, text = replies[30]
    assert code == 450 and text.startswith(b"4.7.1"), replies[30]  # RFC 3463 X.7.1, temporary
    assert len(inbox(mh, "bob@example.org")) == 30
    # another session of the same account is limited too (the counter is the account's, in the store)
    with submission(mh) as c:
        assert c.mail("alice@example.org")[0] == 450
        assert c.noop()[0] == 250  # the session goes on
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    assert defaults["send_rate"] == 30 and defaults["recipients_per_day"] == 1000  # as documented


def test_configured_send_rate_and_trusted_networks(
    mailhouse_factory: Callable[..., MailhouseProcess],
) -> None:
    mh = _start(mailhouse_factory, "[limits]\nsend_rate = 5\n")
    assert [c for c, _ in _burst(mh, 8)] == [250] * 5 + [450] * 3
    trusted = _start(mailhouse_factory, '[limits]\nsend_rate = 5\ntrusted_networks = ["127.0.0.0/8"]\n')
    assert [c for c, _ in _burst(trusted, 8)] == [250] * 8


def test_recipients_per_day(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    mh = _start(mailhouse_factory, "[limits]\nrecipients_per_day = 3\n")
    with submission(mh) as c:
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("bob@example.org")[0] == 250
        assert c.rcpt("alice@example.org")[0] == 250
        assert c.data(MSG)[0] == 250
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("bob@example.org")[0] == 250
        code, text = c.rcpt("alice@example.org")
        assert code == 452 and text.startswith(b"4.5.3"), (code, text)  # RFC 5321 §4.5.3.1.10
        assert c.data(MSG)[0] == 250  # the recipients accepted still get it
    with submission(mh) as c:
        try:
            c.sendmail("alice@example.org", ["bob@example.org"], MSG)
        except smtplib.SMTPRecipientsRefused as e:
            assert e.recipients["bob@example.org"][0] == 452
        else:
            raise AssertionError("a fourth recipient within the day was accepted")
    # other accounts are not affected
    with submission(mh, "bob@example.org") as c:
        assert not c.sendmail(
            "bob@example.org", ["alice@example.org"], MSG.replace(b"From: alice", b"From: bob")
        )


def test_admin_overrides_per_account(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    """`mailhouse user limits ADDRESS --send-rate N --recipients-per-day N` sets one account's own
    limits over `[limits]` (0: none; `default`: back to the configuration)."""
    mh = _start(mailhouse_factory, "[limits]\nsend_rate = 5\n")
    out = mh.cli(
        "user", "limits", "alice@example.org", "--send-rate", "2", "--recipients-per-day", "3"
    ).stdout
    assert "send_rate 2 per minute (set)" in out and "recipients_per_day 3 recipients a day (set)" in out
    assert [c for c, _ in _burst(mh, 4)] == [250, 250, 450, 450]  # 2, not the configured 5
    with submission(mh) as c:  # two recipients used; the third fits, the fourth does not
        mh.cli("user", "limits", "alice@example.org", "--send-rate", "0")  # no rate limit for alice
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("bob@example.org")[0] == 250
        assert c.rcpt("alice@example.org")[0] == 452
    out = mh.cli("user", "limits", "alice@example.org", "--send-rate", "default").stdout
    assert "send_rate 5 per minute (default)" in out and "recipients_per_day 3 recipients a day (set)" in out
    assert mh.cli("user", "limits", "nobody@example.org", check=False).returncode == 1
