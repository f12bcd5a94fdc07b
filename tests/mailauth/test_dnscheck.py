"""`mailauth/dnscheck.py` against a real DNS server (dnsmasq on loopback): right records pass by
meaning, wrong ones are named, and an unanswered resolver is "unknown", never "missing"."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from mailhouse.mailauth import dnscheck
from mailhouse.mailauth.dnscheck import Status
from mailhouse.mailauth.dnsrecords import records
from mailhouse.store.api import DkimKey
from tests.peers.dns import DNSServer

HOST = "mail.example.org"
KEY = DkimKey(
    "example.org",
    "mh",
    "ed25519-sha256",
    b"",
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
)
WANT = records(
    "example.org",
    HOST,
    [KEY],
    mta_sts_id="abc123",
    dmarc_rua="postmaster@example.org",
    tlsrpt_rua="postmaster@example.org",
)
GOOD = {
    "mx": {"example.org": [(10, HOST), (20, "backup.example.net")]},
    "a": {HOST: ["127.0.0.2"], "backup.example.net": ["127.0.0.9"], "autoconfig.example.org": ["127.0.0.2"]},
    "txt": {
        # more mechanisms than advised, still authorising the outbound address
        "example.org": [
            "v=spf1 ip4:192.0.2.0/24 mx include:_spf.example.org ~all",
            "google-site-verification=x",
        ],
        "_spf.example.org": ["v=spf1 -all"],
        "mh._domainkey.example.org": ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7h cvPapiMlrwIaaPcHURo="],
        "_dmarc.example.org": ["v=DMARC1; p=reject; rua=mailto:dmarc@elsewhere.example"],
        "_mta-sts.example.org": ["v=STSv1; id=abc123"],
        "_smtp._tls.example.org": ["v=TLSRPTv1; rua=mailto:postmaster@example.org"],
    },
    "srv": {"_imaps._tcp.example.org": [(5, 0, 993, HOST)]},
    "cname": {"mta-sts.example.org": HOST},
    "ptr": {"2.0.0.127.in-addr.arpa": HOST},
}


def _check(
    dns: DNSServer, want=WANT, source: tuple[str, ...] = ()
) -> dict[tuple[str, str], dnscheck.Finding]:
    host, port = dns.nameserver.rsplit(":", 1)
    ns = [(host, int(port))]
    checker = dnscheck.Checker(dnscheck.async_resolver(ns, 2.0), HOST, ns, source)
    findings = asyncio.run(checker.check("example.org", want))
    out = {}
    for f in findings:
        out.setdefault((f.name, f.type if f.record is None or f.record.kind != "dkim" else "DKIM"), f)
    return out


@pytest.fixture
def good() -> Iterator[DNSServer]:
    with DNSServer(**GOOD) as dns:
        yield dns


def test_right_records_pass_by_meaning(good: DNSServer) -> None:
    got = _check(good)
    for key in [
        ("example.org", "MX"),
        ("example.org", "TXT"),
        ("mh._domainkey.example.org", "DKIM"),
        ("_mta-sts.example.org", "TXT"),
        ("mta-sts.example.org", "CNAME"),
        ("_smtp._tls.example.org", "TXT"),
        ("_imaps._tcp.example.org", "SRV"),
        ("autoconfig.example.org", "CNAME"),
        ("2.0.0.127.in-addr.arpa", "PTR"),
    ]:
        assert got[key].status is Status.OK, (key, got[key])
    assert "backup.example.net" in got[("example.org", "MX")].detail
    assert "127.0.0.2" in got[("example.org", "TXT")].detail  # SPF evaluated for the outbound address
    # rua elsewhere is fine; p=reject is fine
    assert got[("_dmarc.example.org", "TXT")].status is Status.OK
    assert got[("_submissions._tcp.example.org", "SRV")].status is Status.MISSING
    assert not got[("_submissions._tcp.example.org", "SRV")].failed  # optional record
    assert not any(f.failed for f in got.values())


def test_wrong_records_are_named(good: DNSServer) -> None:
    good.update(
        txt={
            "example.org": ["v=spf1 ip4:192.0.2.1 -all", "v=spf1 mx -all"],
            "mh._domainkey.example.org": ["v=DKIM1; k=ed25519; p=AAAA"],
            "_dmarc.example.org": ["v=DMARC1; p=none"],
            "_mta-sts.example.org": ["v=STSv1; id=old1"],
        },
        mx={"example.org": [(10, "mx.other.example")]},
        a={HOST: ["127.0.0.2"], "mx.other.example": ["127.0.0.8"], "autoconfig.example.org": ["127.0.0.7"]},
        ptr={"2.0.0.127.in-addr.arpa": "elsewhere.example"},
    )
    got = _check(good)
    assert got[("example.org", "MX")].status is Status.DIFFERENT
    assert (
        got[("example.org", "TXT")].status is Status.DIFFERENT
        and "more than one" in got[("example.org", "TXT")].detail
    )
    assert got[("mh._domainkey.example.org", "DKIM")].status is Status.DIFFERENT
    assert got[("_dmarc.example.org", "TXT")].status is Status.WARNING  # p=none, and no rua=
    assert (
        got[("_mta-sts.example.org", "TXT")].status is Status.DIFFERENT
        and "old1" in got[("_mta-sts.example.org", "TXT")].detail
    )
    assert got[("autoconfig.example.org", "CNAME")].status is Status.DIFFERENT
    assert got[("2.0.0.127.in-addr.arpa", "PTR")].status is Status.DIFFERENT  # does not resolve back
    assert got[("example.org", "MX")].failed and got[("example.org", "TXT")].failed


def test_spf_that_does_not_authorise_the_outbound_address(good: DNSServer) -> None:
    good.update(txt={**GOOD["txt"], "example.org": ["v=spf1 ip4:192.0.2.1 -all"]})
    f = _check(good)[("example.org", "TXT")]
    assert f.status is Status.DIFFERENT and "127.0.0.2 gets fail" in f.detail


def test_missing_records_are_missing() -> None:
    with DNSServer(a={HOST: ["127.0.0.2"]}) as dns:
        got = _check(dns, source=("127.0.0.4",))  # [queue] source_address, with no PTR
    assert got[("example.org", "MX")].status is Status.MISSING and got[("example.org", "MX")].failed
    assert got[("_dmarc.example.org", "TXT")].status is Status.MISSING
    assert got[("4.0.0.127.in-addr.arpa", "PTR")].status is Status.MISSING


def test_unanswered_resolver_is_unknown_not_missing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:  # reads and never answers
        dead.bind(("127.0.0.1", 0))
        ns = [("127.0.0.1", dead.getsockname()[1])]
        checker = dnscheck.Checker(dnscheck.async_resolver(ns, 0.5), HOST, ns, ["127.0.0.2"])
        findings = asyncio.run(checker.check("example.org", WANT))
    assert findings and all(f.status is Status.UNKNOWN for f in findings), findings
    assert not any(f.failed for f in findings)
