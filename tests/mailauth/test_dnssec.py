"""In-process DNSSEC validation (mailauth/dnssec.py) against real signed zones: an authoritative
unbound serving zones signed by ldns-signzone (tests/peers/unbound.py) behind a recursive unbound
that does NOT validate, so every verdict here is Mailhouse's own. The trust anchor is the DS of
the test parent zone `test.`; its children: sec.test (signed, DS in test.), plain.test (unsigned
delegation, no DS), bogus.test (signed, TLSA signatures broken)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

from mailhouse import config
from mailhouse.mailauth.dnssec import Kind, Security, Validator, anchors_from, load_anchors
from mailhouse.queue.routing import Router
from tests.peers.unbound import ValidatingResolver, Zone

TLSA = "3 1 1 " + "ab" * 32


@pytest.fixture(scope="module")
def res(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValidatingResolver]:
    zones = [
        Zone("test", []),
        Zone(
            "sec.test",
            [
                "@ MX 10 mx",
                "mx A 127.0.0.31",
                f"_25._tcp.mx TLSA {TLSA}",
                "alias CNAME mx",
                "x.deep TXT hi",
                "*.wild TXT any",
            ],
        ),
        Zone("plain.test", ["@ MX 10 mx", "mx A 127.0.0.31", f"_25._tcp.mx TLSA {TLSA}"], signed=False),
        Zone("bogus.test", ["@ MX 10 mx", "mx A 127.0.0.31", f"_25._tcp.mx TLSA {TLSA}"], bogus={"TLSA"}),
    ]
    base = tmp_path_factory.mktemp("dnssec")
    r = ValidatingResolver(zones, plain_host="127.0.0.63", base_dir=base / "unbound").start()
    yield r
    r.stop()


def validator(res: ValidatingResolver, tmp_path: Path, anchor: str | None = None) -> Validator:
    path = tmp_path / "anchor"
    if anchor is None:
        res.write_trust_anchor(path)
    else:
        path.write_text(anchor)
    assert res.plain_port
    return Validator([(str(res.plain_host), res.plain_port)], anchors_from(path))


def test_the_resolver_does_not_validate(res: ValidatingResolver) -> None:
    """The premise: the plain resolver hands out broken signatures and never sets AD."""
    q = dns.message.make_query("_25._tcp.mx.bogus.test", "TLSA", want_dnssec=True)
    r = dns.query.udp(q, str(res.plain_host), port=res.plain_port, timeout=5)
    assert r.answer and not r.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("_25._tcp.mx.sec.test", "TLSA"),
        ("sec.test", "MX"),
        ("mx.sec.test", "A"),
        ("x.deep.sec.test", "TXT"),
        ("a.b.wild.sec.test", "TXT"),  # a wildcard expansion, with the NSEC3 proof of no closer name
    ],
)
async def test_signed_answers_are_secure(
    res: ValidatingResolver, tmp_path: Path, name: str, rdtype: str
) -> None:
    v = await validator(res, tmp_path).query(name, rdtype)
    assert (v.security, v.kind) == (Security.SECURE, Kind.ANSWER), v.detail
    assert v.rrset is not None and v.ttl > 0


async def test_cname_chain_is_followed_and_each_link_checked(res: ValidatingResolver, tmp_path: Path) -> None:
    v = await validator(res, tmp_path).query("alias.sec.test", "A")
    assert (v.security, v.kind, v.name.to_text()) == (Security.SECURE, Kind.ANSWER, "mx.sec.test.")


@pytest.mark.parametrize(
    ("name", "rdtype", "kind"),
    [
        ("mx.sec.test", "AAAA", Kind.NODATA),  # NSEC3 matching mx, no AAAA bit
        ("nx.sec.test", "TLSA", Kind.NXDOMAIN),  # closest encloser sec.test, next closer covered
        ("_25._tcp.nx.sec.test", "TLSA", Kind.NXDOMAIN),
        ("deep.sec.test", "TXT", Kind.NODATA),  # an empty non-terminal
    ],
)
async def test_denials_are_proved(
    res: ValidatingResolver, tmp_path: Path, name: str, rdtype: str, kind: Kind
) -> None:
    v = await validator(res, tmp_path).query(name, rdtype)
    assert (v.security, v.kind) == (Security.SECURE, kind), v.detail


async def test_broken_signature_is_bogus(res: ValidatingResolver, tmp_path: Path) -> None:
    val = validator(res, tmp_path)
    v = await val.query("_25._tcp.mx.bogus.test", "TLSA")
    assert v.security is Security.BOGUS and "TLSA" in v.detail
    assert (await val.query("bogus.test", "MX")).security is Security.SECURE  # only the TLSA RRset broke


@pytest.mark.parametrize(("name", "rdtype"), [("_25._tcp.mx.plain.test", "TLSA"), ("plain.test", "MX")])
async def test_unsigned_delegation_is_insecure(
    res: ValidatingResolver, tmp_path: Path, name: str, rdtype: str
) -> None:
    """test. proves (signed NSEC3 with NS, without DS) that plain.test has no DS: insecure."""
    v = await validator(res, tmp_path).query(name, rdtype)
    assert v.security is Security.INSECURE and "unsigned delegation" in v.detail


async def test_a_wrong_trust_anchor_makes_everything_bogus(res: ValidatingResolver, tmp_path: Path) -> None:
    good = res.anchors[0].split()
    digest = ("0" if good[-1][0] != "0" else "1") + good[-1][1:]
    wrong = f"test. IN DS {' '.join(good[2:5])} {digest}\n"
    val = validator(res, tmp_path, wrong)
    for name, rdtype in (("_25._tcp.mx.sec.test", "TLSA"), ("plain.test", "MX")):
        assert (await val.query(name, rdtype)).security is Security.BOGUS


async def test_a_dnskey_trust_anchor_works_too(res: ValidatingResolver, tmp_path: Path) -> None:
    q = dns.message.make_query("test.", "DNSKEY")
    keys = dns.query.udp(q, str(res.plain_host), port=res.plain_port, timeout=5).answer[0]
    val = validator(res, tmp_path, keys.to_text() + "\n")
    assert (await val.query("_25._tcp.mx.sec.test", "TLSA")).security is Security.SECURE


async def test_no_anchor_above_means_insecure(res: ValidatingResolver, tmp_path: Path) -> None:
    val = validator(res, tmp_path, "elsewhere. IN DS 1 13 2 " + "00" * 32 + "\n")
    assert (await val.query("sec.test", "MX")).security is Security.INSECURE


def test_default_anchor_is_the_root_ksk_20326() -> None:
    (ds,) = anchors_from(None)[dns.name.root]
    assert ds.key_tag == 20326 and ds.algorithm == 8 and ds.digest_type == 2  # type: ignore[attr-defined]


def test_anchor_file_must_hold_ds_or_dnskey() -> None:
    with pytest.raises(ValueError, match="not DS/DNSKEY"):
        load_anchors("example. IN A 192.0.2.1\n")
    with pytest.raises(ValueError, match="no DS or DNSKEY"):
        load_anchors("; nothing\n")


def test_a_bad_trust_anchor_file_is_a_config_error(tmp_path: Path) -> None:
    """`[dns] trust_anchor` that holds no DS/DNSKEY names the key at start-up (queue/routing.py)."""
    bad = tmp_path / "anchor"
    bad.write_text("example. IN A 192.0.2.1\n")
    cfg = config.from_dict(
        {"dns": {"nameservers": ["127.0.0.1:9"], "dnssec": "validate", "trust_anchor": str(bad)}}
    )
    with pytest.raises(config.ConfigError, match="dns.trust_anchor"):
        Router(cfg)
    cfg.dns_trust_anchor = None  # the built-in root key
    assert Router(cfg).validator is not None


async def test_a_wildcard_answer_without_its_proof_is_bogus(res: ValidatingResolver, tmp_path: Path) -> None:
    """RFC 5155 §8.8: the wildcard answer as served validates; the same answer with the NSEC3
    proof of "no closer name" stripped from the authority section (an on-path attacker
    answering for a name that does exist) is bogus."""
    val = validator(res, tmp_path)
    name = dns.name.from_text("a.b.wild.sec.test")
    q = dns.message.make_query(name, "TXT", want_dnssec=True)
    q.flags |= dns.flags.CD
    msg = dns.query.udp(q, str(res.plain_host), port=res.plain_port, timeout=5)
    zone = await val.zone(name)
    assert val._judge(msg, name, dns.rdatatype.TXT, zone).security is Security.SECURE
    msg.authority = []
    assert val._judge(msg, name, dns.rdatatype.TXT, zone).security is Security.BOGUS


async def test_results_are_cached_for_their_ttl(res: ValidatingResolver, tmp_path: Path) -> None:
    """Answers and zone keys are reused until the lowest TTL they rest on runs out (300 s in the
    zones; a little less when the resolver had them cached from an earlier test)."""
    now = [1000.0]
    path = res.write_trust_anchor(tmp_path / "anchor")
    val = Validator([(str(res.plain_host), res.plain_port)], anchors_from(path), clock=lambda: now[0])
    asked: list[str] = []
    ask = val._ask

    async def counting(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        asked.append(f"{name} {dns.rdatatype.to_text(rdtype)}")
        return await ask(name, rdtype)

    val._ask = counting  # type: ignore[method-assign]
    assert (await val.query("_25._tcp.mx.sec.test", "TLSA")).security is Security.SECURE
    first = len(asked)
    assert first > 1  # the answer, DS and DNSKEY along the chain
    now[0] += 100
    assert (await val.query("_25._tcp.mx.sec.test", "TLSA")).security is Security.SECURE
    assert len(asked) == first
    now[0] += 250  # past 300 s
    assert (await val.query("_25._tcp.mx.sec.test", "TLSA")).security is Security.SECURE
    assert len(asked) > first
