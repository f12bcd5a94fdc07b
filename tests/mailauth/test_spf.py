"""SPF (RFC 7208) through a real dnsmasq, and the Authentication-Results field (RFC 8601)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailhouse.mailauth import authres, spf
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.message.headers import get_headers
from tests.peers.dns import DNSServer


@pytest.fixture
def dns(dns_server_factory: Callable[..., DNSServer]) -> DNSServer:
    return dns_server_factory(
        mx={"a.test": [(10, "mx.a.test")]},
        a={"mx.a.test": ["127.0.0.2"]},
        txt={
            "a.test": ["v=spf1 mx ip4:127.0.0.9 -all"],
            "soft.test": ["v=spf1 ~all"],
            "inc.test": ["v=spf1 include:a.test -all"],
            "broken.test": ["v=spf1 bogus:x -all"],
            "helo.a.test": ["v=spf1 ip4:127.0.0.5 -all"],
        },
    )


def ns(d: DNSServer) -> list[tuple[str, int]]:
    assert d.port is not None
    return [(d.host, d.port)]


@pytest.mark.parametrize(
    ("ip", "sender", "expected"),
    [
        ("127.0.0.2", "x@a.test", "pass"),  # mx
        ("127.0.0.9", "x@a.test", "pass"),  # ip4
        ("127.0.0.3", "x@a.test", "fail"),
        ("127.0.0.3", "x@soft.test", "softfail"),
        ("127.0.0.2", "x@inc.test", "pass"),  # include:
        ("127.0.0.3", "x@inc.test", "fail"),
        ("127.0.0.3", "x@none.test", "none"),  # no record (NXDOMAIN from dnsmasq)
        ("127.0.0.3", "x@broken.test", "permerror"),
    ],
)
def test_spf_results_through_real_dns(dns: DNSServer, ip: str, sender: str, expected: str) -> None:
    r = spf.check(ip, sender, "client.test", ns(dns))
    assert (r.result, r.identity, r.domain) == (expected, "mailfrom", sender.split("@")[1]), r
    assert dns.forwarded() == []


def test_null_sender_checks_helo(dns: DNSServer) -> None:
    r = spf.check("127.0.0.5", "", "helo.a.test", ns(dns))
    assert (r.result, r.identity, r.domain) == ("pass", "helo", "helo.a.test")


def test_dead_nameserver_is_temperror() -> None:
    from tests.peers.ports import free_port

    r = spf.check("127.0.0.2", "x@a.test", "h", [("127.0.0.1", free_port("127.0.0.1"))], timeout=1.0)
    assert r.result == "temperror"


def test_authentication_results_field() -> None:
    s = spf.SpfResult("pass", "", "a.test", "mailfrom")
    d = [
        DkimResult("pass", "a.test", "mhr", "rsa-sha256"),
        DkimResult("fail", "a.test", "mhe", "ed25519-sha256", "x"),
    ]
    f = authres.field("mx.b.test", s, d)
    assert f == (
        b"Authentication-Results: mx.b.test;\r\n\tspf=pass smtp.mailfrom=a.test;\r\n"
        b"\tdkim=pass header.d=a.test header.s=mhr header.a=rsa-sha256;\r\n"
        b"\tdkim=fail header.d=a.test header.s=mhe header.a=ed25519-sha256\r\n"
    )
    assert authres.build("mx.b.test", None, []) == "mx.b.test;\r\n\tdkim=none"
    assert authres.build("mx.b.test", None, None) == "mx.b.test; none"
    # untrusted values cannot inject fields or results
    evil = DkimResult("pass", "a.test;\r\nX-Evil: 1", "s; spf=pass", "rsa-sha256")
    assert b"\r\nX-Evil" not in authres.field("mx.b.test", None, [evil])
    assert "spf=pass" not in authres.build("mx.b.test", None, [evil])


def test_forged_authentication_results_stripped() -> None:
    msg = (
        b"Authentication-Results: MX.B.TEST; dkim=pass header.d=bank.test\r\n"
        b"Authentication-Results: other.test; spf=fail\r\n"
        b"From: a@a.test\r\n\r\nbody\r\n"
    )
    out = authres.strip_forged(msg, "mx.b.test")
    assert get_headers(out, "Authentication-Results") == [b"other.test; spf=fail"]
    assert out.endswith(b"From: a@a.test\r\n\r\nbody\r\n")
