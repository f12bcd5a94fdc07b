"""Rspamd over its HTTP protocol (issue 14 §3, spam/rspamd.py), against Debian's rspamd started on
loopback (tests/peers/rspamd.py) with DNS from dnsmasq: GTUBE, a custom symbol from a local.d
multimap rule, the envelope headers Rspamd logs, Rspamd down or silent → RSPAMD_UNAVAILABLE within
the budget, the size cap, the reply → hits arithmetic, and the explanation through SMTP and
`mailhouse spam explain`."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Callable, Iterator

import pytest

from mailhouse.config import SpamConfig, default_config
from mailhouse.spam.lookup import Lookup
from mailhouse.spam.pipeline import SpamFilter, Verdict
from mailhouse.spam.rspamd import RspamdRule, hits_from_reply
from mailhouse.spam.rules import Hit
from mailhouse.spam.scan import GTUBE
from mailhouse.store.spool import SpooledMessage
from tests.helpers import mailbox
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.peers.ports import free_port
from tests.peers.rspamd import RspamdInstance
from tests.spam.helpers import GOOD_HEAD, ctx

WORD = b"mailhouse-rspamd-word"
MULTIMAP = """\
MAILHOUSE_TEST_WORD {
  type = "content";
  filter = "text";
  map = "${LOCAL_CONFDIR}/words.map";
  regexp = true;
  score = 4.2;
  description = "The body says the test word";
}
"""
WORDED = GOOD_HEAD + b"\r\nHello, this text has " + WORD + b" in it.\r\n"
CLEAN = GOOD_HEAD + b"\r\nHello, see you at noon.\r\n"


@pytest.fixture(scope="module")
def dns(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    # 192.0.2.10 has forward-confirmed reverse DNS: Rspamd gets it as Hostname
    return dns_server_factory(
        a={"mail.sender.test": "192.0.2.10"}, ptr={"10.2.0.192.in-addr.arpa": "mail.sender.test"}
    )


@pytest.fixture(scope="module")
def rspamd(dns: DNSServer) -> Iterator[RspamdInstance]:
    rs = RspamdInstance(nameserver=dns.nameserver, local_d={"multimap.conf": MULTIMAP})
    (rs.base_dir / "words.map").write_text(f"/{WORD.decode()}/i\n")
    rs.start()
    yield rs
    rs.stop()


def _lookup(dns: DNSServer) -> Lookup:
    return Lookup([(dns.host, int(dns.port or 0))])


def _check(rule: RspamdRule, message: bytes, **kw: object) -> list[Hit]:
    c = ctx(message, **kw)  # type: ignore[arg-type]
    c.queue_id, c.user = "4QtestQ1", None
    return asyncio.run(rule.check(c))


def _by_name(hits: list[Hit]) -> dict[str, Hit]:
    return {h.name: h for h in hits}


def test_gtube_through_rspamd_is_its_forced_reject(rspamd: RspamdInstance, dns: DNSServer) -> None:
    rule = RspamdRule(rspamd.url, 2 * 1024 * 1024, _lookup(dns))
    hits = _by_name(_check(rule, GOOD_HEAD + b"\r\n" + GTUBE + b"\r\n"))
    # Rspamd scores GTUBE's symbol 0 and forces 'reject' at its required score: the summary carries it
    summary = hits["RSPAMD"]
    assert summary.score == 15.0, summary
    assert "action 'reject'" in summary.reason and "GTUBE" in summary.reason
    assert "RSPAMD_UNAVAILABLE" not in hits


def test_custom_symbol_is_merged_with_its_score_and_description(
    rspamd: RspamdInstance, dns: DNSServer
) -> None:
    rule = RspamdRule(rspamd.url, 2 * 1024 * 1024, _lookup(dns))
    hits = _check(rule, WORDED)
    by = _by_name(hits)
    assert by["RSPAMD_MAILHOUSE_TEST_WORD"].score == 4.2
    assert by["RSPAMD_MAILHOUSE_TEST_WORD"].reason == "Rspamd: The body says the test word"
    # the lines add up to Rspamd's own score, which the summary line quotes
    assert f"Rspamd score {sum(h.score for h in hits):.2f}," in by["RSPAMD"].reason
    assert "RSPAMD_MAILHOUSE_TEST_WORD" not in _by_name(_check(rule, CLEAN))
    # forward-confirmed reverse DNS went as Hostname: Rspamd found no reason to doubt the client
    assert "RSPAMD_HFILTER_HOSTNAME_UNKNOWN" not in by and "RSPAMD_RDNS_NONE" not in by


def test_the_envelope_reaches_rspamd(rspamd: RspamdInstance, dns: DNSServer) -> None:
    rule = RspamdRule(rspamd.url, 2 * 1024 * 1024, _lookup(dns))
    c = ctx(CLEAN.replace(b"abc.123@", b"envelope.1@"))
    c.queue_id, c.user = "4QenvQ7", "alice@example.org"
    asyncio.run(rule.check(c))
    (line,) = [
        ln for ln in rspamd.logtext().splitlines() if "<envelope.1@sender.test>" in ln and "qid:" in ln
    ]
    for part in (
        "qid: <4QenvQ7>",
        "ip: 192.0.2.10",
        "user: alice@example.org",
        "from: <ann@sender.test>",
        "rcpts: <bob@example.org>",
    ):
        assert part in line, line


class Silent:
    """A TCP port that accepts connections and never answers (a hung Rspamd)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        n = 0
        try:
            while True:
                self.sock.accept()[0].close()
                n += 1
        except BlockingIOError:
            return n

    def close(self) -> None:
        self.sock.close()


def _pipeline(url: str, dns: DNSServer, timeout: float, **spam: object) -> SpamFilter:
    cfg = default_config()
    cfg.hostname = "mx.ours.test"
    cfg.dns_nameservers = [(dns.host, int(dns.port or 0))]
    cfg.spam = SpamConfig(timeout=timeout, rspamd_url=url, **spam)  # type: ignore[arg-type]
    return SpamFilter(cfg)


def _evaluate(f: SpamFilter, message: bytes) -> Verdict:
    msg = SpooledMessage.from_bytes(message)
    return asyncio.run(
        f.evaluate(msg, "192.0.2.10", "mail.sender.test", "ann@sender.test", ["bob@example.org"])
    )


def test_a_silent_rspamd_is_unavailable_within_the_budget(dns: DNSServer) -> None:
    silent = Silent()
    try:
        v = _evaluate(
            _pipeline(f"http://127.0.0.1:{silent.port}", dns, timeout=1.0), GOOD_HEAD + b"\r\n" + GTUBE
        )
        assert silent.connections() == 1  # it was asked
    finally:
        silent.close()
    by = _by_name(list(v.hits))
    assert v.unfinished == ()  # the rule gave its answer before the pipeline's deadline: no stall
    assert by["RSPAMD_UNAVAILABLE"].score == 0.0
    assert (
        "temporary error" in by["RSPAMD_UNAVAILABLE"].reason and "budget" in by["RSPAMD_UNAVAILABLE"].reason
    )
    assert v.hits[0].name == "GTUBE"  # our own rules still decided


def test_rspamd_down_is_unavailable(dns: DNSServer) -> None:
    v = _evaluate(_pipeline(f"http://127.0.0.1:{free_port()}", dns, timeout=2.0), CLEAN)
    by = _by_name(list(v.hits))
    assert v.unfinished == ()
    assert by["RSPAMD_UNAVAILABLE"].score == 0.0 and "ConnectError" in by["RSPAMD_UNAVAILABLE"].reason


def test_a_message_over_the_size_cap_is_not_sent(dns: DNSServer) -> None:
    silent = Silent()
    try:
        f = _pipeline(f"http://127.0.0.1:{silent.port}", dns, timeout=1.0, rspamd_max_size=1024)
        v = _evaluate(f, CLEAN + b"x" * 2000 + b"\r\n")
        assert silent.connections() == 0
    finally:
        silent.close()
    by = _by_name(list(v.hits))
    assert "RSPAMD_UNAVAILABLE" not in by
    assert by["RSPAMD_SKIPPED"].score == 0.0 and "rspamd_max_size" in by["RSPAMD_SKIPPED"].reason


def test_reply_arithmetic_and_bad_replies() -> None:
    hits = hits_from_reply(
        {
            "score": 7.0,
            "action": "add header",
            "symbols": {
                "A": {"name": "A", "score": 5.0, "options": ["x", "y"]},
                "B.c": {"name": "B.c", "score": 4.0, "description": "bee"},
                "Z": {"name": "Z", "score": 0.0},
            },
        }
    )
    by = _by_name(hits)
    assert by["RSPAMD_A"] == Hit("RSPAMD_A", 5.0, "Rspamd: x, y")
    assert by["RSPAMD_B_C"] == Hit("RSPAMD_B_C", 4.0, "Rspamd: bee")
    # a group limit took 2.0 off: the summary line says so, and the lines add up to Rspamd's 7.0
    assert by["RSPAMD"].score == -2.0 and "no score: Z" in by["RSPAMD"].reason
    assert sum(h.score for h in hits) == 7.0
    for bad in (
        [],
        {"score": "high"},
        {"score": float("nan")},
        {"symbols": []},
        {"score": 1, "symbols": {"A": {"score": None}}},
    ):
        with pytest.raises(ValueError):
            hits_from_reply(bad)


def test_explained_through_smtp_and_the_cli(
    mailhouse_factory: Callable[..., MailhouseProcess], rspamd: RspamdInstance, dns: DNSServer
) -> None:
    mh = mailhouse_factory(
        extra=f'[spam]\nrspamd_url = "{rspamd.url}"\n[dns]\nnameservers = ["{dns.nameserver}"]\n'
    )
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    msg = WORDED.replace(b"bob@", b"alice@")
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
        c.ehlo("mail.sender.test")
        assert c.sendmail("ann@sender.test", ["alice@example.org"], msg) == {}
    (stored,) = mailbox(mh, "alice@example.org") or mailbox(mh, "alice@example.org", "Junk")
    head = stored.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
    assert b"RSPAMD_MAILHOUSE_TEST_WORD" in head
    queue_id = (
        next(ln for ln in mh.logtext().splitlines() if "spam " in ln and "RSPAMD" in ln)
        .split("spam ", 1)[1]
        .split()[0]
    )
    out = mh.cli("spam", "explain", queue_id).stdout
    assert "4.2  RSPAMD_MAILHOUSE_TEST_WORD" in out and "Rspamd: The body says the test word" in out
    assert "RSPAMD  " in out and "Rspamd score" in out
    assert f"qid: <{queue_id}>" in rspamd.logtext()


def test_dnsmasq_answers_while_a_tcp_client_keeps_its_connection(dns: DNSServer) -> None:
    """Rspamd keeps TCP connections to its nameserver open; dnsmasq must go on answering UDP."""
    held = socket.create_connection((dns.host, int(dns.port or 0)), timeout=5)
    try:
        r = dns.resolver()
        r.lifetime = 3.0
        assert [a.to_text() for a in r.resolve("mail.sender.test", "A")] == ["192.0.2.10"]
    finally:
        held.close()
