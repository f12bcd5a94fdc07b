"""The webmail's folder form applies the same mailbox-name policy as IMAP CREATE/RENAME
(`accounts.mailbox_names`, issue 12 item 12): LIST wildcards, `.`/`..` and empty components,
control characters are refused with 400; the IMAP server refuses the same names."""

from __future__ import annotations

import imaplib
from collections.abc import Callable

import pytest

from mailhouse.accounts import mailbox_names
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .conftest import folder_ids, login, page_csrf

BAD = ["100%", "a*b", ".", "..", "a/../b", "a//b", "x/./y"]


@pytest.mark.parametrize("name", BAD)
def test_policy_refuses(name: str) -> None:
    with pytest.raises(mailbox_names.MailboxNameError):
        mailbox_names.check_new_name(name)


def test_webmail_folder_names_follow_the_imap_policy(
    mailhouse_factory: Callable[..., MailhouseProcess],
) -> None:
    # an instance of its own: the shared web_mh's users have change-feed tests of their own
    web_mh = mailhouse_factory(services=("http", "imap"), extra="[auth]\nallow_plaintext = true\n")
    web_mh.add_domain("example.org")
    web_mh.add_user("carol@example.org")
    web_mh.start()
    c = login(web_mh, "carol@example.org")
    try:
        for name in BAD:
            r = c.post("/folders", data={"name": name, "csrf": page_csrf(c)})
            assert r.status_code == 400, (name, r.status_code)
        r = c.post("/folders", data={"name": "Projects/2026", "csrf": page_csrf(c)})
        assert r.status_code == 303
        folders = folder_ids(c)
        assert "Projects/2026" in folders and not set(BAD) & set(folders)
    finally:
        c.close()
    imap = imaplib.IMAP4(*web_mh.addr("imap"), timeout=20)  # the IMAP face says the same
    try:
        imap.login("carol@example.org", PASSWORD)
        for name in BAD:
            typ, data = imap.create(f'"{name}"')
            assert typ == "NO" and b"[CANNOT]" in data[0], (name, typ, data)
    finally:
        imap.logout()
