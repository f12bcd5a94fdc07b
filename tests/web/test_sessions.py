"""Server-side webmail sessions over HTTP (issue 19): a cookie taken before logout, an admin's
password reset or the account's removal no longer opens anything; error pages keep the
logged-in layout."""

from __future__ import annotations

import httpx

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.web.conftest import ADMIN, base_url, login, page_csrf


def _replay(mh: MailhouseProcess, cookie: str) -> httpx.Response:
    with httpx.Client(base_url=base_url(mh), cookies={"mh_session": cookie}, timeout=20) as c:
        return c.get("/", follow_redirects=False)


def _logged_in(mh: MailhouseProcess, cookie: str) -> bool:
    r = _replay(mh, cookie)
    assert r.status_code == 303, r.text
    return bool(r.headers["location"].startswith("/mail/"))


def test_logout_ends_the_session_for_a_replayed_cookie(web_mh: MailhouseProcess) -> None:
    web_mh.add_user("replay-http@example.org")
    c = login(web_mh, "replay-http@example.org")
    cookie = c.cookies["mh_session"]
    assert _logged_in(web_mh, cookie)
    r = c.post("/logout", data={"csrf": page_csrf(c)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = _replay(web_mh, cookie)
    assert r.headers["location"] == "/login"  # today: /mail/<inbox> for the cookie's 12 h
    # the store keeps the token's hash only: the cookie value is nowhere in it
    for f in web_mh.data_dir.glob("mailhouse.db*"):
        assert cookie.encode() not in f.read_bytes(), f


def test_admin_password_reset_and_removal_end_sessions(web_mh: MailhouseProcess) -> None:
    web_mh.add_user("reset@example.org")
    web_mh.add_user("gone@example.org")
    user = login(web_mh, "reset@example.org").cookies["mh_session"]
    gone = login(web_mh, "gone@example.org").cookies["mh_session"]
    admin = login(web_mh, ADMIN)
    tok = page_csrf(admin, "/admin")
    r = admin.post(
        "/admin/users",
        data={"csrf": tok, "action": "password", "address": "reset@example.org", "password": PASSWORD},
    )
    assert r.status_code == 303 and "error" not in r.headers["location"]
    assert not _logged_in(web_mh, user)  # even though the new password is the old one
    r = admin.post("/admin/users", data={"csrf": tok, "action": "remove", "address": "gone@example.org"})
    assert r.status_code == 303 and "error" not in r.headers["location"]
    assert not _logged_in(web_mh, gone)
    # the admin's own session is untouched, and logging in again works
    assert _logged_in(web_mh, admin.cookies["mh_session"])
    assert _logged_in(web_mh, login(web_mh, "reset@example.org").cookies["mh_session"])


def test_error_pages_keep_the_logged_in_layout(web_mh: MailhouseProcess) -> None:
    web_mh.add_user("lost@example.org")
    c = login(web_mh, "lost@example.org")
    for path in ("/mail/999999", "/no/such/page", "/admin"):
        r = c.get(path, headers={"accept": "text/html"})
        assert r.status_code in (403, 404), (path, r.status_code)
        assert "lost@example.org" in r.text and 'action="/logout"' in r.text, path
        assert 'href="/login"' not in r.text, path
        assert 'data-folder="INBOX"' in r.text, path  # the folder list is there
    # logged out, the same page is the public one
    with httpx.Client(base_url=base_url(web_mh), timeout=20) as anon:
        r = anon.get("/no/such/page", headers={"accept": "text/html"})
        assert r.status_code == 404 and 'href="/login"' in r.text


def test_an_open_event_stream_ends_after_logout(web_mh: MailhouseProcess) -> None:
    # the live-update stream of another tab or device stops at its next keep-alive (15 s)
    web_mh.add_user("stream@example.org")
    c = login(web_mh, "stream@example.org")
    cookie = c.cookies["mh_session"]
    timeout = httpx.Timeout(20, read=30)  # a keep-alive is due every 15 s
    with httpx.Client(base_url=base_url(web_mh), cookies={"mh_session": cookie}, timeout=timeout) as s:
        with s.stream("GET", "/events", headers={"accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines) == "retry: 3000"
            assert c.post("/logout", data={"csrf": page_csrf(c)}).status_code == 303
            for line in lines:  # ends instead of the next keep-alive; today: pings forever
                assert line != ": ping"
