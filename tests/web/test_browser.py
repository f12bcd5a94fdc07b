"""Browser tests: Debian's Chromium driven by Playwright against a real `mailhouse serve`.

Covers login, send, receive, a new message appearing live (SSE), reply with an
attachment, search, move to a folder, delete, the phone layout, and the XSS corpus
rendered without any dialog, script or request leaving the server. Takes the README
screenshot (docs/screenshots/webmail.png).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD
from tests.web.conftest import base_url, deliver
from tests.web.xss_corpus import corpus_message

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "webmail.png"

from playwright import sync_api  # noqa: E402 - Debian's chromium comes from scripts/install-test-deps.sh


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def new_page(browser, web_mh):
    contexts = []

    def make(user: str, viewport=None):
        ctx = browser.new_context(
            base_url=base_url(web_mh), viewport=viewport or {"width": 1280, "height": 800}
        )
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto("/login")
        page.fill("#username", user)
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url("**/mail/**")
        return page

    yield make
    for c in contexts:
        c.close()


def test_send_receive_live_reply_with_attachment(new_page, tmp_path):
    bob = new_page("bob@example.org")
    bob.wait_for_timeout(700)  # EventSource connected
    alice = new_page("alice@example.org")
    alice.keyboard.press("c")  # shortcut: compose
    alice.wait_for_url("**/compose")
    alice.fill("#to", "bob@example.org")
    alice.fill("#subject", "Browser hello")
    alice.fill("textarea#body", "Hi Bob, from a real browser.")
    alice.click("#send")
    alice.wait_for_selector("#sent-notice")
    # receive: Bob's open inbox shows it without a reload (server-sent events)
    row = bob.locator("li.msg", has_text="Browser hello")
    row.wait_for()
    assert "unread" in (row.get_attribute("class") or "")
    row.locator("a").click()
    bob.wait_for_selector("text=Hi Bob, from a real browser.")
    bob.wait_for_load_state("load")
    bob.keyboard.press("r")  # shortcut: reply
    bob.wait_for_url("**/compose?reply=*")
    assert bob.input_value("#to") == "alice@example.org"
    assert bob.input_value("#subject") == "Re: Browser hello"
    att = tmp_path / "notes.txt"
    att.write_text("attached notes\n")
    bob.fill("textarea#body", "Here are my notes.\n\n" + bob.input_value("textarea#body"))
    bob.set_input_files("#attach", str(att))
    bob.click("#send")
    bob.wait_for_selector("#sent-notice")
    # Alice gets the reply, with the attachment
    reply = alice.locator("li.msg", has_text="Re: Browser hello")
    alice.goto("/")
    reply.wait_for()
    reply.locator("a").click()
    alice.wait_for_selector("text=Here are my notes.")
    link = alice.locator(".attachments a", has_text="notes.txt")
    with alice.expect_download() as dl:
        link.click()
    assert Path(dl.value.path()).read_text() == "attached notes\n"


def test_search_move_delete(new_page, web_mh):
    deliver(
        web_mh,
        "carol@example.org",
        "From: Zed <zed@remote.test>\nTo: carol@example.org\nSubject: Quarterly figures\n\nThe numbers.\n",
    )
    deliver(
        web_mh,
        "carol@example.org",
        "From: amy@remote.test\nTo: carol@example.org\nSubject: Picnic\n\nSandwiches.\n",
    )
    page = new_page("carol@example.org")
    page.keyboard.press("/")
    page.keyboard.type("from:zed")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=from*")
    assert page.locator("li.msg", has_text="Quarterly figures").count() == 1
    assert page.locator("li.msg", has_text="Picnic").count() == 0
    page.locator("li.msg a", has_text="Quarterly figures").click()
    page.wait_for_selector("text=The numbers.")
    page.select_option("#msgactions select[name=dest]", label="Archive")
    page.click("#move")
    page.wait_for_url("**/mail/*")
    assert page.locator("li.msg", has_text="Quarterly figures").count() == 0
    page.locator("#folders a[data-folder=Archive]").click()
    page.locator("li.msg a", has_text="Quarterly figures").click()
    page.wait_for_selector("text=The numbers.")
    page.wait_for_load_state("load")
    page.keyboard.press("#")  # shortcut: delete → Trash
    page.wait_for_url("**/mail/*")
    page.locator("#folders a[data-folder=Trash]").click()
    page.locator("li.msg", has_text="Quarterly figures").wait_for()
    # the inbox with j/k: the cursor moves over rows
    with page.expect_navigation():
        page.locator("#folders a[data-folder=INBOX]").click()
    page.wait_for_load_state("load")  # app.js (deferred) is running
    page.wait_for_selector("li.msg")
    page.keyboard.press("j")
    assert page.locator("li.msg.cursor").count() == 1


def test_xss_corpus_executes_nothing(new_page, web_mh):
    deliver(web_mh, "bob@example.org", corpus_message("bob@example.org"))
    page = new_page("bob@example.org")
    dialogs, outside, console = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: outside.append(r.url) if "127.0.0.1" not in r.url else None)
    page.on("console", lambda m: console.append(m.text))
    page.locator("li.msg a", has_text="XSS corpus").first.click()
    page.wait_for_selector("text=corpus-end")
    # hover and click everything in the body: no handler may fire
    for el in page.locator("#body *").all()[:200]:
        try:
            el.hover(timeout=300)
        except Exception:
            pass
    for a in page.locator("#body a").all():
        try:
            a.click(timeout=500, modifiers=["Alt"])
        except Exception:
            pass
    page.wait_for_timeout(800)
    assert dialogs == []
    assert outside == []
    assert (
        page.evaluate("document.querySelectorAll('#body script, #body svg, #body iframe, #body form').length")
        == 0
    )
    assert not [c for c in console if "alert" in c.lower()]
    page.click("#images-blocked a")  # allowing remote images loads only images, still no script
    page.wait_for_timeout(500)
    assert dialogs == []
    assert all("evil.test/pixel.gif" in u for u in outside)


def test_phone_layout_and_screenshot(new_page, web_mh, browser):
    for i, (who, subj) in enumerate(
        [
            ("Ada Lovelace <ada@remote.test>", "Notes on the Analytical Engine"),
            ("Grace Hopper <grace@remote.test>", "Found a bug in the relay"),
            ("Alan Turing <alan@remote.test>", "Can machines think?"),
        ]
    ):
        deliver(
            web_mh,
            "jane@example.org",
            f"From: {who}\nTo: jane@example.org\nSubject: {subj}\nDate: Mon, {i + 1} Jan 2024 09:00:00 +0000\n\nHello.\n",
        )
    page = new_page("jane@example.org")
    page.wait_for_selector("li.msg")
    shot = page.screenshot(full_page=False)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    tmp = SCREENSHOT.with_suffix(".tmp.png")
    tmp.write_bytes(shot)
    shutil.move(tmp, SCREENSHOT)
    phone = new_page("alice@example.org", viewport={"width": 390, "height": 844})
    assert not phone.locator("#folders").is_visible() or phone.locator("#folders").bounding_box()["x"] < 0
    phone.click("#menu-toggle")
    phone.wait_for_timeout(300)
    assert phone.locator("#folders").bounding_box()["x"] >= 0
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 400  # no horizontal scrolling on a phone
