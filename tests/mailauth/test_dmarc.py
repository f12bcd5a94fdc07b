"""DMARC rules on tables (RFC 7489, DMARCbis alignment): organisational domain (PSL, ICANN section
only), alignment, record parsing, discovery (§6.6.3), evaluation (p/sp/pct, several From domains)."""

from __future__ import annotations

import time

import pytest

from mailhouse.mailauth import dmarc
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import Discovery, DmarcRecord, Policy
from mailhouse.mailauth.spf import SpfResult


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("Mail.Example.COM.", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own organisational domain
        ("x.y.example.test", "example.test"),  # unknown TLD: the PSL's default rule "*"
        # private section ignored (ICANN only): user.github.io belongs to github.io's owner
        ("user.github.io", "github.io"),
        ("a.b.blogspot.com", "blogspot.com"),
        ("foo.bar.kawasaki.jp", "foo.bar.kawasaki.jp"),  # wildcard rule *.kawasaki.jp (ICANN)
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert dmarc.organizational_domain(domain) == org


@pytest.mark.parametrize(
    ("a", "b", "strict", "ok"),
    [
        ("example.com", "example.com", True, True),
        ("mail.example.com", "example.com", True, False),
        ("mail.example.com", "example.com", False, True),
        ("a.example.co.uk", "b.example.co.uk", False, True),
        ("example.co.uk", "other.co.uk", False, False),  # same public suffix is not alignment
        ("alice.github.io", "bob.github.io", False, True),  # ICANN only: one organisation
        ("EXAMPLE.com.", "example.COM", True, True),
        ("", "example.com", False, False),
    ],
)
def test_alignment(a: str, b: str, strict: bool, ok: bool) -> None:
    assert dmarc.aligned(a, b, strict) is ok


def test_parse_record() -> None:
    r = dmarc.parse_record("v=DMARC1; p=reject; sp=none; pct=20; adkim=s; aspf=s; rua=mailto:d@x.test")
    assert r == DmarcRecord(Policy.REJECT, Policy.NONE, 20, True, True, ("mailto:d@x.test",))
    r = dmarc.parse_record("v=DMARC1;p=quarantine")
    assert (r.p, r.sp, r.pct, r.adkim_strict, r.aspf_strict) == (
        Policy.QUARANTINE,
        Policy.QUARANTINE,
        100,
        False,
        False,
    )
    # §6.3: bad optional values fall back to defaults, unknown tags are ignored
    r = dmarc.parse_record("v=DMARC1; p=reject; pct=150; sp=bogus; adkim=x; foo=bar")
    assert (r.pct, r.sp, r.adkim_strict) == (100, Policy.REJECT, False)
    # §6.6.3 step 6: no valid p= but a valid rua= → p=none
    assert dmarc.parse_record("v=DMARC1; p=block; rua=mailto:a@b.test").p is Policy.NONE
    for bad in ("v=DMARC1; p=block", "v=DMARC1", "p=reject; v=DMARC1", "v=DMARC2; p=reject", ""):
        with pytest.raises(dmarc.RecordError):
            dmarc.parse_record(bad)


@pytest.mark.parametrize(
    ("head", "domains", "problem"),
    [
        (b"From: a@Example.COM\r\n\r\n", ["example.com"], ""),
        (b'From: "B" <b@x.test>, c@y.test\r\n\r\n', ["x.test", "y.test"], ""),
        (b"From: a@x.test\r\nFrom: b@evil.test\r\n\r\n", ["x.test", "evil.test"], ""),
        (b"Subject: none\r\n\r\n", [], "no From field"),
        (b"From: undisclosed\r\n\r\n", [], "no domain in From"),
        (b"From: a@bad..domain\r\n\r\n", [], "no domain in From"),
    ],
)
def test_author_domains(head: bytes, domains: list[str], problem: str) -> None:
    assert dmarc.author_domains(head) == (domains, problem)


class FakeDNS:
    """A table-driven TxtLookup for the discovery rules (end-to-end tests use dnsmasq)."""

    def __init__(self, records: dict[str, list[bytes]], fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.records, self.fail, self.asked = records, fail, []  # type: ignore[var-annotated]

    def __call__(self, name: str, timeout: float) -> list[bytes] | None:
        self.asked.append(name)
        if name in self.fail:
            raise dmarc.DnsTemporary("timeout")
        return self.records.get(name)


def _disc(domain: str, dns: FakeDNS) -> Discovery:
    return dmarc.discover(domain, dns, time.monotonic() + 5)


def test_discovery() -> None:
    dns = FakeDNS(
        {
            "_dmarc.example.com": [b"v=spf1 -all", b"v=DMARC1; p=reject; sp=quarantine"],
            "_dmarc.two.test": [b"v=DMARC1; p=none", b"v=DMARC1; p=reject"],
            "_dmarc.broken.test": [b"v=DMARC1; p=nothing"],
            "_dmarc.huge.test": [b"v=DMARC1; p=reject; x=" + b"a" * 5000],
        },
        fail={"_dmarc.down.test"},
    )
    d = _disc("example.com", dns)
    assert d.record is not None and d.record.p is Policy.REJECT and not d.at_org
    d = _disc("mail.example.com", dns)  # §6.6.3 step 3: the organisational domain's record
    assert (
        d.record is not None
        and d.at_org
        and dns.asked[-2:] == ["_dmarc.mail.example.com", "_dmarc.example.com"]
    )
    assert _disc("two.test", dns).error == "permerror"  # step 4: several records
    assert _disc("broken.test", dns).error == "permerror"  # step 6: unusable record
    assert _disc("huge.test", dns) == Discovery("huge.test", None, reason="no DMARC record")  # never parsed
    assert _disc("down.test", dns).error == "temperror"
    assert _disc("nothing.test", dns) == Discovery("nothing.test", None, reason="no DMARC record")
    expired = dmarc.discover("example.com", dns, time.monotonic() - 1)
    assert expired.error == "temperror"


REC = DmarcRecord(Policy.REJECT, Policy.QUARANTINE)


def _spf(result: str, domain: str) -> SpfResult:
    return SpfResult(result, "", domain, "mailfrom")


def _dkim(result: str, d: str) -> list[DkimResult]:
    return [DkimResult(result, d, "s", "rsa-sha256")]


def _never() -> float:
    raise AssertionError("pct sampling must not draw here")


@pytest.mark.parametrize(
    ("disc", "spf", "dkim", "result", "disposition"),
    [
        (Discovery("x.test", REC), _spf("pass", "x.test"), [], "pass", Policy.NONE),
        (Discovery("x.test", REC), _spf("pass", "bounce.x.test"), [], "pass", Policy.NONE),  # relaxed
        (
            Discovery("x.test", DmarcRecord(Policy.REJECT, Policy.REJECT, aspf_strict=True)),
            _spf("pass", "bounce.x.test"),
            [],
            "fail",
            Policy.REJECT,
        ),
        (Discovery("x.test", REC), _spf("pass", "other.test"), _dkim("pass", "x.test"), "pass", Policy.NONE),
        (
            Discovery("x.test", REC),
            _spf("pass", "other.test"),
            _dkim("pass", "other.test"),
            "fail",
            Policy.REJECT,
        ),
        (Discovery("x.test", REC), _spf("fail", "x.test"), _dkim("fail", "x.test"), "fail", Policy.REJECT),
        # a subdomain covered by the organisational record gets sp=
        (Discovery("a.x.test", REC, at_org=True), _spf("fail", "a.x.test"), [], "fail", Policy.QUARANTINE),
        (Discovery("x.test", None), _spf("fail", "x.test"), [], "none", Policy.NONE),
        (Discovery("x.test", None, error="permerror"), None, [], "permerror", Policy.NONE),
        (Discovery("x.test", None, error="temperror"), None, [], "temperror", Policy.NONE),
        # an unfinished DKIM check could have passed: temperror, not fail
        (
            Discovery("x.test", REC),
            _spf("fail", "x.test"),
            _dkim("temperror", "x.test"),
            "temperror",
            Policy.NONE,
        ),
    ],
)
def test_evaluate(
    disc: Discovery, spf: SpfResult | None, dkim: list[DkimResult], result: str, disposition: Policy
) -> None:
    r = dmarc.evaluate([disc], spf, dkim, rand=_never)
    assert (r.result, r.disposition) == (result, disposition), r


def test_pct_sampling_uses_the_injected_random() -> None:
    rec = DmarcRecord(Policy.REJECT, Policy.REJECT, pct=30)
    fail = _spf("fail", "x.test")
    inside = dmarc.evaluate([Discovery("x.test", rec)], fail, [], rand=lambda: 0.29)
    outside = dmarc.evaluate([Discovery("x.test", rec)], fail, [], rand=lambda: 0.30)
    assert (inside.disposition, inside.sampled_out) == (Policy.REJECT, False)
    # §6.6.4: outside the sample the next policy down applies (reject → quarantine)
    assert (outside.disposition, outside.sampled_out) == (Policy.QUARANTINE, True)
    q0 = DmarcRecord(Policy.QUARANTINE, Policy.QUARANTINE, pct=0)
    assert dmarc.evaluate([Discovery("x.test", q0)], fail, [], rand=lambda: 0.0).disposition is Policy.NONE


def test_several_author_domains_strictest_wins() -> None:
    ok = Discovery("x.test", REC)
    bad = Discovery("evil.test", DmarcRecord(Policy.QUARANTINE, Policy.QUARANTINE))
    worse = Discovery("bank.test", REC)
    spf = _spf("pass", "x.test")
    r = dmarc.evaluate([ok, bad, worse], spf, [], rand=_never)
    assert (r.result, r.from_domain, r.disposition) == ("fail", "bank.test", Policy.REJECT)
    assert dmarc.evaluate([ok], spf, [], rand=_never).result == "pass"
    assert dmarc.evaluate([], spf, [], rand=_never, problem="no From field").result == "permerror"
