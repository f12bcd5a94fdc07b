"""DNS block/allow lists, domain lists, reverse DNS / FCrDNS / HELO — answered by a real dnsmasq on
loopback (tests/peers/dns.py). Each rule has a case that fires and one that does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailhouse.spam.dnslists import DomainLists, IpLists, interpret
from mailhouse.spam.lookup import Lookup, reverse_name
from mailhouse.spam.rdns import ClientDns
from tests.peers.dns import DNSServer
from tests.spam.helpers import GOOD_HEAD, HOST, ctx, names, run

V6 = "2001:db8::1"
V6_NIBBLES = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"


@pytest.fixture(scope="module")
def dns(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    return dns_server_factory(
        a={
            # block list bl.test: 192.0.2.10 and 2001:db8::1 listed
            "10.2.0.192.bl.test": "127.0.0.2",
            f"{V6_NIBBLES}.bl.test": "127.0.0.4",
            # Spamhaus: 192.0.2.11 listed (SBL); 192.0.2.12 answered with the public-resolver error
            "11.2.0.192.zen.spamhaus.org": "127.0.0.2",
            "12.2.0.192.zen.spamhaus.org": "127.255.255.254",
            "13.2.0.192.zen.spamhaus.org": "127.255.255.252",
            # a resolver that wildcards: an answer outside 127/8 is no listing
            "14.2.0.192.bl.test": "192.0.2.1",
            # allow list wl.test: 192.0.2.10 welcome
            "10.2.0.192.wl.test": "127.0.10.2",
            # domain list dbl.test
            "spammer.test.dbl.test": "127.0.1.2",
            "badlink.test.dbl.test": "127.0.1.2",
            "blockedfrom.test.dbl.test": "127.0.1.2",
            "refused.test.dbl.test": "127.255.255.254",
            # reverse DNS: 192.0.2.20 ↔ mail.good.test; 192.0.2.21 → mail.liar.test → 192.0.2.99
            "mail.good.test": "192.0.2.20",
            "mail.liar.test": "192.0.2.99",
        },
        ptr={
            "20.2.0.192.in-addr.arpa": "mail.good.test",
            "21.2.0.192.in-addr.arpa": "mail.liar.test",
        },
    )


def lookup(dns: DNSServer) -> Lookup:
    return Lookup([(dns.host, int(dns.port or 53))])


def test_reverse_names() -> None:
    assert reverse_name("192.0.2.10") == "10.2.0.192"  # RFC 5782 §2.1
    assert reverse_name(V6) == V6_NIBBLES  # RFC 5782 §2.4
    assert reverse_name("::ffff:192.0.2.10") == "10.2.0.192"
    assert reverse_name("not-an-ip") is None


def test_answers_are_interpreted_per_zone() -> None:
    assert interpret("zen.spamhaus.org", ["127.0.0.2"]) == ("127.0.0.2", None)
    for err in ("127.255.255.252", "127.255.255.254", "127.255.255.255"):
        assert interpret("zen.spamhaus.org", [err]) == (None, err)
    assert interpret("list.dnswl.org", ["127.0.0.255"]) == (None, "127.0.0.255")
    assert interpret("bl.test", ["10.0.0.1"]) == (None, "10.0.0.1")
    assert interpret("bl.test", []) == (None, None)


def test_listed_client_fires_with_the_zone_and_code(dns: DNSServer) -> None:
    rule = IpLists(lookup(dns), ["bl.test", "zen.spamhaus.org=6"], [])
    (hit,) = run(rule, ctx(GOOD_HEAD, ip="192.0.2.11"))
    assert hit.name == "RCVD_IN_DNSBL_ZEN_SPAMHAUS_ORG" and hit.score == 6.0
    assert "SBL" in hit.reason and "192.0.2.11" in hit.reason
    (hit,) = run(rule, ctx(GOOD_HEAD, ip="192.0.2.10"))
    assert hit.name == "RCVD_IN_DNSBL_BL_TEST" and hit.score == 4.0


def test_ipv6_client_is_looked_up_by_nibbles(dns: DNSServer) -> None:
    assert names(run(IpLists(lookup(dns), ["bl.test"], []), ctx(GOOD_HEAD, ip=V6))) == {
        "RCVD_IN_DNSBL_BL_TEST"
    }


def test_unlisted_and_error_codes_do_not_fire(dns: DNSServer) -> None:
    rule = IpLists(lookup(dns), ["bl.test", "zen.spamhaus.org"], [])
    for ip in ("192.0.2.50", "192.0.2.12", "192.0.2.13", "192.0.2.14", "2001:db8::2"):
        assert run(rule, ctx(GOOD_HEAD, ip=ip)) == [], ip


def test_allow_list_scores_negative(dns: DNSServer) -> None:
    rule = IpLists(lookup(dns), [], ["wl.test"])
    (hit,) = run(rule, ctx(GOOD_HEAD, ip="192.0.2.10"))
    assert hit.name == "RCVD_IN_DNSWL_WL_TEST" and hit.score < 0
    assert run(rule, ctx(GOOD_HEAD, ip="192.0.2.50")) == []


def test_domain_lists_check_envelope_from_and_links(dns: DNSServer) -> None:
    rule = DomainLists(lookup(dns), ["dbl.test"])
    (hit,) = run(rule, ctx(GOOD_HEAD + b"\r\nhi\r\n", mail_from="x@spammer.test"))
    assert hit.name == "DOMAIN_IN_DBL_TEST" and "envelope sender" in hit.reason
    head = GOOD_HEAD.replace(b"ann@sender.test", b"ann@blockedfrom.test")
    (hit,) = run(rule, ctx(head + b"\r\nhi\r\n"))
    assert "From domain blockedfrom.test" in hit.reason
    (hit,) = run(rule, ctx(GOOD_HEAD + b"\r\nsee https://www.badlink.test/x\r\n"))
    assert "a link domain badlink.test" in hit.reason


def test_domain_lists_do_not_fire_for_clean_or_refused_domains(dns: DNSServer) -> None:
    rule = DomainLists(lookup(dns), ["dbl.test"])
    msg = GOOD_HEAD + b"\r\nsee https://clean.test/ and http://refused.test/ and http://192.0.2.1/\r\n"
    assert run(rule, ctx(msg)) == []


def test_domain_lookups_are_bounded(dns: DNSServer) -> None:
    body = b"".join(b"http://host%d.test/ " % i for i in range(500)) + b"http://badlink.test/\r\n"
    # the listed link comes after MAX_DOMAIN_LOOKUPS others: not looked up
    assert run(DomainLists(lookup(dns), ["dbl.test"]), ctx(GOOD_HEAD + b"\r\n" + body)) == []


def test_no_ptr_fires_rdns_none(dns: DNSServer) -> None:
    assert names(run(ClientDns(lookup(dns), HOST), ctx(GOOD_HEAD, ip="192.0.2.22"))) == {"RDNS_NONE"}


def test_ptr_not_resolving_back_fires_fcrdns(dns: DNSServer) -> None:
    hits = run(ClientDns(lookup(dns), HOST), ctx(GOOD_HEAD, ip="192.0.2.21"))
    assert names(hits) == {"FCRDNS_FAIL"}
    assert "mail.liar.test" in hits[0].reason


def test_forward_confirmed_client_with_good_helo_fires_nothing(dns: DNSServer) -> None:
    assert run(ClientDns(lookup(dns), HOST), ctx(GOOD_HEAD, ip="192.0.2.20", helo="mail.good.test")) == []


@pytest.mark.parametrize(
    ("helo", "fired"),
    [
        ("localhost", "HELO_NOT_FQDN"),
        ("192.0.2.20", "HELO_NOT_FQDN"),
        ("[192.0.2.99]", "HELO_IP_MISMATCH"),
        (HOST, "HELO_OURS"),
    ],
)
def test_helo_checks(dns: DNSServer, helo: str, fired: str) -> None:
    assert names(run(ClientDns(lookup(dns), HOST), ctx(GOOD_HEAD, ip="192.0.2.20", helo=helo))) == {fired}


def test_helo_address_literal_of_the_client_is_fine(dns: DNSServer) -> None:
    assert run(ClientDns(lookup(dns), HOST), ctx(GOOD_HEAD, ip="192.0.2.20", helo="[192.0.2.20]")) == []


def test_unanswered_lookups_score_nothing() -> None:
    dead = Lookup([("127.0.0.1", 9)])  # nothing listens: every look-up fails at once
    assert run(ClientDns(dead, HOST), ctx(GOOD_HEAD, ip="192.0.2.22")) == []
    assert run(IpLists(dead, ["bl.test"], ["wl.test"]), ctx(GOOD_HEAD, ip="192.0.2.10")) == []
