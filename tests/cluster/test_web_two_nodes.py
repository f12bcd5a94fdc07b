"""The webmail on two nodes of one PostgreSQL store: a session started on one node is valid
on the other (the cookie key is `Store.shared_secret`, not a per-node file), and logging out
is not needed for that — any node behind a load balancer can serve any request. Logging out on
one node ends the session on the other."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

HOSTS = ("127.0.0.2", "127.0.0.3")


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def test_session_from_node_a_is_valid_on_node_b(postgres_db_url: str, tmp_path: Path) -> None:
    nodes = []
    for i, host in enumerate(HOSTS):
        d = tmp_path / f"node{i}"
        d.mkdir()
        nodes.append(MailhouseProcess(d, host=host, store_url=postgres_db_url, services=("http",)))
    a, b = nodes
    a.add_domain("example.org")
    a.add_user("alice@example.org")
    for n in nodes:
        n.start()
    try:
        urls = [f"http://{h}:{p}" for h, p in (n.addr("http") for n in nodes)]
        with httpx.Client(timeout=20) as c:
            tok = _csrf(c.get(urls[0] + "/login").text)
            r = c.post(
                urls[0] + "/login", data={"username": "alice@example.org", "password": PASSWORD, "csrf": tok}
            )
            assert r.status_code == 303, r.text
            cookie = c.cookies["mh_session"]
        # the same cookie sent to node B: logged in there too
        with httpx.Client(timeout=20, cookies={"mh_session": cookie}) as c:
            r = c.get(urls[1] + "/", follow_redirects=True)
            assert r.status_code == 200 and "alice@example.org" in r.text and r.url.path.startswith("/mail/")
        # and a forged cookie is refused on both
        for url in urls:
            with httpx.Client(timeout=20, cookies={"mh_session": cookie[:-4] + "AAAA"}) as c:
                r = c.get(url + "/", follow_redirects=False)
                assert r.status_code in (302, 303, 307) and "/login" in r.headers["location"]
        assert not (a.data_dir / "web-secret").exists() and not (b.data_dir / "web-secret").exists()
        # issue 19: logging out on node A ends the session on node B at once (the session row is
        # in the shared store and read by every request; no per-node cache)
        with httpx.Client(timeout=20, cookies={"mh_session": cookie}) as c:
            tok = _csrf(c.get(urls[0] + "/compose").text)
            assert c.post(urls[0] + "/logout", data={"csrf": tok}).status_code == 303
        with httpx.Client(timeout=20, cookies={"mh_session": cookie}) as c:
            r = c.get(urls[1] + "/", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login"
    finally:
        for n in nodes:
            n.stop()
