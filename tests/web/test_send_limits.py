"""The webmail's sends count against the same per-account send rate as submission (issue 12
item 12): over the limit the compose page comes back with 429 and a clear message, the draft
(recipients, subject, body) kept in the form."""

from __future__ import annotations

from collections.abc import Callable

from tests.mailhouse_proc import MailhouseProcess

from .conftest import login, page_csrf


def test_webmail_send_rate_keeps_the_draft(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    mh = mailhouse_factory(extra="[limits]\nsend_rate = 3\n", services=("http", "smtp"))
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    mh.start()
    c = login(mh, "alice@example.org")
    try:
        codes = []
        for i in range(5):
            form = {
                "action": "send",
                "to": "bob@example.org",
                "subject": f"burst {i}",
                "body": f"unique body text {i}",
                "csrf": page_csrf(c),
            }
            r = c.post("/compose", data=form)
            codes.append(r.status_code)
        assert codes == [303, 303, 303, 429, 429], codes
        assert "Sending rate limit exceeded" in r.text
        assert "unique body text 4" in r.text and "burst 4" in r.text and "bob@example.org" in r.text
    finally:
        c.close()
