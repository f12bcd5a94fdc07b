"""Webmail over HTTP (httpx against a real `mailhouse serve`): login, sessions, CSRF,
headers, reading, attachments, sending through the submission path, admin, SSE."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time

import httpx

from tests.mailhouse_proc import PASSWORD
from tests.web.conftest import (
    ADMIN,
    base_url,
    compose,
    csrf_of,
    deliver,
    folder_ids,
    login,
    page_csrf,
    wait_for,
)


def test_login_sets_strict_httponly_cookie_and_headers(web_mh):
    c = httpx.Client(base_url=base_url(web_mh))
    r = c.get("/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    r = c.post(
        "/login", data={"username": "alice@example.org", "password": PASSWORD, "csrf": csrf_of(r.text)}
    )
    assert r.status_code == 303
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("mh_session=")][0]
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low
    assert "secure" not in low  # plain HTTP here; Secure is set when the request came over TLS
    r = c.get("/", follow_redirects=True)
    assert "alice@example.org" in r.text and r.url.path.startswith("/mail/")


def test_wrong_password_is_refused_and_throttled(web_mh):
    c = httpx.Client(base_url=base_url(web_mh), timeout=30)
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "alice@example.org", "password": "nope-nope", "csrf": tok})
    assert r.status_code == 401 and "Wrong address or password" in r.text
    t0 = time.monotonic()
    r = c.post("/login", data={"username": "alice@example.org", "password": "nope-again", "csrf": tok})
    assert r.status_code == 401
    assert time.monotonic() - t0 >= 0.45  # the shared per-IP throttle delays the next answer
    login(web_mh, "alice@example.org")  # a success clears the penalty for the next tests


def test_post_without_csrf_token_is_forbidden(web_mh):
    c = login(web_mh, "alice@example.org")
    ids = folder_ids(c)
    for path, data in [
        ("/login", {"username": "alice@example.org", "password": PASSWORD}),
        ("/logout", {}),
        (f"/mail/{ids['INBOX']}/action", {"action": "delete", "uid": "1"}),
        ("/compose", {"action": "send", "to": "bob@example.org", "subject": "x", "body": "x"}),
        ("/folders", {"name": "Evil"}),
        ("/admin/domains", {"action": "add", "name": "evil.test"}),
    ]:
        r = c.post(path, data=data)
        assert r.status_code == 403, path
        r = c.post(path, data={**data, "csrf": "forged-token"})
        assert r.status_code == 403, path
    # the token is right but the request comes from another site
    tok = page_csrf(c)
    r = c.post("/folders", data={"name": "Evil", "csrf": tok}, headers={"Origin": "http://evil.test"})
    assert r.status_code == 403
    assert "Evil" not in folder_ids(c)
    r = c.post("/folders", data={"name": "Projects", "csrf": tok})
    assert r.status_code == 303
    assert "Projects" in folder_ids(c)


def test_logged_out_pages_redirect_to_login(web_mh):
    c = httpx.Client(base_url=base_url(web_mh))
    assert c.get("/").headers["location"] == "/login"
    assert c.get("/compose").status_code in (303, 401)
    assert c.get("/events", headers={"accept": "text/event-stream"}).status_code == 401
    c.cookies.set("mh_session", "eyJhIjoxfQ.forged.sig")
    forged = c.get("/mail/1")
    assert forged.headers.get("location") == "/login"


def test_read_plain_message_and_download_attachment(web_mh):
    raw = (
        "From: Dave <dave@remote.test>\nTo: alice@example.org\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?= attached\n"
        "Message-ID: <att1@remote.test>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain; charset=utf-8\n\nPlease see <the> file.\n"
        '--XX\nContent-Type: text/html; name="../../etc/evil\\"name.html"\nContent-Disposition: attachment; '
        'filename="../../etc/evil\\"name.html"\nContent-Transfer-Encoding: base64\n\n'
        "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\n--XX--\n"
    )
    deliver(web_mh, "alice@example.org", raw)
    c = login(web_mh, "alice@example.org")
    inbox = folder_ids(c)["INBOX"]
    html = c.get(f"/mail/{inbox}?threads=0").text
    assert "Résumé attached" in html
    uid = re.search(
        r'data-uid="(\d+)"[^>]*>\s*<input[^>]*>\s*<a href="/mail/\d+/\d+">\s*<span class="from">Dave', html
    )
    uid = uid or re.search(rf'/mail/{inbox}/(\d+)">\s*<span class="from">Dave', html)
    assert uid
    r = c.get(f"/mail/{inbox}/{uid.group(1)}")
    assert "Please see &lt;the&gt; file." in r.text  # plain text, escaped
    m = re.search(r'href="(/mail/\d+/\d+/part/[\d.]+)"', r.text)
    d = c.get(m.group(1))
    assert d.status_code == 200
    cd = d.headers["content-disposition"]
    assert cd.startswith("attachment;") and "/" not in cd.split("filename*=")[0].replace("attachment;", "")
    assert "evil_name.html" in cd or "evil_name" in cd
    assert d.headers["content-type"] == "application/octet-stream"
    assert d.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in d.headers["content-security-policy"]
    assert d.content == b"<script>alert(1)</script>"


def test_send_through_submission_path_lands_in_inbox_and_sent(web_mh):
    c = login(web_mh, "alice@example.org")
    tok = page_csrf(c)
    r = c.post(
        "/compose",
        data={
            "csrf": tok,
            "action": "send",
            "from": "alice@example.org",
            "to": "Bob <bob@example.org>",
            "bcc": "carol@example.org",
            "subject": "Lunch?",
            "body": "Noon at the usual place.",
        },
        files={"attach": ("menu.txt", b"soup\nbread\n", "text/plain")},
    )
    assert r.status_code == 303, r.text
    bob = login(web_mh, "bob@example.org")
    ib = folder_ids(bob)["INBOX"]
    html = wait_for(lambda: (t := bob.get(f"/mail/{ib}").text) and "Lunch?" in t and t)
    assert html
    uid = re.search(rf'/mail/{ib}/(\d+)">\s*<span class="from">alice', html).group(1)
    page = bob.get(f"/mail/{ib}/{uid}").text
    assert "Noon at the usual place." in page and "menu.txt" in page
    # what Bob got went through the MSA: DKIM-signed, Message-ID and Date set, Bcc gone
    part = re.search(r'href="(/mail/\d+/\d+/part/[\d.]+)"', page).group(1)
    assert bob.get(part).content == b"soup\nbread\n"
    # carol (Bcc) got it too
    carol = login(web_mh, "carol@example.org")
    assert wait_for(lambda: "Lunch?" in carol.get("/", follow_redirects=True).text)
    # alice's Sent copy
    sent = folder_ids(c)["Sent"]
    assert "Lunch?" in c.get(f"/mail/{sent}").text


def test_delivered_copy_is_dkim_signed_without_bcc(web_mh, tmp_path):
    # the raw stored message, as Carol (Bcc) received it, over POP3
    import poplib

    c = login(web_mh, "alice@example.org")
    r = compose(c, {"to": "bob@example.org", "bcc": "carol@example.org", "subject": "Signed?", "body": "sig"})
    assert r.status_code == 303
    time.sleep(0.3)
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    p = poplib.POP3_SSL(*web_mh.addr("pop3s"), context=ctx, timeout=20)
    try:
        p.user("carol@example.org")
        p.pass_(PASSWORD)
        n = len(p.list()[1])
        raws = [b"\r\n".join(p.retr(i)[1]) for i in range(1, n + 1)]
    finally:
        p.quit()
    signed = [r for r in raws if b"Subject: Signed?" in r]
    assert signed
    msg = email.message_from_bytes(signed[0], policy=email.policy.default)
    assert msg["DKIM-Signature"] and msg["Message-ID"] and msg["Date"]
    assert msg["Bcc"] is None


def test_send_as_foreign_address_is_refused(web_mh):
    c = login(web_mh, "alice@example.org")
    r = compose(c, {"from": "bob@example.org", "to": "carol@example.org", "subject": "spoof", "body": "x"})
    assert r.status_code == 400 and "not owned" in r.text


def test_unknown_local_recipient_is_refused(web_mh):
    c = login(web_mh, "alice@example.org")
    r = compose(c, {"to": "nobody@example.org", "subject": "x", "body": "x"})
    assert r.status_code == 400 and "5.1.1" in r.text


def test_drafts_save_and_move_delete_flag(web_mh):
    c = login(web_mh, "alice@example.org")
    r = compose(
        c,
        {
            "to": "bob@example.org",
            "subject": "Half-written",
            "body": "to be continued",
        },
        action="save",
    )
    assert r.status_code == 303 and "draft=" in r.headers["location"]
    ids = folder_ids(c)
    assert "Half-written" in c.get(f"/mail/{ids['Drafts']}").text
    edit = c.get(r.headers["location"]).text
    assert "to be continued" in edit and "Half-written" in edit
    deliver(
        web_mh, "alice@example.org", "From: e@remote.test\nTo: alice@example.org\nSubject: Movable\n\nm\n"
    )
    inbox = ids["INBOX"]
    html = c.get(f"/mail/{inbox}?threads=0").text
    uid = re.search(rf'/mail/{inbox}/(\d+)">\s*<span class="from">e@remote.test', html).group(1)
    tok = page_csrf(c)
    assert (
        c.post(f"/mail/{inbox}/action", data={"csrf": tok, "action": "flag", "uid": uid}).status_code == 303
    )
    assert (
        'class="msg flagged"' in c.get(f"/mail/{inbox}?threads=0").text
        or "flagged" in c.get(f"/mail/{inbox}").text
    )
    r = c.post(
        f"/mail/{inbox}/action", data={"csrf": tok, "action": "move", "uid": uid, "dest": ids["Archive"]}
    )
    assert r.status_code == 303
    assert "Movable" not in c.get(f"/mail/{inbox}").text
    arch = c.get(f"/mail/{ids['Archive']}").text
    assert "Movable" in arch
    uid2 = re.search(rf'/mail/{ids["Archive"]}/(\d+)"', arch).group(1)
    c.post(f"/mail/{ids['Archive']}/action", data={"csrf": tok, "action": "delete", "uid": uid2})
    assert "Movable" in c.get(f"/mail/{ids['Trash']}").text
    trash = c.get(f"/mail/{ids['Trash']}").text
    uid3 = re.search(rf'/mail/{ids["Trash"]}/(\d+)"', trash).group(1)
    c.post(f"/mail/{ids['Trash']}/action", data={"csrf": tok, "action": "delete", "uid": uid3})
    assert "Movable" not in c.get(f"/mail/{ids['Trash']}").text


def test_search_subject_from_body(web_mh):
    deliver(
        web_mh,
        "bob@example.org",
        "From: Quentin <q@remote.test>\nTo: bob@example.org\nSubject: Invoice 42\n\nThe zebra pays.\n",
    )
    deliver(
        web_mh,
        "bob@example.org",
        "From: r@remote.test\nTo: bob@example.org\nSubject: Holiday\n\nNothing here.\n",
    )
    c = login(web_mh, "bob@example.org")
    ib = folder_ids(c)["INBOX"]
    for q in ("invoice", "from:quentin", "body:zebra", "zebra", "to:bob@example.org invoice"):
        t = c.get(f"/mail/{ib}", params={"q": q}).text
        assert "Invoice 42" in t and "Holiday" not in t, q
    assert "Invoice 42" not in c.get(f"/mail/{ib}", params={"q": "body:invoice"}).text


def test_threads_group_replies(web_mh):
    deliver(
        web_mh,
        "carol@example.org",
        "From: t@remote.test\nTo: carol@example.org\nSubject: Plan\nMessage-ID: <p1@r>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\none\n",
    )
    deliver(
        web_mh,
        "carol@example.org",
        "From: u@remote.test\nTo: carol@example.org\nSubject: Re: Plan\nMessage-ID: <p2@r>\nIn-Reply-To: <p1@r>\nReferences: <p1@r>\nDate: Mon, 1 Jan 2024 11:00:00 +0000\n\ntwo\n",
    )
    c = login(web_mh, "carol@example.org")
    ib = folder_ids(c)["INBOX"]
    t = c.get(f"/mail/{ib}").text
    assert re.search(r"Re: Plan</span>", t) and '<span class="badge">2</span>' in t
    flat = c.get(f"/mail/{ib}?threads=0").text
    assert flat.count("Plan</span>") == 2


def test_live_events_stream_reports_new_mail(web_mh):
    c = login(web_mh, "carol@example.org")
    got: list[str] = []

    def reader():
        with httpx.Client(base_url=base_url(web_mh), cookies=c.cookies, timeout=20) as s:
            with s.stream("GET", "/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    got.append(line)
                    if line.startswith("data:"):
                        return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.5)
    deliver(
        web_mh, "carol@example.org", "From: live@remote.test\nTo: carol@example.org\nSubject: live\n\nx\n"
    )
    t.join(15)
    assert any(line.startswith("event: change") for line in got), got
    assert any('"kind": "append"' in line for line in got)


def test_admin_pages_refused_to_normal_users(web_mh):
    c = login(web_mh, "alice@example.org")
    for path in ("/admin", "/admin/queue", "/admin/domain/example.org"):
        assert c.get(path).status_code == 403, path
    tok = page_csrf(c)
    assert (
        c.post(
            "/admin/users",
            data={"csrf": tok, "action": "add", "address": "x@example.org", "password": "longenough1"},
        ).status_code
        == 403
    )
    assert c.post("/admin/queue", data={"csrf": tok, "action": "delete", "id": "X"}).status_code == 403


def test_admin_manages_users_aliases_quotas_and_dns(web_mh):
    c = login(web_mh, ADMIN)
    assert "example.org" in c.get("/admin").text
    tok = page_csrf(c, "/admin")
    r = c.post(
        "/admin/users",
        data={
            "csrf": tok,
            "action": "add",
            "address": "dan@example.org",
            "password": "dans-password-1",
            "quota_mb": "5",
        },
    )
    assert r.status_code == 303
    page = c.get("/admin/domain/example.org").text
    assert "dan@example.org" in page and 'value="5"' in page
    r = c.post(
        "/admin/users", data={"csrf": tok, "action": "add", "address": "eve@example.org", "password": "short"}
    )
    assert "too%20short" in r.headers["location"]
    c.post(
        "/admin/aliases",
        data={"csrf": tok, "action": "add", "source": "sales@example.org", "destination": "dan@example.org"},
    )
    c.post(
        "/admin/users",
        data={
            "csrf": tok,
            "action": "quota",
            "address": "dan@example.org",
            "quota_mb": "7",
            "quota_messages": "100",
        },
    )
    page = c.get("/admin/domain/example.org").text
    assert "sales@example.org" in page and 'value="7"' in page and 'value="100"' in page
    # DNS records to publish, beside the (empty) answers
    assert "v=spf1 mx -all" in page and "_dmarc.example.org" in page and "v=DKIM1" in page
    deliver(
        web_mh, "sales@example.org", "From: buyer@remote.test\nTo: sales@example.org\nSubject: Order\n\nx\n"
    )
    dan = login(web_mh, "dan@example.org", "dans-password-1")
    assert wait_for(lambda: "Order" in dan.get("/", follow_redirects=True).text)
    # a password change ends existing sessions
    c.post(
        "/admin/users",
        data={
            "csrf": tok,
            "action": "password",
            "address": "dan@example.org",
            "password": "dans-new-password",
        },
    )
    assert dan.get("/").headers["location"] == "/login"
    assert "Queue" in c.get("/admin/queue").text or "queue" in c.get("/admin/queue").text


def test_admin_queue_retry_and_delete(web_mh):
    # a message routed to a closed port stays in the queue
    c = login(web_mh, "alice@example.org")
    r = compose(c, {"to": "x@deferred.test", "subject": "queued", "body": "x"})
    assert r.status_code == 303, r.text
    a = login(web_mh, ADMIN)
    page = wait_for(lambda: (t := a.get("/admin/queue").text) and "x@deferred.test" in t and t)
    assert page
    qid = re.search(r"<code>([0-9A-F]{12})</code>", page).group(1)
    tok = page_csrf(a, "/admin")
    assert a.post("/admin/queue", data={"csrf": tok, "action": "retry", "id": qid}).status_code == 303
    r = a.post("/admin/queue", data={"csrf": tok, "action": "delete", "id": qid})
    assert r.status_code == 303
    assert qid not in a.get("/admin/queue").text


def _login_page_via(mh, source: str, headers: dict[str, str]) -> httpx.Response:
    """The login page fetched over a connection from SOURCE (a loopback address) with HEADERS."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base_url(mh), transport=transport, headers=headers, timeout=20) as c:
        r = c.get("/login")
        assert r.status_code == 200, r.text
        return r


def _login_cookie_via(mh, source: str, headers: dict[str, str]) -> str:
    """The cookie the login page sets on a connection from SOURCE with HEADERS."""
    return _login_page_via(mh, source, headers).headers["set-cookie"].lower()


def test_forwarded_proto_is_believed_only_from_trusted_proxies(web_mh):
    # default [web] forwarded_allow_ips is empty (issue 12 item 12): not even a process on this
    # host (127.0.0.1) may claim HTTPS or a client address — it used to be believed
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    assert "secure" not in _login_cookie_via(web_mh, "127.0.0.1", proxied)
    assert "secure" not in _login_cookie_via(web_mh, "127.0.0.5", proxied)


def test_forwarded_allow_ips_is_configurable(tmp_path):
    from tests.mailhouse_proc import MailhouseProcess

    mh = MailhouseProcess(
        tmp_path, services=("http",), extra='[web]\nforwarded_allow_ips = ["127.0.0.5/32"]\n'
    )
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    try:
        proxied = {"X-Forwarded-Proto": "https"}
        assert "secure" in _login_cookie_via(mh, "127.0.0.5", proxied)
        assert "secure" not in _login_cookie_via(mh, "127.0.0.1", proxied)
        # HSTS (RFC 6797) when the trusted proxy says HTTPS — never over plain HTTP
        assert _hsts_via(mh, "127.0.0.5", proxied) == "max-age=31536000"
        assert _hsts_via(mh, "127.0.0.5", {}) is None
        assert _hsts_via(mh, "127.0.0.1", proxied) is None  # an untrusted claim
    finally:
        mh.stop()


def _hsts_via(mh, source: str, headers: dict[str, str]) -> str | None:
    return _login_page_via(mh, source, headers).headers.get("strict-transport-security")


def test_no_hsts_and_no_forwarded_trust_by_default(web_mh):
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    assert _hsts_via(web_mh, "127.0.0.1", proxied) is None
    assert _hsts_via(web_mh, "127.0.0.1", {}) is None
