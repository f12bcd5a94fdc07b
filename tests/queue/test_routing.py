"""queue.routing against a real DNS server (dnsmasq on loopback), never a mocked resolver."""

from __future__ import annotations

from typing import Any

import pytest

from mailhouse.config import Route, default_config
from mailhouse.queue.routing import Router, RoutingError


@pytest.fixture(scope="module")
def dns(dns_server_factory: Any) -> Any:
    return dns_server_factory(
        mx={
            "m.test": [(10, "mx1.m.test"), (10, "mx2.m.test"), (5, "mx0.m.test"), (20, "noaddr.m.test")],
            "null.test": [(0, ".")],
            "v6.test": [(10, "mx.v6.test")],
            "dangling.test": [(10, "nowhere.dangling.test")],
        },
        a={
            "mx0.m.test": "127.0.0.10",
            "mx1.m.test": "127.0.0.11",
            "mx2.m.test": "127.0.0.12",
            "nomx.test": "127.0.0.13",
            "smarthost.test": "127.0.0.14",
        },
        aaaa={"mx.v6.test": "::1", "mx1.m.test": "::1"},
    )


def router(dns: Any, **kw: Any) -> Router:
    cfg = default_config("/tmp/mh-routing-unused")
    host, port = dns.nameserver.split(":")
    cfg.dns_nameservers = [(host, int(port))]
    cfg.outbound_port = 2525
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Router(cfg)


async def test_mx_by_preference_with_both_families(dns: Any) -> None:
    targets = await router(dns).route("m.test")
    assert [t.name for t in targets][0] == "mx0.m.test"
    assert {t.name for t in targets[1:]} == {"mx1.m.test", "mx2.m.test"}  # noaddr dropped
    assert [t.preference for t in targets] == [5, 10, 10]
    mx1 = next(t for t in targets if t.name == "mx1.m.test")
    assert mx1.addresses == ("127.0.0.11", "::1") and mx1.port == 2525


async def test_equal_preference_is_randomised(dns: Any) -> None:
    r = router(dns)
    orders = {tuple(t.name for t in await r.route("m.test"))[1:] for _ in range(30)}
    assert len(orders) == 2  # RFC 5321 §5.1: both orders of the two preference-10 hosts occur


async def test_no_mx_falls_back_to_address(dns: Any) -> None:
    targets = await router(dns).route("nomx.test")
    assert [(t.name, t.addresses) for t in targets] == [("nomx.test", ("127.0.0.13",))]


async def test_ipv6_only_mx(dns: Any) -> None:
    targets = await router(dns).route("v6.test")
    assert targets[0].addresses == ("::1",)


async def test_null_mx_is_permanent_556(dns: Any) -> None:
    with pytest.raises(RoutingError) as ei:
        await router(dns).route("null.test")
    assert ei.value.permanent and ei.value.reply.startswith("556 5.1.10")


async def test_nxdomain_is_permanent(dns: Any) -> None:
    with pytest.raises(RoutingError) as ei:
        await router(dns).route("does-not-exist.test")
    assert ei.value.permanent and ei.value.reply.startswith("550 5.1.2")


async def test_mx_without_address_is_transient(dns: Any) -> None:
    with pytest.raises(RoutingError) as ei:
        await router(dns).route("dangling.test")
    assert not ei.value.permanent and ei.value.reply.startswith("451")


async def test_routes_and_relayhost_override_mx(dns: Any) -> None:
    r = router(
        dns,
        routes={
            "m.test": Route("127.0.0.20", 2526),
            ".sub.test": Route("smarthost.test", 587, "u", "p", "required"),
        },
        relayhost=Route("smarthost.test", 2527),
    )
    t = (await r.route("M.test."))[0]
    assert (t.addresses, t.port, t.route is not None) == (("127.0.0.20",), 2526, True)
    t = (await r.route("a.sub.test"))[0]
    assert t.addresses == ("127.0.0.14",) and t.port == 587 and t.route and t.route.username == "u"
    t = (await r.route("null.test"))[0]  # relayhost wins over DNS entirely
    assert t.addresses == ("127.0.0.14",) and t.port == 2527


async def test_address_literal(dns: Any) -> None:
    t = (await router(dns).route("[127.0.0.30]"))[0]
    assert t.addresses == ("127.0.0.30",)
    assert not dns.forwarded()
