"""Issue 12 items 1 and 4, webmail part (web/search.py): the webmail's search runs off the event
loop, scans bodies in windows, holds one message at a time and stops at the time budget with a
notice on the page. Over HTTP against a real ``mailhouse serve`` whose store is filled before it
starts; RSS sampled from ``/proc``, a second client's IMAP NOOP timed while the search runs."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailhouse.message.search import WINDOW, SearchLimits
from mailhouse.web import search as websearch
from tests.imapserver.test_search_limits import RSS_BOUND_KIB, RssSampler, _provision, big_messages
from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import folder_ids, login

SMALL = (
    b"From: Finder <finder@remote.test>\r\nTo: web@example.org\r\nSubject: small one\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>look for the <b>Hidden</b> treasure &amp; gold here</p>\r\n"
)


def _msg(body: bytes, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit") -> bytes:
    return (
        b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: Hello there\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
    )


def test_match_message_terms() -> None:
    lim = SearchLimits()
    raw = _msg(b"x" * (WINDOW - 3) + "Grüße aus Köln".encode())
    q = websearch.terms
    assert websearch.match_message(raw, q("body:GRÜSSE"), lim)
    assert websearch.match_message(raw, q('from:a@example "hello THERE"'), lim)
    assert not websearch.match_message(raw, q("subject:köln"), lim)
    b64 = _msg(base64.encodebytes("ünïcode in base64".encode()), cte="base64")
    assert websearch.match_message(b64, q("body:ÜNÏCODE"), lim)
    assert websearch.match_message(SMALL, q('body:"hidden treasure &"'), lim)  # HTML as text
    with pytest.raises(websearch.SearchTimeout):
        websearch.match_message(raw, q("body:nowhere"), SearchLimits(deadline=time.monotonic() - 1))


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("websearch")
    mh = MailhouseProcess(root)
    asyncio.run(_provision(mh, {"web": [*big_messages(), SMALL]}))
    return root


def _server(root: Path, budget: float) -> MailhouseProcess:
    return MailhouseProcess(
        root, services=("http", "imap"), extra=f"[limits]\nsearch_time_budget = {budget}\n"
    ).start()


@pytest.fixture(scope="module")
def web_server(web_root: Path) -> Iterator[MailhouseProcess]:
    mh = _server(web_root, 600.0)
    try:
        yield mh
    finally:
        mh.stop()


def _noop_probe(mh: MailhouseProcess, stop: threading.Event, times: list[float]) -> None:
    import imaplib

    imap = imaplib.IMAP4(*mh.addr("imap"), timeout=60)
    try:
        while not stop.is_set():
            t = time.perf_counter()
            imap.noop()
            times.append(time.perf_counter() - t)
            time.sleep(0.02)
    finally:
        imap.logout()


def test_web_search_over_big_messages_bounded(web_server: MailhouseProcess) -> None:
    c = login(web_server, "web@example.org")
    c.timeout = httpx.Timeout(600)
    inbox = folder_ids(c)["INBOX"]
    assert web_server.proc is not None
    stop, times = threading.Event(), []  # type: ignore[var-annotated]
    probe = threading.Thread(target=_noop_probe, args=(web_server, stop, times), daemon=True)
    probe.start()
    try:
        time.sleep(0.2)
        with RssSampler(web_server.proc.pid) as rss:
            r = c.get(f"/mail/{inbox}", params={"q": 'body:"hidden treasure"'})
    finally:
        stop.set()
        probe.join(60)
    assert r.status_code == 200
    assert "small one" in r.text and "1 found" in r.text, r.text[-2000:]
    assert websearch.TOO_LONG_NOTICE not in r.text
    assert rss.grown < RSS_BOUND_KIB, f"RSS grew by {rss.grown // 1024} MiB"
    # before this change: each 40 MB message was decoded and folded on the event loop
    assert len(times) > 3 and max(times) < 1.0, (len(times), max(times, default=0))


def test_web_search_time_budget_notice(web_root: Path) -> None:
    mh = _server(web_root, 0.2)
    try:
        c = login(mh, "web@example.org")
        c.timeout = httpx.Timeout(120)
        inbox = folder_ids(c)["INBOX"]
        t0 = time.monotonic()
        r = c.get(f"/mail/{inbox}", params={"q": "body:nowhere-to-be-found"})
        assert r.status_code == 200
        assert websearch.TOO_LONG_NOTICE in r.text
        assert time.monotonic() - t0 < 30
    finally:
        mh.stop()
