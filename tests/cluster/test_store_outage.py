"""A store outage is an error reply, not a dropped connection (issue 12 item 11).

Two `mailhouse serve` nodes (127.0.0.2, 127.0.0.3) share a PostgreSQL server of their own, which
is shut down (fast: open transactions rolled back, clients disconnected) while a delivery on
node A waits inside its transaction, and started again on the same port and data. While it is
down every protocol answers with its temporary failure — SMTP ``451 4.3.0`` at the end of DATA
(before the fix: the session was closed with no reply, the lost database connection taken for a
client disconnect), IMAP ``NO [UNAVAILABLE]`` (RFC 5530), POP3 ``-ERR [SYS/TEMP]`` (RFC 3206),
the webmail ``503`` with ``Retry-After`` — and the sessions stay usable. Once it is back, both
nodes serve again (the pools reconnect) and the retried message is delivered exactly once.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.postgres import PostgresInstance, find_pg_bin

HOSTS = ("127.0.0.2", "127.0.0.3")
USER = "alice@example.org"
SERVICES = ("smtp", "imap", "pop3", "http")
DEADLINE = 60.0  # generous: the machine is shared


@pytest.fixture
def pg() -> Iterator[PostgresInstance]:
    # always a PostgreSQL of its own (even when the suite is pointed at an outside server):
    # this test shuts its server down and restarts it
    base = Path(tempfile.mkdtemp(prefix="mh-pg-outage-"))  # not under tmp_path: initdb runs as postgres
    inst = PostgresInstance(base).start()
    try:
        yield inst
    finally:
        inst.stop(cleanup=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nodes(pg: PostgresInstance, tmp_path: Path) -> Iterator[tuple[MailhouseProcess, MailhouseProcess]]:
    made = []
    for i, host in enumerate(HOSTS):
        d = tmp_path / f"node{i}"
        d.mkdir()
        made.append(
            MailhouseProcess(
                d, host=host, store_url=pg.url, services=SERVICES, extra="[auth]\nallow_plaintext = true\n"
            )
        )
    a, b = made
    a.add_domain("example.org")
    a.add_user(USER)
    for n in made:
        n.start()
    try:
        yield a, b
    finally:
        for n in made:
            n.stop()


def _message(test_id: str) -> bytes:
    return (
        f"From: x@remote.test\r\nTo: {USER}\r\nMessage-ID: <{test_id}@remote.test>\r\n"
        f"X-Test-Id: {test_id}\r\nSubject: {test_id}\r\n\r\nbody\r\n"
    ).encode()


def _imap(node: MailhouseProcess) -> imaplib.IMAP4:
    c = imaplib.IMAP4(*node.addr("imap"), timeout=30)
    c.login(USER, PASSWORD)
    return c


def _web_login(node: MailhouseProcess) -> tuple[str, str]:
    url = "http://{}:{}".format(*node.addr("http"))
    with httpx.Client(timeout=30) as c:
        m = re.search(r'name="csrf" value="([^"]+)"', c.get(url + "/login").text)
        assert m
        r = c.post(url + "/login", data={"username": USER, "password": PASSWORD, "csrf": m.group(1)})
        assert r.status_code == 303, r.text
        return url, c.cookies["mh_session"]


def _web_get(url: str, cookie: str) -> httpx.Response:
    with httpx.Client(timeout=30, cookies={"mh_session": cookie}) as c:
        return c.get(url + "/", headers={"Accept": "text/html"}, follow_redirects=True)


def _wait(what: str, check: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def _copies(imap: imaplib.IMAP4, test_id: str) -> int:
    typ, _ = imap.select("INBOX")
    assert typ == "OK"
    typ, data = imap.search(None, "HEADER", "X-Test-Id", test_id)
    assert typ == "OK"
    return len(data[0].split())


def _smtp_failure(node: MailhouseProcess, test_id: str) -> tuple[int, bytes]:
    """Send while the store is down: the (code, text) of the refusal, at RCPT or end of DATA."""
    with smtplib.SMTP(*node.addr("smtp"), timeout=60) as c:
        try:
            c.sendmail("x@remote.test", [USER], _message(test_id))
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[USER]
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        else:
            raise AssertionError("accepted while the store was down")
        assert c.noop()[0] == 250  # the session stays usable
        return code, text


def test_postgres_restart_mid_delivery_gets_error_replies_then_serves_again(
    pg: PostgresInstance, nodes: tuple[MailhouseProcess, MailhouseProcess]
) -> None:
    a, b = nodes
    imap_a, imap_b = _imap(a), _imap(b)
    web_url, cookie = _web_login(a)
    assert _web_get(web_url, cookie).status_code == 200

    # A delivery on node A waits inside its transaction: a second session holds the messages table.
    psql = str(find_pg_bin() / "psql")
    blocker = subprocess.Popen(
        [
            psql,
            "-X",
            "-q",
            "-d",
            pg.url,
            "-c",
            "BEGIN; LOCK TABLE messages IN SHARE MODE; SELECT pg_sleep(600);",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outcome: dict[str, object] = {}

    def deliver() -> None:
        try:
            with smtplib.SMTP(*a.addr("smtp"), timeout=120) as c:
                try:
                    c.sendmail("x@remote.test", [USER], _message("mid-tx"))
                    outcome["reply"] = (250, b"")
                except smtplib.SMTPDataError as e:
                    outcome["reply"] = (e.smtp_code, e.smtp_error)
                    outcome["noop"] = c.noop()[0]  # still a live session after the 451
        except Exception as e:  # noqa: BLE001 - reported below
            outcome["error"] = repr(e)

    sender = threading.Thread(target=deliver)
    sender.start()
    _wait(
        "node A blocked on the lock",
        lambda: bool(
            pg.psql("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'", "mailhouse").strip()
        ),
    )

    pg.stop(cleanup=False)  # fast shutdown: node A's transaction is rolled back under it
    blocker.wait(30)
    try:
        sender.join(DEADLINE)
        assert not sender.is_alive()
        assert "error" not in outcome, outcome  # before the fix: SMTPServerDisconnected, no reply at all
        code, text = outcome["reply"]  # type: ignore[misc]
        assert code == 451 and text.startswith(b"4.3.0"), outcome  # RFC 3463 4.3.0
        assert outcome["noop"] == 250

        # While the server is down, every face of both nodes answers with its temporary failure.
        code, text = _smtp_failure(b, "down-b")
        assert code == 451 and text.startswith(b"4.3.0"), (code, text)
        for imap in (imap_a, imap_b):
            typ, data = imap.select("INBOX")
            assert typ == "NO" and data[0].startswith(b"[UNAVAILABLE]"), (typ, data)  # RFC 5530
            assert imap.noop()[0] == "OK"  # the session goes on
        for node in (a, b):
            p = poplib.POP3(*node.addr("pop3"), timeout=30)
            p.user(USER)
            with pytest.raises(poplib.error_proto) as err:
                p.pass_(PASSWORD)
            assert err.value.args[0].startswith(b"-ERR [SYS/TEMP]"), err.value.args  # RFC 3206 §4
            p.quit()
        r = _web_get(web_url, cookie)
        assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text[:300])
    finally:
        pg.start()

    # Back: both nodes serve again without a restart of their own.
    def imap_ok() -> bool:
        return all(imap.select("INBOX")[0] == "OK" for imap in (imap_a, imap_b))

    _wait("IMAP to serve again", imap_ok)
    with smtplib.SMTP(*a.addr("smtp"), timeout=60) as c:
        assert not c.sendmail("x@remote.test", [USER], _message("mid-tx"))  # the client's retry
    with smtplib.SMTP(*b.addr("smtp"), timeout=60) as c:
        assert not c.sendmail("x@remote.test", [USER], _message("down-b"))
    for imap in (imap_a, imap_b):
        assert _copies(imap, "mid-tx") == 1  # the rolled-back attempt left nothing behind
        assert _copies(imap, "down-b") == 1
        imap.logout()
    for node in (a, b):
        p = poplib.POP3(*node.addr("pop3"), timeout=30)
        p.user(USER)
        assert p.pass_(PASSWORD).startswith(b"+OK")
        p.quit()
    assert _web_get(web_url, cookie).status_code == 200
