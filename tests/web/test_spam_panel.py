"""Issue 14 §4: the webmail's "Why is this in Junk?" panel, in Debian's Chromium with JavaScript
off (the panel and its "Not spam" are plain HTML under the strict CSP): every rule that fired with
its score and reason from the stored verdict, and "Not spam" moves to INBOX, trains ham and
allow-lists the sender in one click."""

from __future__ import annotations

from mailhouse.message.parse import parse_message
from mailhouse.store.api import ListKind
from mailhouse.web.mailview import our_queue_id
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.web.conftest import base_url, deliver, folder_ids, login, wait_for
from tests.web.test_browser import browser  # noqa: F401 - the module's Chromium fixture
from tests.web.test_spam_buttons import _spam_state, _uids

USER = "why@example.org"
SENDER = "promo@bulk.example"
# scores 5.9 with the default rules: Junk, not refused (RCVD_FORGED_OURS 3, MISSING_DATE 1.4,
# UNDISC_RECIPS 1, MISSING_MID 0.5)
JUNK = (
    "Received: from mail.example.org ([127.0.0.1])\n\tby bot with SMTP; Mon, 07 Dec 2026 10:00:00 +0000\n"
    f"From: Promo <{SENDER}>\nTo: undisclosed-recipients:;\nSubject: you won\n\nclaim it now\n"
)

HAM = (
    "From: Ann <ann@sender.test>\nTo: why@example.org\nSubject: lunch\n"
    "Date: Mon, 07 Dec 2026 10:00:00 +0000\nMessage-ID: <lunch.7@sender.test>\n\npick up at noon\n"
)


def test_why_in_junk_panel_and_not_spam_without_javascript(browser, web_mh: MailhouseProcess) -> None:  # noqa: F811
    web_mh.add_user(USER)
    deliver(web_mh, USER, JUNK, sender=SENDER)
    c = login(web_mh, USER)
    ids = folder_ids(c)
    inbox, junk = ids["INBOX"], ids["Junk"]
    assert wait_for(lambda: _uids(c, junk))
    uid = _uids(c, junk)[0]

    ctx = browser.new_context(base_url=base_url(web_mh), java_script_enabled=False)
    try:
        page = ctx.new_page()
        csp_errors: list[str] = []
        page.on(
            "console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None
        )
        page.goto("/login")
        page.fill("#username", USER)
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url("**/mail/**")
        resp = page.goto(f"/mail/{junk}/{uid}")
        assert resp is not None and "script-src 'self'" in (resp.headers.get("content-security-policy") or "")
        panel = page.locator("#spam-why")
        assert panel.locator("h2").inner_text() == "Why is this in Junk?"
        assert page.locator("#spam-score").inner_text() == "5.9"
        rows = {
            r.locator("td").nth(0).inner_text(): r.locator("td").nth(2).inner_text()
            for r in panel.locator("tbody tr").all()
        }
        assert set(rows) >= {"RCVD_FORGED_OURS", "MISSING_DATE", "UNDISC_RECIPS", "MISSING_MID"}, rows
        assert "came from our own server mail.example.org" in rows["RCVD_FORGED_OURS"]
        assert "+3.0" in panel.inner_text()
        panel.locator("button[value=notspam]").click()
        page.wait_for_url(f"**/mail/{junk}")
        assert csp_errors == []
    finally:
        ctx.close()
    assert _uids(c, junk) == [] and len(_uids(c, inbox)) == 1
    # trained as ham, and the sender is allowed from now on: one action
    assert _spam_state(web_mh, USER) == ((0, 1), [(SENDER, ListKind.ALLOW)])
    # back in INBOX it keeps its explanation, no longer "in Junk"
    moved = c.get(f"/mail/{inbox}/{_uids(c, inbox)[0]}").text
    assert '<h2 id="spam-why-title">Spam check</h2>' in moved and "RCVD_FORGED_OURS" in moved
    # a message scored as ham shows no panel
    deliver(web_mh, USER, HAM, sender="ann@sender.test")
    assert wait_for(lambda: len(_uids(c, inbox)) == 2)
    ham = c.get(f"/mail/{inbox}/{_uids(c, inbox)[1]}").text
    assert 'id="spam-why"' not in ham and "pick up at noon" in ham


def test_queue_id_is_read_only_from_our_own_topmost_received() -> None:
    ours = b"Received: from x ([192.0.2.1])\r\n\tby mail.example.org (Mailhouse) with ESMTP id ABC123;\r\n\tMon, 07 Dec 2026 10:00:00 +0000\r\n"
    other = b"Received: from y by relay.test; Mon, 07 Dec 2026 09:00:00 +0000\r\n"
    body = b"Subject: s\r\n\r\nb\r\n"
    assert our_queue_id(parse_message(ours + other + body), "mail.example.org") == "ABC123"
    # a sender's planted copy below another hop, or another host's, is never used
    assert our_queue_id(parse_message(other + ours + body), "mail.example.org") is None
    assert our_queue_id(parse_message(ours + body), "mx.other.test") is None
