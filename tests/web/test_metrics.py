"""/metrics (web/metrics.py, mailhouse/metrics.py) scraped from a real Mailhouse and parsed with
Prometheus' own text parser: counters move with real traffic, workers are summed, and only
allowed addresses or the bearer token may read it."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import base_url


def _scrape(mh: MailhouseProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(base_url(mh) + "/metrics", headers=headers or {}, timeout=20)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _start(tmp_path: Path, extra: str = "") -> MailhouseProcess:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=("smtp", "submission", "http"), extra=extra)
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
