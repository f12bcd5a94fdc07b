"""Issue 14 §3-4: the webmail's "Spam" and "Not spam" buttons on a message, over HTTP: they move the
message, train the account's Bayes classifier, and "Not spam" allow-lists the sender."""

from __future__ import annotations

import re

from mailhouse.accounts.admin import Admin
from mailhouse.store.api import ListKind
from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import csrf_of, deliver, folder_ids, login, wait_for

USER = "judge@example.org"


def _spam_state(mh: MailhouseProcess, user: str = USER) -> tuple[tuple[int, int], list[tuple[str, ListKind]]]:
    """The account's (spam, ham) trained totals and its sender lists."""

    async def read(a: Admin) -> tuple[tuple[int, int], list[tuple[str, ListKind]]]:
        acc = await a.store.get_account(user)
        assert acc is not None
        return await a.store.spam_totals(acc.id), await a.store.sender_lists(acc.id)

    result: tuple[tuple[int, int], list[tuple[str, ListKind]]] = mh.admin(read)
    return result


def _uids(c, mb: int) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted({int(u) for u in re.findall(rf'href="/mail/{mb}/(\d+)"', c.get(f"/mail/{mb}").text)})


def test_spam_then_not_spam(web_mh: MailhouseProcess) -> None:
    web_mh.add_user(USER)
    deliver(
        web_mh,
        USER,
        "From: Deals <deals@shop.example>\nTo: judge@example.org\nSubject: gizmo sale\n"
        "Message-ID: <gizmo-1@shop.example>\n\ngizmo gizmo discount\n",
        sender="deals@shop.example",
    )
    c = login(web_mh, USER)
    ids = folder_ids(c)
    inbox, junk = ids["INBOX"], ids["Junk"]
    assert wait_for(lambda: _uids(c, inbox))
    uid = _uids(c, inbox)[0]
    page = c.get(f"/mail/{inbox}/{uid}").text
    assert 'id="spam"' in page and 'id="notspam"' not in page
    r = c.post(
        f"/mail/{inbox}/action",
        data={"csrf": csrf_of(page), "uid": str(uid), "action": "spam", "back": f"/mail/{inbox}/{uid}"},
    )
    assert r.status_code == 303
    assert _uids(c, inbox) == [] and len(_uids(c, junk)) == 1
    assert _spam_state(web_mh) == ((1, 0), [])

    juid = _uids(c, junk)[0]
    page = c.get(f"/mail/{junk}/{juid}").text
    assert 'id="notspam"' in page and ">Not spam<" in page
    r = c.post(
        f"/mail/{junk}/action",
        data={"csrf": csrf_of(page), "uid": str(juid), "action": "notspam", "back": f"/mail/{junk}/{juid}"},
    )
    assert r.status_code == 303
    assert _uids(c, junk) == [] and len(_uids(c, inbox)) == 1
    # trained as ham instead of spam, and the sender is allowed from now on
    assert _spam_state(web_mh) == ((0, 1), [("deals@shop.example", ListKind.ALLOW)])


def test_spam_button_needs_the_csrf_token(web_mh: MailhouseProcess) -> None:
    c = login(web_mh, "carol@example.org")
    inbox = folder_ids(c)["INBOX"]
    r = c.post(f"/mail/{inbox}/action", data={"uid": "1", "action": "spam"})
    assert r.status_code == 403
