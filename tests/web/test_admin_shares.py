"""The web admin's shared-mailbox section (web/admin.py admin_shares_post, accounts/shared.py)."""

from __future__ import annotations

import html

from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import ADMIN, login, page_csrf


def test_admin_creates_shared_mailbox_and_sets_rights(web_mh: MailhouseProcess) -> None:
    c = login(web_mh, ADMIN)
    tok = page_csrf(c, "/admin/domain/example.org")
    r = c.post("/admin/shares", data={"csrf": tok, "action": "create", "owner": "helpdesk@example.org"})
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers
    r = c.post(
        "/admin/shares",
        data={
            "csrf": tok,
            "action": "set",
            "owner": "helpdesk@example.org",
            "identifier": "alice@example.org",
            "rights": "lrs",
        },
    )
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers
    page = html.unescape(c.get("/admin/domain/example.org").text)
    assert "helpdesk@example.org" in page and "(shared mailbox)" in page and "<code>lrs</code>" in page
    bad = c.post(
        "/admin/shares",
        data={
            "csrf": tok,
            "action": "set",
            "owner": "helpdesk@example.org",
            "identifier": "bob@example.org",
            "rights": "lrQ",
        },
    )
    assert "error=share" in bad.headers["location"]
    r = c.post(
        "/admin/shares",
        data={
            "csrf": tok,
            "action": "remove",
            "owner": "helpdesk@example.org",
            "identifier": "alice@example.org",
        },
    )
    assert r.status_code == 303
    assert "<code>lrs</code>" not in c.get("/admin/domain/example.org").text
    # the section is for administrators only
    a = login(web_mh, "alice@example.org")
    forbidden = a.post(
        "/admin/shares", data={"csrf": page_csrf(a), "action": "create", "owner": "x@example.org"}
    )
    assert forbidden.status_code == 403
