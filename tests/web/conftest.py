"""Fixtures for the web tests: one running Mailhouse for the web suite, logged-in httpx clients."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.ports import free_port

ADMIN = "root@example.org"


@pytest.fixture(scope="session")
def web_mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    root: Path = tmp_path_factory.mktemp("mhweb")
    # mail for deferred.test goes to a closed port: it stays in the queue (admin queue page)
    mh = MailhouseProcess(root, extra=f'[routes]\n"deferred.test" = "127.0.0.1:{free_port()}"\n')
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    mh.add_user("carol@example.org")
    mh.add_user("jane@example.org")  # only the screenshot test uses her mailbox
    mh.add_user(ADMIN, PASSWORD, "--admin")
    mh.start()
    yield mh
    mh.stop()


def base_url(mh: MailhouseProcess) -> str:
    host, port = mh.addr("http")
    return f"http://{host}:{port}"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(mh: MailhouseProcess, user: str, password: str = PASSWORD) -> httpx.Client:
    c = httpx.Client(base_url=base_url(mh), follow_redirects=False, timeout=20)
    r = c.get("/login")
    r = c.post("/login", data={"username": user, "password": password, "csrf": csrf_of(r.text)})
    assert r.status_code == 303, r.text
    return c


def page_csrf(c: httpx.Client, path: str = "/compose") -> str:
    return csrf_of(c.get(path).text)


def compose(c: httpx.Client, fields: dict[str, str], action: str = "send") -> httpx.Response:
    """POST /compose with the compose page's CSRF token: ACTION ("send", "save") and FIELDS."""
    return c.post("/compose", data={"csrf": page_csrf(c), "action": action, **fields})


def deliver(mh: MailhouseProcess, rcpt: str, raw: bytes | str, sender: str = "someone@remote.test") -> None:
    if isinstance(raw, str):
        raw = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as s:
        s.sendmail(sender, [rcpt], raw)


def folder_ids(c: httpx.Client) -> dict[str, int]:
    html = c.get("/", follow_redirects=True).text
    return {name: int(i) for i, name in re.findall(r'href="/mail/(\d+)" data-folder="([^"]+)"', html)}


def wait_for(fn, timeout: float = 10.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(interval)
