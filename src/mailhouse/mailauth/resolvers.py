"""The one way Mailhouse makes a dnspython resolver: on `[dns] nameservers`, else the system's.

With nameservers given, /etc/resolv.conf is never read (`configure=False`), so tests and labs
stay on their own DNS server and production on the resolver the operator chose. Used for the
blocking resolver of pyspf/dkimpy (mailauth/dkim.py) and the asyncio ones of the queue, the
spam rules and the DNS checks alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import dns.nameserver
import dns.resolver

R = TypeVar("R", bound=dns.resolver.BaseResolver)


def resolver_on(
    cls: type[R], nameservers: Sequence[tuple[str, int]] | None, timeout: float | None = None
) -> R:
    """A CLS (dns.resolver.Resolver or dns.asyncresolver.Resolver) asking NAMESERVERS
    (``[(ip, port)]``); the system's resolvers only when none are given. TIMEOUT, when given,
    bounds each query and the whole look-up."""
    r = cls(configure=not nameservers)
    if nameservers:
        r.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    if timeout is not None:
        r.lifetime = timeout
        r.timeout = timeout
    return r


def addresses_of(r: dns.resolver.BaseResolver) -> list[tuple[str, int]]:
    """R's nameservers as ``[(ip, port)]`` (those configured, else the system's)."""
    out: list[tuple[str, int]] = []
    for ns in r.nameservers:
        if isinstance(ns, dns.nameserver.Do53Nameserver):
            out.append((ns.address, ns.port))
        elif isinstance(ns, str):
            out.append((ns, r.port))
    return out
