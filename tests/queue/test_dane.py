"""DANE (RFC 7672) in the outbound path, with real parts only: a validating unbound in front of
an authoritative unbound serving zones signed here by ldns-signzone (tests/peers/unbound.py),
TLSA records for a Postfix MX with its own certificate from a test CA, and Mailhouse's queue
runner with `[dns] dnssec = "resolver"` on that resolver.

Domains (each MX is the same Postfix, whose certificate names every MX host but mx-name):
ee / full (DANE-EE match) · ta (DANE-TA match) · bad (no record matches) · name (DANE-TA
match, but the certificate does not name the MX) · pkix (only PKIX usages: unusable) ·
notls (an MX without STARTTLS) · sts (DANE-EE match, and an MTA-STS enforce policy that does
not list its MX: DANE takes precedence) · bogus.test (TLSA signatures broken) · plain.test (unsigned
zone: its TLSA records do not count) · cnee/cnbad/cnta (MX host a CNAME of mx-ee/mx-bad/mx-ta) ·
nomx/nomxbad (no MX: the domain is its own MX, matching/mismatching TLSA) · nexthop (DANE-TA
match, the certificate names the domain but not its MX)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailhouse import config
from mailhouse.queue.routing import Router
from tests.peers.ports import free_port
from tests.peers.unbound import ValidatingResolver, Zone
from tests.queue.test_mtasts import Answer, PolicyServer, deliver, policy
from tests.smtpclient.fake_server import FakeSMTP
from tests.smtpclient.testca import TestCA

PF, NOTLS = "127.0.0.31", "127.0.0.32"
PF_NAMES = ("mx-ee", "mx-full", "mx-ta", "mx-bad", "mx-pkix", "mx-notls", "mx-sts")
DOMAINS = ["ee", "full", "ta", "bad", "name", "pkix", "notls", "sts"]
POLICY_HOST = "127.0.0.33"
# MX host names that are CNAMEs of other MX hosts (RFC 7672 §2.2.2): domain → CNAME target
CNAMES = {"cnbad": "mx-bad", "cnee": "mx-ee", "cnta": "mx-ta"}
# RFC 7672 §2.2.1: domains without MX records (their own A record is the implicit MX), with a
# matching / a mismatching TLSA record at _PORT._tcp.DOMAIN: domain → TLSA kind
IMPLICIT = {"nomx": "ee", "nomxbad": "bad"}
# RFC 7672 §3.2.2: the certificate names this next-hop domain, not its MX host (DANE-TA match)
NEXTHOP = "nexthop"
ROUTED = ["routed.test", "relayed.test"]  # sent through a route / the relayhost to a named host


@dataclass
class Lab:
    res: ValidatingResolver
    pf: Any
    port: int
    tmp: Path
    ca: TestCA
    policy_port: int


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dane")


@pytest.fixture(scope="module")
def ca(tmp_module: Path) -> TestCA:
    return TestCA(tmp_module / "ca")


@pytest.fixture(scope="module")
def postfix(ca: TestCA, postfix_factory: Any) -> Any:
    names = (*PF_NAMES, NEXTHOP)
    cert, key = ca.issue(*(f"{n}.dane.test" for n in names), "mx.bogus.test", "mx.plain.test")
    return postfix_factory(
        host=PF,
        port=free_port(PF),
        domains=[f"{d}.dane.test" for d in [*DOMAINS, *CNAMES, *IMPLICIT, NEXTHOP]]
        + ["bogus.test", "plain.test", *ROUTED],
        main={
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_loglevel": "1",
        },
    )


@pytest.fixture(scope="module")
def resolver(ca: TestCA, postfix: Any, tmp_module: Path) -> Iterator[ValidatingResolver]:
    leaf_pem = Path(postfix.main_cf()["smtpd_tls_cert_file"]).read_bytes()
    leaf = x509.load_pem_x509_certificates(leaf_pem)[0]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ee = f"3 1 1 {_sha256(spki)}"
    ta = f"2 0 1 {_sha256(ca.cert.public_bytes(Encoding.DER))}"
    other_ca = TestCA(tmp_module / "other", "Other CA")
    wrong = [f"3 1 1 {secrets.token_hex(32)}", f"2 0 1 {_sha256(other_ca.cert.public_bytes(Encoding.DER))}"]
    port = postfix.port
    tlsa = {
        "ee": [ee],
        "full": [f"3 0 2 {hashlib.sha512(leaf.public_bytes(Encoding.DER)).hexdigest()}"],
        "ta": [ta],
        "bad": wrong,
        "name": [ta],
        "pkix": [f"1 1 1 {_sha256(spki)}", f"0 0 1 {_sha256(ca.cert.public_bytes(Encoding.DER))}"],
        "notls": [ee],
        "sts": [ee],
    }
    records: list[str] = []
    for d in DOMAINS:
        records += [f"{d} MX 10 mx-{d}", f"mx-{d} A {NOTLS if d == 'notls' else PF}"]
        records += [f"_{port}._tcp.mx-{d} TLSA {t}" for t in tlsa[d]]
    records.append('_mta-sts.sts TXT "v=STSv1; id=20261207"')
    for d, target in CNAMES.items():
        records += [f"{d} MX 10 mx-{d}", f"mx-{d} CNAME {target}"]
    for d, kind in IMPLICIT.items():
        records += [f"{d} A {PF}", *(f"_{port}._tcp.{d} TLSA {t}" for t in tlsa[kind])]
    records += [
        f"{NEXTHOP} MX 10 mx-{NEXTHOP}",
        f"mx-{NEXTHOP} A {PF}",
        f"_{port}._tcp.mx-{NEXTHOP} TLSA {ta}",
    ]
    same = ["@ MX 10 mx", f"mx A {PF}"]
    zones = [
        Zone("test", []),  # the parent: DS of dane.test and bogus.test, and proof that plain.test has none
        Zone("dane.test", records),
        Zone("bogus.test", [*same, f"_{port}._tcp.mx TLSA {ee}"], bogus={"TLSA"}),
        Zone("plain.test", [*same, f"_{port}._tcp.mx TLSA {wrong[0]}"], signed=False),
    ]
    # plain_host: a non-validating resolver for [dns] dnssec = "validate" (Mailhouse validates)
    res = ValidatingResolver(zones, plain_host="127.0.0.63", base_dir=tmp_module / "unbound").start()
    yield res
    res.stop()


@pytest.fixture
async def lab(resolver: ValidatingResolver, postfix: Any, ca: TestCA, tmp_path: Path) -> AsyncIterator[Lab]:
    notls = await FakeSMTP(NOTLS, postfix.port, extensions=("PIPELINING", "ENHANCEDSTATUSCODES")).start()
    # an MTA-STS enforce policy for sts.dane.test that names another MX (tests/queue/test_mtasts.py)
    server = PolicyServer({"mta-sts.sts.dane.test": Answer(policy("enforce", "mx.elsewhere.test"))})
    https = await asyncio.start_server(
        server.session, POLICY_HOST, 0, ssl=ca.server_context("mta-sts.sts.dane.test")
    )
    yield Lab(resolver, postfix, postfix.port, tmp_path, ca, https.sockets[0].getsockname()[1])
    https.close()
    await notls.stop()


def cfg_for(lab: Lab, dnssec: str = "resolver", **extra: Any) -> config.Config:
    """With "validate", the nameserver is the non-validating unbound and the trust anchor the
    DS of the test zone `test.`: every DNSSEC verdict is Mailhouse's own."""
    dns: dict[str, Any] = {"nameservers": [lab.res.nameserver], "dnssec": dnssec}
    if dnssec == "validate":
        anchor = lab.res.write_trust_anchor(lab.tmp / "anchor.ds")
        dns = {"nameservers": [lab.res.plain_nameserver], "dnssec": dnssec, "trust_anchor": str(anchor)}
    return config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(lab.tmp / "data"),
            "dns": dns,
            "queue": {"outbound_port": lab.port},
            "tls": {"ca_file": str(lab.ca.ca_file)},
            "mta_sts": {"resolve": {"mta-sts.sts.dane.test": f"{POLICY_HOST}:{lab.policy_port}"}},
            **extra,
        }
    )


def deferred_dane(entry: Any, text: str) -> bool:
    r = entry.recipients[0]
    return bool(r.status == "deferred" and r.last_reply.startswith("451 4.7.5 DANE") and text in r.last_reply)


async def delivered(lab: Lab, address: str, before: int = 0) -> bytes:
    """The message delivered to ADDRESS after BEFORE others (tests run once per [dns] dnssec mode)."""
    files = await asyncio.to_thread(lab.pf.wait_delivered, before + 1, address)
    assert len(files) == before + 1
    return files[-1].read_bytes()


MODES = ["resolver", "validate"]  # [dns] dnssec: the resolver's AD bit, or validated in-process


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("domain", ["ee", "full", "ta"])
async def test_matching_tlsa_is_delivered_over_dane_authenticated_tls(
    lab: Lab, domain: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    before = len(lab.pf.delivered(f"bob@{domain}.dane.test"))
    assert await deliver(cfg_for(lab, mode), f"D{domain.upper()}{mode[0]}", f"{domain}.dane.test") is None
    assert b"Subject: x" in await delivered(lab, f"bob@{domain}.dane.test", before)
    assert f"DANE success for {domain}.dane.test MX mx-{domain}.dane.test" in caplog.text


@pytest.mark.parametrize("mode", MODES)
async def test_mismatch_is_deferred_and_nothing_is_sent(
    lab: Lab, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    entry = await deliver(cfg_for(lab, mode), "DBAD" + mode[0], "bad.dane.test")
    assert deferred_dane(entry, "no TLSA record of mx-bad.dane.test matches")
    assert "DANE failure for bad.dane.test MX mx-bad.dane.test: tlsa-invalid" in caplog.text
    assert lab.pf.delivered("bob@bad.dane.test") == []


async def test_dane_ta_checks_the_mx_name(lab: Lab) -> None:
    """RFC 7672 §3.2.2: a DANE-TA match still needs the MX host name in the certificate."""
    entry = await deliver(cfg_for(lab), "DNAME", "name.dane.test")
    assert deferred_dane(entry, "does not name mx-name.dane.test")
    assert lab.pf.delivered("bob@name.dane.test") == []


async def test_without_starttls_there_is_no_cleartext_fallback(lab: Lab) -> None:
    entry = await deliver(cfg_for(lab), "DNOTLS", "notls.dane.test")
    assert deferred_dane(entry, "STARTTLS not offered")


@pytest.mark.parametrize("mode", MODES)
async def test_bogus_tlsa_signatures_defer(lab: Lab, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """The TLSA RRset of bogus.test has broken signatures: the validating resolver answers
    SERVFAIL ("resolver"), Mailhouse's validator finds it bogus ("validate"), so the MX is not
    used (RFC 7672 §2.2), although the record would match."""
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    entry = await deliver(cfg_for(lab, mode), "DBOGUS" + mode[0], "bogus.test")
    assert deferred_dane(entry, "TLSA lookup of _")
    assert "dnssec-invalid" in caplog.text
    assert lab.pf.delivered("bob@bogus.test") == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("domain", ["plain.test", "pkix.dane.test"])
async def test_unsigned_zone_or_unusable_records_mean_opportunistic_tls(
    lab: Lab, domain: str, mode: str
) -> None:
    """plain.test publishes a non-matching TLSA record in an unsigned zone, pkix.dane.test only
    PKIX usages (RFC 7672 §3.1.3): neither is DANE, the message goes over opportunistic TLS."""
    before = len(lab.pf.delivered(f"bob@{domain}"))
    assert await deliver(cfg_for(lab, mode), "DOPP" + domain[:4].upper() + mode[0], domain) is None
    assert b"Subject: x" in await delivered(lab, f"bob@{domain}", before)


async def test_dnssec_off_means_no_dane(lab: Lab) -> None:
    assert await deliver(cfg_for(lab, dnssec="off"), "DOFF", "bad.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@bad.dane.test")


async def test_dane_takes_precedence_over_mta_sts(lab: Lab) -> None:
    """RFC 8461 §2: sts.dane.test's MX has a matching TLSA record; its MTA-STS enforce policy
    names another MX, which alone would defer the message (dnssec = "off" shows it)."""
    entry = await deliver(cfg_for(lab, dnssec="off"), "DSTSOFF", "sts.dane.test")
    assert entry.recipients[0].last_reply.startswith("451 4.7.5 MTA-STS policy")
    assert await deliver(cfg_for(lab), "DSTS", "sts.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@sts.dane.test")


async def test_only_validated_answers_are_cached(resolver: ValidatingResolver) -> None:
    """With dnssec = "resolver", an unvalidated MX answer is not kept for its TTL (it would keep
    DANE off that long); a validated one is."""
    cfg = config.from_dict({"dns": {"nameservers": [resolver.nameserver], "dnssec": "resolver"}})
    router = Router(cfg)
    (ee,) = await router.mx_targets("ee.dane.test")
    (plain,) = await router.mx_targets("plain.test")
    assert ee.secure and not plain.secure
    cache = router.resolver.cache
    assert cache is not None
    key = (dns.name.from_text("ee.dane.test"), dns.rdatatype.MX, dns.rdataclass.IN)
    assert cache.get(key) is not None
    assert cache.get((dns.name.from_text("plain.test"), dns.rdatatype.MX, dns.rdataclass.IN)) is None


@pytest.mark.parametrize("mode", MODES)
async def test_tlsa_of_the_cname_expanded_mx_name_is_used(
    lab: Lab, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 7672 §2.2.2: mx-cnbad.dane.test is a CNAME of mx-bad (whose TLSA does not match) and
    has no TLSA of its own: the expanded name's records apply, so nothing is sent; mx-cnee is a
    CNAME of mx-ee (matching TLSA): delivered over DANE."""
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    entry = await deliver(cfg_for(lab, mode), "DCNBAD" + mode[0], "cnbad.dane.test")
    assert deferred_dane(entry, "no TLSA record of mx-cnbad.dane.test matches")
    assert lab.pf.delivered("bob@cnbad.dane.test") == []
    before = len(lab.pf.delivered("bob@cnee.dane.test"))
    assert await deliver(cfg_for(lab, mode), "DCNEE" + mode[0], "cnee.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@cnee.dane.test", before)
    assert "DANE success for cnee.dane.test MX mx-cnee.dane.test" in caplog.text


@pytest.mark.parametrize("mode", MODES)
async def test_routes_and_relayhost_to_a_named_host_use_its_tlsa(lab: Lab, mode: str) -> None:
    """RFC 7672 §2.2.1: a next hop named in the configuration (route, relayhost) with secure
    addresses gets a TLSA look-up like an MX host: mx-bad's records do not match (deferred, even
    though the route only asks for opportunistic TLS); mx-ee's do (delivered)."""
    route = {"host": "mx-bad.dane.test", "port": lab.port, "tls": "opportunistic"}
    routed = len(lab.pf.delivered("bob@routed.test"))  # the other mode's run delivered one too
    entry = await deliver(cfg_for(lab, mode, routes={"routed.test": route}), "DRT" + mode[0], "routed.test")
    assert deferred_dane(entry, "no TLSA record of mx-bad.dane.test matches")
    assert len(lab.pf.delivered("bob@routed.test")) == routed
    relay = {"host": "mx-ee.dane.test", "port": lab.port, "tls": "opportunistic"}
    before = len(lab.pf.delivered("bob@relayed.test"))
    assert await deliver(cfg_for(lab, mode, relayhost=relay), "DRH" + mode[0], "relayed.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@relayed.test", before)
    # tls = "none" opts out of DANE: the route is used in the clear, as configured
    plain = {**route, "tls": "none"}
    assert (
        await deliver(cfg_for(lab, mode, routes={"routed.test": plain}), "DRN" + mode[0], "routed.test")
        is None
    )
    assert b"Subject: x" in await delivered(lab, "bob@routed.test", routed)


@pytest.mark.parametrize("mode", MODES)
async def test_dane_ta_accepts_the_cname_expanded_mx_name(
    lab: Lab, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 7672 §3.2.2: mx-cnta.dane.test is a secure CNAME of mx-ta (DANE-TA match); the
    certificate names mx-ta, not mx-cnta: the expanded name is a reference identifier too."""
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    before = len(lab.pf.delivered("bob@cnta.dane.test"))
    assert await deliver(cfg_for(lab, mode), "DCNTA" + mode[0], "cnta.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@cnta.dane.test", before)
    assert "DANE success for cnta.dane.test MX mx-cnta.dane.test" in caplog.text


async def test_dane_ta_accepts_the_next_hop_domain(lab: Lab) -> None:
    """RFC 7672 §3.2.2: the certificate names nexthop.dane.test (the recipient domain), not its
    MX host mx-nexthop: the next-hop domain is a reference identifier."""
    assert await deliver(cfg_for(lab), "DNEXTHOP", "nexthop.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@nexthop.dane.test")


@pytest.mark.parametrize("mode", MODES)
async def test_implicit_mx_uses_the_tlsa_of_the_domain(
    lab: Lab, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 7672 §2.2.1 / RFC 5321 §5.1: nomx.dane.test and nomxbad.dane.test have no MX record;
    their secure A record makes each its own MX host, with TLSA at _PORT._tcp.DOMAIN: nomx's
    matches (delivered over DANE), nomxbad's does not (deferred, nothing sent)."""
    caplog.set_level(logging.INFO, "mailhouse.queue.runner")
    before = len(lab.pf.delivered("bob@nomx.dane.test"))
    assert await deliver(cfg_for(lab, mode), "DNOMX" + mode[0], "nomx.dane.test") is None
    assert b"Subject: x" in await delivered(lab, "bob@nomx.dane.test", before)
    assert "DANE success for nomx.dane.test MX nomx.dane.test" in caplog.text
    entry = await deliver(cfg_for(lab, mode), "DNOMXBAD" + mode[0], "nomxbad.dane.test")
    assert deferred_dane(entry, "no TLSA record of nomxbad.dane.test matches")
    assert lab.pf.delivered("bob@nomxbad.dane.test") == []
