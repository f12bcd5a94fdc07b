"""The webmail's sends count against the same per-account send rate as submission (issue 12
item 12): over the limit the compose page comes back with 429 and a clear message, the draft
(recipients, subject, body) kept in the form."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

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


def test_admin_sets_an_accounts_send_rate_on_the_domain_page(
    mailhouse_factory: Callable[..., MailhouseProcess],
) -> None:
    """The web admin's user row edits the account's own send limits (delivery/sendlimits.py):
    shown in the row, applied to the next send; emptied, the configured limit is back."""
    mh = mailhouse_factory(extra="[limits]\nsend_rate = 30\n", services=("http", "smtp"))
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    mh.add_user("admin@example.org", PASSWORD, "--admin")
    mh.start()
    a = login(mh, "admin@example.org")
    c = login(mh, "alice@example.org")
    try:
        form = {
            "action": "sendlimits",
            "address": "alice@example.org",
            "send_rate": "1",
            "recipients_per_day": "",
        }
        r = a.post("/admin/users", data={**form, "csrf": page_csrf(a, "/admin")})
        assert r.status_code == 303 and "error" not in r.headers["location"]
        page = a.get("/admin/domain/example.org").text
        assert re.search(r'name="send_rate" size="4" value="1"', page), page
        assert "send_rate 1 per minute (set)" in mh.cli("user", "limits", "alice@example.org").stdout
        codes = []
        for i in range(2):
            mail = {"action": "send", "to": "bob@example.org", "subject": f"s{i}", "body": "x"}
            codes.append(c.post("/compose", data={**mail, "csrf": page_csrf(c)}).status_code)
        assert codes == [303, 429], codes
        r = a.post("/admin/users", data={**form, "send_rate": "", "csrf": page_csrf(a, "/admin")})
        assert "send_rate 30 per minute (default)" in mh.cli("user", "limits", "alice@example.org").stdout
    finally:
        a.close()
        c.close()
