"""Issue 19 build 2 in Debian's Chromium: a contact added on the contacts page is offered when a
prefix is typed in To, picked with the keyboard (ArrowDown + Enter) through an ARIA combobox,
a group picked with Tab in Cc, and the message sent to the expanded group."""

from __future__ import annotations

from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import login, wait_for
from tests.web.test_browser import browser, new_page  # noqa: F401 - the fixtures, shared

GWEN = "gwen@example.org"


def test_autocomplete_picks_a_contact_by_keyboard(new_page, web_mh: MailhouseProcess) -> None:  # noqa: F811
    web_mh.add_user(GWEN)
    page = new_page(GWEN)
    page.click("#contacts-link")
    page.wait_for_url("**/contacts")
    for name, addr in (("Alice Liddell", "alice@example.org"), ("Bob Marley", "bob@example.org")):
        page.fill("#c-name", name)
        page.fill("#c-emails", addr)
        page.fill("#c-groups", "Looking Glass")
        page.click("#c-save")
        page.wait_for_selector(f"tr.contact >> text={name}")

    page.goto("/compose")
    to = page.locator("#to")
    assert to.get_attribute("role") == "combobox" and to.get_attribute("aria-expanded") == "false"
    assert to.get_attribute("aria-label") == "To" and to.get_attribute("aria-controls") == "to-suggestions"
    to.click()
    page.keyboard.type("lid")
    option = page.locator("#to-suggestions [role=option]", has_text="Alice Liddell")
    option.wait_for()
    assert to.get_attribute("aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    active = to.get_attribute("aria-activedescendant")
    assert active and page.locator(f"#{active}").get_attribute("aria-selected") == "true"
    page.keyboard.press("Enter")
    assert to.input_value() == "Alice Liddell <alice@example.org>, "
    assert to.get_attribute("aria-expanded") == "false"
    assert page.url.endswith("/compose")  # Enter picked, it did not send

    cc = page.locator("#cc")
    cc.click()
    page.keyboard.type("look")
    page.locator("#cc-suggestions [role=option]", has_text="Looking Glass").wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert cc.input_value() == "Looking Glass, "
    page.fill("#subject", "Down the rabbit hole")
    page.fill("textarea#body", "Curiouser and curiouser.")
    page.click("#send")
    page.wait_for_selector("#sent-notice")
    bob = login(web_mh, "bob@example.org")  # a group member, reached through the group in Cc
    assert wait_for(lambda: "Down the rabbit hole" in bob.get("/", follow_redirects=True).text)
