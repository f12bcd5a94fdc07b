"""/metrics (web/metrics.py, mailhouse/metrics.py) scraped from a real Mailhouse and parsed with
Prometheus' own text parser: counters move with real traffic, workers are summed, and only
allowed addresses or the bearer token may read it."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.accounts.wire import Imap, Pop3
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.ports import free_port
from tests.smtpclient.fake_server import FakeSMTP
from tests.spam.test_smtp_spam import CLEAN, SPAM
from tests.web.conftest import base_url

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(mh: MailhouseProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(base_url(mh) + "/metrics", headers=headers or {}, timeout=20)


def _samples(text: str) -> Samples:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(got: Samples, name: str, **labels: str) -> float:
    """The sum of NAME's samples whose labels include LABELS (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in got.items() if n == name and want <= set(ls))


def _until(mh: MailhouseProcess, cond: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """Scrape until COND holds (the queue runner counts after its pass); the last scrape."""
    end = time.monotonic() + timeout
    got = _samples(_scrape(mh).text)
    while not cond(got) and time.monotonic() < end:
        time.sleep(0.2)
        got = _samples(_scrape(mh).text)
    return got


def _start(
    tmp_path: Path, extra: str = "", services: tuple[str, ...] = ("smtp", "submission", "http")
) -> MailhouseProcess:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=services, extra=extra)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    return mh.start()


def test_counters_follow_traffic(tmp_path: Path) -> None:
    mh = _start(tmp_path)
    try:
        before = _samples(_scrape(mh).text)  # start() itself connected once to see the port open
        for _ in range(3):
            with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as s:
                s.noop()
        with smtplib.SMTP(*mh.addr("submission"), timeout=20) as s:
            s.starttls(context=ssl._create_unverified_context())  # the test server's own certificate
            s.ehlo()
            try:
                s.login("alice@example.org", "wrong password")
            except smtplib.SMTPAuthenticationError:
                pass
        r = _scrape(mh)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
        got = _samples(r.text)
        key = ("mailhouse_connections_total", (("result", "accepted"), ("service", "smtp")))
        assert got[key] - before[key] == 3
        auth = {k: v for k, v in got.items() if k[0] == "mailhouse_auth_failures_total"}
        # smtplib tries each mechanism the server offers (PLAIN, then LOGIN): one failure each
        assert list(auth) == [
            ("mailhouse_auth_failures_total", (("reason", "password"), ("service", "smtp")))
        ]
        assert auth[next(iter(auth))] >= 1
        assert got[("mailhouse_queue_messages", ())] == 0
        assert got[("mailhouse_nodes", ())] >= 1
        assert ("mailhouse_node_info", (("node", "mail.example.org"), ("version", "0.1.0"))) in got
    finally:
        mh.stop()


def test_workers_are_summed(tmp_path: Path) -> None:
    mh = _start(tmp_path, "[server]\nworkers = 2\n")
    try:
        key = ("mailhouse_connections_total", (("result", "accepted"), ("service", "smtp")))
        before = _samples(_scrape(mh).text)[key]
        for _ in range(12):  # spread over both workers by the shared listening socket
            with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as s:
                s.noop()
        for _ in range(3):  # whichever worker answers the scrape, it reports both
            assert _samples(_scrape(mh).text)[key] - before == 12
    finally:
        mh.stop()


def test_only_allowed_addresses_or_the_token(tmp_path: Path) -> None:
    mh = _start(tmp_path, '[metrics]\nallow_ips = ["192.0.2.0/24"]\ntoken = "s3cret-token"\n')
    try:
        assert _scrape(mh).status_code == 403  # loopback is not in allow_ips here
        assert _scrape(mh, {"Authorization": "Bearer wrong"}).status_code == 403
        r = _scrape(mh, {"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200 and "mailhouse_queue_messages" in r.text
    finally:
        mh.stop()


def test_messages_spam_deliveries_dns_and_store(tmp_path: Path) -> None:
    # routed.test: a [routes] entry to a closed port; sink.test: to a server taking friend@ and
    # refusing perm@ (5xx); elsewhere.test: MX look-up on the dead resolver
    sink = FakeSMTP().start_thread()
    mh = _start(
        tmp_path,
        "[limits]\nmax_message_size = 4000\n[routes]\n"
        f'"routed.test" = "127.0.0.1:{free_port()}"\n'
        f'"sink.test" = {{ host = "127.0.0.1", port = {sink.port}, tls = "none" }}\n',
    )
    try:
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            c.ehlo("mail.sender.test")
            for body, code in ((CLEAN, 250), (SPAM, 550), (CLEAN + b"x" * 5000 + b"\r\n", 552)):
                c.mail("ann@sender.test")  # no SIZE=: the size is found at the end of DATA
                c.rcpt("alice@example.org")
                assert c.data(body)[0] == code
                c.rset()
        with smtplib.SMTP(*mh.addr("submission"), timeout=30) as s:
            s.starttls(context=ssl._create_unverified_context())  # the test server's own certificate
            s.login("alice@example.org", PASSWORD)
            s.mail("alice@example.org")
            s.rcpt("bob@routed.test")
            assert s.data(CLEAN)[0] == 553  # From: ann@sender.test is not hers (MSA)
            s.rset()
            mine = CLEAN.replace(b"From: Ann <ann@sender.test>", b"From: alice@example.org")
            rcpts = ["bob@routed.test", "carol@elsewhere.test", "friend@sink.test", "perm@sink.test"]
            s.sendmail("alice@example.org", rcpts, mine)
        got = _until(mh, lambda g: _total(g, "mailhouse_deliveries_total") >= 4)
        msgs = "mailhouse_messages_total"
        assert _total(got, msgs, service="smtp", result="accepted", reason="ok") == 1
        assert _total(got, msgs, service="smtp", result="refused", reason="spam") == 1
        assert _total(got, msgs, service="smtp", result="refused", reason="size") == 1
        assert _total(got, msgs, service="submission", result="accepted", reason="ok") == 1
        assert _total(got, msgs, service="submission", result="refused", reason="other") == 1
        assert _total(got, "mailhouse_spam_verdicts_total", verdict="ham") == 1
        assert _total(got, "mailhouse_spam_verdicts_total", verdict="reject") == 1
        deliveries = "mailhouse_deliveries_total"
        assert _total(got, deliveries, result="deferred", destination="route") == 1
        assert _total(got, deliveries, result="deferred", destination="remote") == 1
        assert _total(got, deliveries, result="delivered", destination="route") == 1
        assert _total(got, deliveries, result="bounced", destination="route") == 1
        assert _total(got, deliveries) == 4
        assert _total(got, "mailhouse_dns_lookup_seconds_count", rdtype="MX") >= 1
        assert _total(got, "mailhouse_dns_lookup_seconds_bucket", rdtype="MX", le="+Inf") >= 1
        store = "mailhouse_store_transaction_seconds"
        assert _total(got, store + "_count", backend="sqlite", kind="write") >= 1
        assert _total(got, store + "_bucket", backend="sqlite", kind="read", le="+Inf") >= 1
        smtp_data = _total(got, "mailhouse_command_seconds_count", service="smtp", command="messageend")
        assert smtp_data == 5
    finally:
        mh.stop()
        sink.stop_thread()


def test_command_latency_and_bans(tmp_path: Path) -> None:
    extra = "[auth]\nallow_plaintext = true\nfailure_delay = 0.05\nmax_failure_delay = 0.1\nban_after = 2\n"
    mh = _start(tmp_path, extra, services=("smtp", "imap", "pop3", "http"))
    try:
        imap = Imap(mh.addr("imap"), "127.0.0.1")
        assert b"a1 OK" in imap.auth("alice@example.org", PASSWORD)
        imap.close()
        for _ in range(2):  # two failed logins from one address: banned
            pop3 = Pop3(mh.addr("pop3"), "127.44.0.1")
            assert pop3.auth("alice@example.org", "wrong").startswith(b"-ERR")
            pop3.close()
        got = _until(mh, lambda g: _total(g, "mailhouse_bans_total") >= 1)
        assert _total(got, "mailhouse_bans_total", source="auto") == 1
        cmd = "mailhouse_command_seconds"
        assert _total(got, cmd + "_count", service="imap", command="LOGIN") == 1
        assert _total(got, cmd + "_bucket", service="imap", command="LOGIN", le="+Inf") == 1
        assert _total(got, cmd + "_count", service="pop3", command="pass") == 2
        assert _total(got, cmd + "_count", service="pop3", command="user") == 2
        # every label value comes from a fixed set: never an address
        assert not [k for k in got if k[0].startswith("mailhouse_") and any("@" in v for _, v in k[1])]
    finally:
        mh.stop()
