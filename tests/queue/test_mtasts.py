"""MTA-STS (RFC 8461) in the outbound path, with real parts only: dnsmasq serving the MX and
`_mta-sts` TXT records, an HTTPS policy server on loopback with a certificate from a test CA,
and scriptable SMTP peers (tests/smtpclient/fake_server.py) whose certificates come from that
CA (mx.good.test) or from another one (mx.bad.test)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailhouse import config, services, tls
from mailhouse.proto.mtasts import MAX_AGE_LIMIT, Mode, PolicyError, mx_matches, parse_policy, parse_txt
from mailhouse.queue.mtasts import fetch_policy_text
from mailhouse.smtpclient.client import SmtpError
from mailhouse.smtpclient.tlsrpt import day_of, sending_ip
from mailhouse.store.api import ReportKind
from tests.smtpclient.fake_server import FakeSMTP
from tests.smtpclient.testca import TestCA

POLICY_HOST = "127.0.0.5"
GOOD, BAD = "127.0.0.21", "127.0.0.22"


def policy(mode: str, *mx: str, max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Answer:
    body: bytes
    status: str = "200 OK"
    content_type: str = "text/plain"
    delay: float = 0.0
    headers: tuple[str, ...] = ()


@dataclass
class PolicyServer:
    """HTTPS on loopback answering GET /.well-known/mta-sts.txt by the Host header."""

    answers: dict[str, Answer]
    requests: list[str] = field(default_factory=list)
    port: int = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            host = next(
                h.split(":", 1)[1].strip() for h in head.split("\r\n") if h.lower().startswith("host:")
            )
            self.requests.append(host)
            a = self.answers[host]
            await asyncio.sleep(a.delay)
            extra = "".join(h + "\r\n" for h in a.headers)
            writer.write(
                f"HTTP/1.1 {a.status}\r\nContent-Type: {a.content_type}\r\nContent-Length: {len(a.body)}\r\n"
                f"{extra}Connection: close\r\n\r\n".encode()
                + a.body
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


DOMAINS = {
    # domain: (MX host, policy answer)
    "enf.test": ("mx.good.test", Answer(policy("enforce", "mx.good.test"))),
    "wild.test": ("mx.good.test", Answer(policy("enforce", "*.good.test"))),
    "nomatch.test": ("mx.good.test", Answer(policy("enforce", "mx.elsewhere.test", "*.mx.good.test"))),
    "badcert.test": ("mx.bad.test", Answer(policy("enforce", "mx.bad.test"))),
    "testing.test": ("mx.bad.test", Answer(policy("testing", "mx.other.test"))),
    "none.test": ("mx.bad.test", Answer(policy("none"))),
    "malformed.test": ("mx.bad.test", Answer(b"version: STSv1\r\nmode: enforce\r\nthis is not a policy\r\n")),
    "big.test": ("mx.bad.test", Answer(policy("enforce", "mx.bad.test") + b"x: " + b"y" * 70000 + b"\r\n")),
    "slow.test": ("mx.bad.test", Answer(policy("enforce", "mx.bad.test"), delay=5.0)),
    "redirect.test": (
        "mx.bad.test",
        Answer(
            b"", status="301 Moved", headers=("Location: https://mta-sts.enf.test/.well-known/mta-sts.txt",)
        ),
    ),
    "html.test": ("mx.bad.test", Answer(policy("enforce", "mx.bad.test"), content_type="text/html")),
    "cache.test": ("mx.bad.test", Answer(policy("enforce", "mx.bad.test"))),
    # a Postfix peer as the MX, its certificate from the test CA for mx.pf.test only
    "pf.test": ("mx.pf.test", Answer(policy("enforce", "*.pf.test"))),
    "pfname.test": ("mx2.pf.test", Answer(policy("enforce", "*.pf.test"))),
}
PF = "127.0.0.23"


@dataclass
class Lab:
    dns: Any
    ca: TestCA
    server: PolicyServer
    good: FakeSMTP
    bad: FakeSMTP
    tmp: Path


@pytest.fixture(scope="module")
def dns(dns_server_factory: Any) -> Any:
    return dns_server_factory(
        mx={d: [(10, mx)] for d, (mx, _) in DOMAINS.items()},
        a={"mx.good.test": GOOD, "mx.bad.test": BAD, "mx.pf.test": PF, "mx2.pf.test": PF},
        txt={f"_mta-sts.{d}": ["v=STSv1; id=20261207a"] for d in DOMAINS},
    )


@pytest.fixture
async def lab(dns: Any, tmp_path: Path) -> AsyncIterator[Lab]:
    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "Other CA")
    server = PolicyServer({f"mta-sts.{d}": a for d, (_, a) in DOMAINS.items()})
    https = await asyncio.start_server(
        server.session, POLICY_HOST, 0, ssl=ca.server_context(*(f"mta-sts.{d}" for d in DOMAINS))
    )
    server.port = https.sockets[0].getsockname()[1]
    exts = ("PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME")
    good = await FakeSMTP(GOOD, extensions=exts, server_ssl=ca.server_context("mx.good.test")).start()
    bad = await FakeSMTP(
        BAD, good.port, extensions=exts, server_ssl=other.server_context("mx.bad.test")
    ).start()
    yield Lab(dns, ca, server, good, bad, tmp_path)
    for s in (good, bad):
        await s.stop()
    https.close()


def cfg_for(lab: Lab, **mta_sts: Any) -> config.Config:
    return config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(lab.tmp / "data"),
            "dns": {"nameservers": [lab.dns.nameserver]},
            "tls": {"ca_file": str(lab.ca.ca_file)},
            "queue": {"outbound_port": lab.good.port},
            "mta_sts": {
                "fetch_timeout": 1,
                "resolve": {f"mta-sts.{d}": f"{POLICY_HOST}:{lab.server.port}" for d in DOMAINS},
                **mta_sts,
            },
        }
    )


async def deliver(cfg: config.Config, qid: str, domain: str) -> Any:
    """One delivery pass by a fresh node on CFG's store; the queue entry after it (None: delivered)."""
    s = await services.build(cfg)
    try:
        await s.outbound.enqueue(
            qid, "alice@a.test", [(f"bob@{domain}", {})], b"Subject: x\r\n\r\nhi\r\n", {}
        )
        (entry,) = [e for e in await s.store.claim_due(time.time() + 1, "test", 60.0, 10) if e.id == qid]
        await s.outbound.process(entry)
        return await s.store.get(qid)
    finally:
        await s.outbound.pool.close()
        await s.store.close()


def deferred_with(entry: Any, text: str) -> bool:
    r = entry.recipients[0]
    return bool(r.status == "deferred" and r.last_reply.startswith("451 4.7.5") and text in r.last_reply)


@pytest.mark.parametrize("domain", ["enf.test", "wild.test"])
async def test_enforce_matching_mx_with_verified_certificate_is_delivered(lab: Lab, domain: str) -> None:
    assert await deliver(cfg_for(lab), "E1", domain) is None
    assert len(lab.good.transactions) == 1 and lab.good.tls_sessions == 1
    assert lab.server.requests == [f"mta-sts.{domain}"]


async def test_enforce_mx_not_in_policy_is_deferred(lab: Lab) -> None:
    entry = await deliver(cfg_for(lab), "E2", "nomatch.test")
    assert deferred_with(entry, "MTA-STS policy: no MX host of nomatch.test matches")
    assert lab.good.connections == 0


async def test_enforce_certificate_must_verify(lab: Lab) -> None:
    entry = await deliver(cfg_for(lab), "E3", "badcert.test")
    assert deferred_with(entry, "MTA-STS policy: certificate verification failed for mx.bad.test")
    assert not lab.bad.transactions


@pytest.mark.parametrize("domain", ["testing.test", "none.test"])
async def test_testing_and_none_deliver(lab: Lab, domain: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        assert await deliver(cfg_for(lab), "T1", domain) is None
    assert len(lab.bad.transactions) == 1
    if domain == "testing.test":
        assert "MTA-STS policy of testing.test (testing): MX mx.bad.test does not match" in caplog.text


@pytest.mark.parametrize("domain", ["malformed.test", "big.test", "slow.test", "redirect.test", "html.test"])
async def test_unusable_policy_without_cache_means_no_mta_sts(
    lab: Lab, domain: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        assert await deliver(cfg_for(lab), "U1", domain) is None  # delivered opportunistically
    assert len(lab.bad.transactions) == 1
    assert f"MTA-STS policy of {domain}:" in caplog.text
    assert lab.server.requests == [f"mta-sts.{domain}"]  # the redirect was not followed


async def test_policy_is_cached_across_nodes_and_kept_when_a_refresh_fails(lab: Lab, dns: Any) -> None:
    cfg = cfg_for(lab)
    assert deferred_with(await deliver(cfg, "C1", "cache.test"), "certificate verification failed")
    assert lab.server.requests == ["mta-sts.cache.test"]
    # another node on the same store: the shared cache, no fetch
    assert deferred_with(await deliver(cfg, "C2", "cache.test"), "certificate verification failed")
    assert lab.server.requests == ["mta-sts.cache.test"]
    # the TXT id changes → refetch; the fetch fails (slow) → the cached enforce policy stays
    lab.server.answers["mta-sts.cache.test"] = Answer(policy("none"), delay=5.0)
    txt = dict(dns.records["txt"])
    dns.update(txt={**txt, "_mta-sts.cache.test": ["v=STSv1; id=20261207b"]})
    try:
        assert deferred_with(await deliver(cfg, "C3", "cache.test"), "certificate verification failed")
        assert lab.server.requests == ["mta-sts.cache.test"] * 2
        # the refresh succeeds → the new policy (none) replaces the cache
        lab.server.answers["mta-sts.cache.test"] = Answer(policy("none"))
        assert await deliver(cfg, "C4", "cache.test") is None
        assert lab.server.requests == ["mta-sts.cache.test"] * 3
    finally:
        dns.update(txt=txt)


async def test_policy_fetch_verifies_the_https_certificate(lab: Lab) -> None:
    ctx = tls.client_context(verify=True)  # the system store only: the test CA is unknown
    with pytest.raises(PolicyError, match="does not verify"):
        await fetch_policy_text("enf.test", POLICY_HOST, lab.server.port, ctx, 5)
    ok = tls.client_context(verify=True, ca_file=lab.ca.ca_file)
    assert "mode: enforce" in await fetch_policy_text("enf.test", POLICY_HOST, lab.server.port, ok, 5)


# ---------------------------------------------------------------- parsing (RFC 8461 §3)


def test_parse_txt() -> None:
    assert parse_txt(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt(["v=spf1 -all", "v=STSv1;id=abc"]) == "abc"
    assert parse_txt(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # §3.1: more than one → none
    assert parse_txt(["v=STSv1; id=not-alnum"]) is None
    assert parse_txt([]) is None


def test_parse_policy_and_mx_patterns() -> None:
    p = parse_policy(
        policy("enforce", "mail.example.com", "*.example.net", max_age=10**9).decode(), "d", "1", 0
    )
    assert p.mode is Mode.ENFORCE and p.max_age == MAX_AGE_LIMIT
    assert p.matches("MAIL.example.com.") and p.matches("mx1.example.net")
    assert not p.matches("a.b.example.net") and not p.matches("example.net")
    assert mx_matches("x.example.net", "*.example.net") and not mx_matches("example.com", "*.example.com")
    lf = parse_policy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 60\nfoo: bar\n", "d", "1", 0)
    assert lf.mode is Mode.TESTING and lf.mx == ("a.test",)
    for bad in (
        "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a\n",
        "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n",
    ):
        with pytest.raises(PolicyError):
            parse_policy(bad, "d", "1", 0)
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 1\n", "d", "1", 0).mode is Mode.NONE


async def test_enforce_against_a_postfix_mx(lab: Lab, postfix_factory: Any) -> None:
    """Postfix with a certificate for mx.pf.test from the test CA: pf.test (MX mx.pf.test) is
    delivered over verified TLS; pfname.test (MX mx2.pf.test, the same Postfix, allowed by the
    policy's *.pf.test) fails the host name check and is deferred without a transaction."""
    pf = postfix_factory(
        host=PF, port=lab.good.port, domains=["pf.test", "pfname.test"], main=lab.ca.postfix_tls("mx.pf.test")
    )
    cfg = cfg_for(lab)
    assert await deliver(cfg, "P1", "pf.test") is None
    (msg,) = await asyncio.to_thread(pf.wait_delivered, 1, "bob@pf.test")
    assert b"Subject: x" in msg.read_bytes()
    assert "TLS connection established from" in pf.log(400)
    entry = await deliver(cfg, "P2", "pfname.test")
    assert deferred_with(entry, "MTA-STS policy: certificate verification failed for mx2.pf.test")
    assert pf.delivered("bob@pfname.test") == []


async def test_refresh_before_expiry_and_expiry(lab: Lab) -> None:
    """A cached policy is refetched after half its max_age (before it expires), and once
    expired with the policy server failing, there is no policy any more (RFC 8461 §5.1)."""
    from mailhouse.queue.mtasts import MtaSts
    from mailhouse.queue.routing import Router

    cfg = cfg_for(lab)
    s = await services.build(cfg)
    now = [time.time()]
    router = Router(cfg)
    mt = MtaSts(
        s.store,
        router.txt,
        router.addresses,
        tls.client_context(verify=True, ca_file=lab.ca.ca_file),
        resolve=cfg.mta_sts_resolve,
        fetch_timeout=1,
        clock=lambda: now[0],
    )
    try:
        p = await mt.policy("enf.test")
        assert p is not None and p.mode is Mode.ENFORCE and p.max_age == 86400
        now[0] += 3600
        assert await mt.policy("enf.test") == p and len(lab.server.requests) == 1  # cached
        now[0] += 86400 * 0.5  # past half of max_age: refreshed before expiry
        p2 = await mt.policy("enf.test")
        assert p2 is not None and p2.fetched == now[0] and len(lab.server.requests) == 2
        lab.server.answers["mta-sts.enf.test"] = Answer(b"broken")
        now[0] += 86400 * 0.6  # refresh fails: the cached (unexpired) policy stays
        assert await mt.policy("enf.test") == p2 and len(lab.server.requests) == 3
        now[0] += 86400  # expired, refresh fails: no policy
        assert await mt.policy("enf.test") is None
    finally:
        lab.server.answers["mta-sts.enf.test"] = DOMAINS["enf.test"][1]
        await s.store.close()


async def test_tls_outcomes_are_counted_for_tlsrpt(lab: Lab) -> None:
    """RFC 8460 §4.3: each MX session's TLS outcome under the MTA-STS policy is counted in the store
    (smtpclient/tlsrpt.py), success and certificate failure alike, for the daily report."""
    cfg = cfg_for(lab)
    assert await deliver(cfg, "R1", "enf.test") is None
    deferred_with(await deliver(cfg, "R2", "badcert.test"), "certificate verification failed")
    assert await deliver(cfg, "R3", "none.test") is None  # mode none: no policy for TLS-RPT either
    assert await deliver(cfg, "R4", "malformed.test") is None  # delivered without a policy …
    no_ca = cfg_for(lab)
    no_ca.tls_ca_file = None  # the policy host's certificate does not verify
    assert await deliver(no_ca, "R5", "wild.test") is None
    s = await services.build(cfg)
    try:
        found = await s.store.report_rows(ReportKind.TLSRPT, day_of(time.time()))
    finally:
        await s.store.close()
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        assert r.count == 1
        rows.setdefault(r.domain, []).append(json.loads(r.key))
    sts = ["version: STSv1", "mode: enforce", "mx: mx.good.test", "max_age: 86400"]
    assert rows["enf.test"] == [
        {"policy-type": "sts", "policy-string": sts, "mx-host": ["mx.good.test"], "result-type": ""}
    ]
    ((bad,),) = [rows["badcert.test"]]
    assert (bad["policy-type"], bad["result-type"], bad["receiving-mx-hostname"], bad["receiving-ip"]) == (
        "sts",
        "certificate-not-trusted",
        "mx.bad.test",
        BAD,
    )
    # §4.4 sending-mta-ip: the address this node connected from (loopback here)
    assert ipaddress.ip_address(bad["sending-mta-ip"]).is_loopback
    # mode none: no policy for TLS-RPT either; STARTTLS offered and done: a success
    assert [(r["policy-type"], r["result-type"]) for r in rows["none.test"]] == [("no-policy-found", "")]
    # the unusable policies are reported (RFC 8460 §4.3.2) beside the session that went without one
    for domain, result in (("malformed.test", "sts-policy-invalid"), ("wild.test", "sts-webpki-invalid")):
        assert sorted((r["policy-type"], r["result-type"]) for r in rows[domain]) == [
            ("no-policy-found", ""),
            ("sts", result),
        ]
    assert len(found) == 7


def test_sending_mta_ip_prefers_the_configured_source_address() -> None:
    """RFC 8460 §4.4: with `[queue] source_address` set, failures name it as sending-mta-ip."""
    err = SmtpError("451 4.7.5 certificate verification failed")
    assert sending_ip(err, "127.0.0.9", {4: "192.0.2.7"}) == "192.0.2.7"
    assert sending_ip(err, "127.0.0.9", {6: "2001:db8::7"}) == "127.0.0.1"  # none for IPv4: the kernel's
    assert sending_ip(err, "not-an-ip", {}) == ""
