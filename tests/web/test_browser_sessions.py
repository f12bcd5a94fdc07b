"""Browser tests for what issue 19 found broken: a cookie replayed after logout, the live
refresh of the list (Move menu, Move), a false "New mail" toast after login, error pages for a
logged-in user. Debian's Chromium driven by Playwright, as tests/web/test_browser.py."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from tests.web.conftest import base_url, deliver, folder_ids, login, page_csrf, wait_for
from tests.web.test_browser import browser, new_page  # noqa: F401  (the fixtures)


def test_cookie_taken_before_logout_no_longer_opens_the_inbox(new_page, web_mh, browser):  # noqa: F811
    web_mh.add_user("replay@example.org")
    page = new_page("replay@example.org")
    saved = page.context.cookies()
    assert any(c["name"] == "mh_session" for c in saved)
    page.click("details.usermenu summary")
    page.click("text=Log out")
    page.wait_for_url("**/login")
    ctx = browser.new_context(base_url=base_url(web_mh))
    try:
        ctx.add_cookies(saved)  # the cookie as it was before the logout
        again = ctx.new_page()
        again.goto("/")
        assert urlparse(again.url).path == "/login"
        assert again.locator("#username").count() == 1
    finally:
        ctx.close()


def test_live_refresh_keeps_the_move_menu_and_move_works(new_page, web_mh):  # noqa: F811
    user = "live@example.org"
    web_mh.add_user(user)
    c = login(web_mh, user)
    assert c.post("/folders", data={"csrf": page_csrf(c), "name": "Projects"}).status_code == 303
    page = new_page(user)
    statuses: list[tuple[str, int]] = []
    page.on("response", lambda r: statuses.append((urlparse(r.url).path, r.status)))
    page.wait_for_timeout(700)  # EventSource connected
    deliver(web_mh, user, f"From: x@remote.test\nTo: {user}\nSubject: Arrived live\n\nbody\n")
    row = page.locator("li.msg", has_text="Arrived live")
    row.wait_for()  # the list was re-rendered by the live refresh
    names = page.locator("#listform select[name=dest] option").all_inner_texts()
    assert "Projects" in names, names  # today: an empty menu
    row.locator("input[name=uid]").check()
    page.select_option("#listform select[name=dest]", label="Projects")
    page.click("#listform button[value=move]")
    proj = folder_ids(c)["Projects"]
    assert wait_for(lambda: "Arrived live" in c.get(f"/mail/{proj}").text), statuses
    assert not [s for s in statuses if s[1] >= 400], statuses  # today: the Move answers 404


def test_no_new_mail_toast_after_login_for_mail_that_came_before(new_page, web_mh):  # noqa: F811
    user = "toast@example.org"
    web_mh.add_user(user)
    first = new_page(user)  # the feed is live once, then every page closes
    first.context.close()
    c = login(web_mh, user)
    deliver(web_mh, user, f"From: x@remote.test\nTo: {user}\nSubject: While away\n\nbody\n")
    assert wait_for(lambda: "While away" in c.get("/", follow_redirects=True).text)
    page = new_page(user)
    page.locator("li.msg", has_text="While away").wait_for()
    # the feed's poll interval is 50 ms: a replayed change would have refreshed the page by now
    page.wait_for_timeout(1500)
    toast = page.locator("#toast")
    assert toast.is_hidden() or "New mail" not in toast.inner_text()
    assert len(page.locator("#listform select[name=dest] option").all_inner_texts()) > 0


def test_error_page_for_a_logged_in_user_has_the_logged_in_layout(new_page, web_mh):  # noqa: F811
    user = "errors@example.org"
    web_mh.add_user(user)
    page = new_page(user)
    for path in ("/mail/999999", "/no/such/page"):
        resp = page.goto(path)
        assert resp is not None and resp.status == 404
        assert page.locator("details.usermenu summary").inner_text() == user
        assert page.locator("#compose-link").is_visible()
        assert page.locator("a[href='/login']").count() == 0
        assert re.search(r"404", page.locator("main").inner_text())


def test_settings_page_from_the_nav(new_page, web_mh):  # noqa: F811
    user = "prefs@example.org"
    web_mh.add_user(user)
    page = new_page(user)
    page.click("details.usermenu summary")
    page.click("#settings-link")
    page.wait_for_url("**/settings")
    page.fill("#name", "Pat Prefs")
    page.fill("#signature", "Pat")
    page.click("#save-profile")
    page.wait_for_selector("#settings-notice")
    assert page.input_value("#name") == "Pat Prefs"
    assert page.locator("#sessions tr.this").count() == 1
    page.click("#compose-link")
    page.wait_for_url("**/compose")
    assert page.input_value("textarea#body").endswith("-- \nPat\n")
    page.goto("/settings")
    page.click("#logout-all")
    page.wait_for_url("**/login")
    page.goto("/")
    assert urlparse(page.url).path == "/login"
