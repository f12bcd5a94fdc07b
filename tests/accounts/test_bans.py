"""Bans after too many failed logins (issue 12 item 7), through real sockets and the CLI.

After ``ban_after`` failures from one IP within the window the IP is banned for ``ban_time``:
its authentication attempts are refused without a password check (even the right password on a
connection opened before the ban), and its new connections are refused at connect on every
listener — SMTP ``554 5.7.1``, IMAP ``* BYE``, POP3 ``-ERR``, HTTP 403. `mailhouse ban
list|add|remove` acts on the same shared list; trusted networks are never banned. Today there
are no bans at all: every one of these tests fails on it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .wire import Imap, Pop3, Smtp, http_status

BAN_AFTER = 4
BAN_TIME = 3.0  # seconds: short, so the test sees it expire
CACHE = 3.0  # accounts.bans.CACHE_TTL: how late another process may notice a change
TRUSTED = "127.99.0.0/16"

CONFIG = f"""
[auth]
allow_plaintext = true
failure_delay = 0.05
max_failure_delay = 0.1
ban_after = {BAN_AFTER}
ban_time = {BAN_TIME}
[limits]
trusted_networks = ["{TRUSTED}"]
"""


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    root: Path = tmp_path_factory.mktemp("bans")
    p = MailhouseProcess(root, services=("smtp", "submission", "imap", "pop3", "http"), extra=CONFIG)
    p.add_domain("example.org")
    p.add_user("alice@example.org")
    p.start()
    yield p
    p.stop()


def refused_everywhere(mh: MailhouseProcess, src: str) -> dict[str, bool]:
    smtp = Smtp(mh.addr("smtp"), src)
    imap = Imap(mh.addr("imap"), src)
    pop3 = Pop3(mh.addr("pop3"), src)
    out = {
        "smtp": smtp.greeting.startswith(b"554 5.7.1"),
        "imap": imap.greeting.startswith(b"* BYE"),
        "pop3": pop3.greeting.startswith(b"-ERR"),
        "http": http_status(mh.addr("http"), src) == 403,
    }
    for c in (smtp, imap, pop3):
        c.close()
    return out


def wait_for(cond: object, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_ban_after_n_failures_refuses_auth_and_connections_then_expires(mh: MailhouseProcess) -> None:
    src = "127.40.0.1"
    early = Imap(mh.addr("imap"), src)  # opened before the ban
    assert early.greeting.startswith(b"* OK")
    for i in range(BAN_AFTER):
        c = Pop3(mh.addr("pop3"), src)
        assert c.auth(f"u{i}@example.org", "guess").startswith(b"-ERR")
        c.close()
    assert mh.wait_log(f"auth ban: ip={src} until="), mh.logtext()[-2000:]
    assert re.search(rf"auth ban: ip={re.escape(src)} until=\S+ failures={BAN_AFTER}\b", mh.logtext())
    # the right password on the connection opened before: refused without being checked
    assert b"a1 NO" in early.auth("alice@example.org", PASSWORD)
    early.close()
    assert mh.wait_log(f"auth failed: service=imap ip={src} user=<alice@example.org> reason=banned")
    assert refused_everywhere(mh, src) == {"smtp": True, "imap": True, "pop3": True, "http": True}
    # another address is not affected
    other = Imap(mh.addr("imap"), "127.41.0.1")
    assert b"a1 OK" in other.auth("alice@example.org", PASSWORD)
    other.close()
    # the ban expires (BAN_TIME, plus the accept paths' cache)
    assert wait_for(lambda: Pop3(mh.addr("pop3"), src).greeting.startswith(b"+OK"), BAN_TIME + CACHE + 20)
    c = Imap(mh.addr("imap"), src)
    assert b"a1 OK" in c.auth("alice@example.org", PASSWORD)
    c.close()


def test_cli_ban_list_add_remove(mh: MailhouseProcess) -> None:
    src = "127.42.0.1"
    r = mh.cli("ban", "add", src, "--for", "600", "--reason", "seen in a botnet report")
    assert f"{src} banned until" in r.stdout
    listed = mh.cli("ban", "list").stdout
    assert re.search(rf"^{re.escape(src)}  until \S+ \(\d+s\)  seen in a botnet report$", listed, re.M), (
        listed
    )
    # the server sees it (a fresh address is not in its cache yet)
    assert refused_everywhere(mh, src) == {"smtp": True, "imap": True, "pop3": True, "http": True}
    c = Smtp(mh.addr("submission"), src)
    assert c.greeting.startswith(b"554 5.7.1")
    c.close()
    assert mh.cli("ban", "remove", src).stdout.strip() == f"{src} unbanned"
    assert src not in mh.cli("ban", "list").stdout
    assert mh.cli("ban", "remove", src, check=False).returncode == 1  # not banned any more
    assert wait_for(lambda: Imap(mh.addr("imap"), src).greeting.startswith(b"* OK"), CACHE + 20)
    assert mh.cli("ban", "add", "not-an-ip", check=False).returncode != 0


def test_trusted_network_is_never_banned(mh: MailhouseProcess) -> None:
    src = "127.99.0.7"
    for i in range(BAN_AFTER * 2):
        c = Smtp(mh.addr("submission"), src)
        assert c.auth(f"u{i}@example.org", "guess").startswith(b"535")
        c.close()
    assert f"auth ban: ip={src}" not in mh.logtext()
    assert refused_everywhere(mh, src) == {"smtp": False, "imap": False, "pop3": False, "http": False}
    c = Imap(mh.addr("imap"), src)
    assert b"a1 OK" in c.auth("alice@example.org", PASSWORD)
    c.close()
    # even an administrator's ban does not refuse it (trusted_networks wins, as documented)
    mh.cli("ban", "add", src)
    assert refused_everywhere(mh, src)["imap"] is False
    mh.cli("ban", "remove", src)


def test_webmail_login_failures_ban_too(mh: MailhouseProcess) -> None:
    """The webmail login counts like every protocol: failures there ban, and the ban is a 403."""
    src = "127.43.0.1"
    host, port = mh.addr("http")
    c = httpx.Client(
        base_url=f"http://{host}:{port}", timeout=60, transport=httpx.HTTPTransport(local_address=src)
    )
    m = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert m
    for i in range(BAN_AFTER):
        r = c.post("/login", data={"username": f"u{i}@example.org", "password": "x", "csrf": m[1]})
        assert r.status_code == 401
    assert mh.wait_log(f"auth failed: service=web ip={src} user=<u0@example.org> reason=unknown-user")
    assert mh.wait_log(f"auth ban: ip={src}")
    assert c.get("/login").status_code == 403
    c.close()
