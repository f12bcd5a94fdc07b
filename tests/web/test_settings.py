"""The settings page (issue 19 Build 1): display name, reply-to and signature wired into sending,
own password change (ends the other sessions), "log out everywhere", the session list and revoke."""

from __future__ import annotations

import email
import email.message
import email.policy
import imaplib
import re
import ssl

import httpx

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.web.conftest import compose, login, page_csrf, wait_for
from tests.web.test_sessions import _logged_in


def _post(c: httpx.Client, **data: str) -> httpx.Response:
    return c.post("/settings", data={"csrf": page_csrf(c, "/settings"), **data})


def test_display_name_reply_to_and_signature_are_sent(web_mh: MailhouseProcess) -> None:
    web_mh.add_user("named@example.org")
    web_mh.add_user("reader@example.org")
    c = login(web_mh, "named@example.org")
    page = c.get("/settings")
    assert page.status_code == 200 and 'href="/settings"' in c.get("/", follow_redirects=True).text
    r = _post(
        c, action="profile", name="Zoë Named", reply_to="replies@example.org", signature="Zoë\nExample Ltd"
    )
    assert r.status_code == 303 and r.headers["location"] == "/settings?done=saved"
    body = re.search(r'<textarea name="body"[^>]*>(.*?)</textarea>', c.get("/compose").text, re.S)
    assert body and "-- \nZoë\nExample Ltd" in body.group(1)
    r = compose(c, {"to": "reader@example.org", "subject": "Named hello", "body": "Hi.\n\n-- \nZoë\n"})
    assert r.status_code == 303, r.text
    msg = wait_for(lambda: _fetch(web_mh, "reader@example.org", "Named hello"))
    assert msg, "not delivered"
    assert msg["From"] == "Zoë Named <named@example.org>"
    assert msg["Reply-To"] == "replies@example.org"
    # a bad reply-to is refused, nothing saved
    r = _post(c, action="profile", name="X", reply_to="not an address", signature="")
    assert r.status_code == 400 and "Reply-to" in r.text


def _fetch(mh: MailhouseProcess, user: str, subject: str) -> email.message.EmailMessage | None:
    """The message with SUBJECT in USER's INBOX, as delivered (over IMAP)."""
    with imaplib.IMAP4(*mh.addr("imap"), timeout=20) as c:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the node's self-signed test cert
        c.starttls(tls)
        c.login(user, PASSWORD)
        c.select("INBOX")
        typ, data = c.search(None, "SUBJECT", f'"{subject}"')
        ids = data[0].split() if typ == "OK" else []
        if not ids:
            return None
        typ, got = c.fetch(ids[-1], "(BODY.PEEK[])")
        raw = got[0][1] if typ == "OK" and isinstance(got[0], tuple) else b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


def test_password_change_needs_the_current_one_and_ends_other_sessions(web_mh: MailhouseProcess) -> None:
    user = "changer@example.org"
    web_mh.add_user(user)
    other = login(web_mh, user).cookies["mh_session"]
    c = login(web_mh, user)
    r = _post(c, action="password", current="wrong-password", new="n3w-passw0rd", confirm="n3w-passw0rd")
    assert r.status_code == 400 and "current password is wrong" in r.text
    assert _logged_in(web_mh, other)
    r = _post(c, action="password", current=PASSWORD, new="n3w-passw0rd", confirm="n3w-passw0rd")
    assert r.status_code == 303 and r.headers["location"] == "/settings?done=password"
    assert not _logged_in(web_mh, other)  # the other session ended
    assert _logged_in(web_mh, c.cookies["mh_session"])  # this browser got a new one
    login(web_mh, user, "n3w-passw0rd")


def test_sessions_listed_revoked_and_log_out_everywhere(web_mh: MailhouseProcess) -> None:
    user = "many@example.org"
    web_mh.add_user(user)
    a = login(web_mh, user)
    b = login(web_mh, user)
    page = a.get("/settings").text
    hashes = re.findall(r'name="session" value="([0-9a-f]{64})"', page)
    assert len(hashes) == 2 and "(this browser)" in page and "python-httpx, 127.0.0.1" in page
    this = re.search(r'<tr class="this">.*?name="session" value="([0-9a-f]{64})"', page, re.S)
    assert this
    (theirs,) = [h for h in hashes if h != this.group(1)]
    r = _post(a, action="revoke", session=theirs)
    assert r.status_code == 303 and r.headers["location"] == "/settings?done=revoked"
    assert not _logged_in(web_mh, b.cookies["mh_session"])
    # someone else's session cannot be revoked from here
    web_mh.add_user("bystander@example.org")
    by = login(web_mh, "bystander@example.org")
    r = _post(by, action="revoke", session=this.group(1))
    assert r.status_code == 404 and _logged_in(web_mh, a.cookies["mh_session"])
    c = login(web_mh, user)
    mine = a.cookies["mh_session"]
    r = _post(a, action="logout_all")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert not _logged_in(web_mh, mine) and not _logged_in(web_mh, c.cookies["mh_session"])
