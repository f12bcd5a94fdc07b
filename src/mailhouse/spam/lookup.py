"""Async DNS look-ups for the spam rules, each bounded by the message's deadline.

dnspython's asyncio resolver on the configured ``[dns] nameservers`` (never /etc/resolv.conf
when they are set, so tests and labs answer from their own server). A look-up gets at most the
time left in the message's budget; the answer distinguishes *no such name* (``[]``: the list
does not list it, the PTR does not exist) from *could not tell* (``None``: timeout, SERVFAIL,
REFUSED), which a rule must never score as a listing.

Answers are cached per process (`CACHE_MAX` entries): positive ones for their TTL (at most
`MAX_TTL`), negative ones (no such name, no data) for `NEGATIVE_TTL` seconds, also when the
server sends no SOA to take a negative TTL from (RFC 2308 §5) — most clients have no DNSWL/DNSBL entry, and a busy sender is
looked up once a minute, not once a message. "Could not tell" is never cached.

A circuit breaker per process (per `Lookup`) keeps a dead resolver cheap: after
`BREAKER_THRESHOLD` look-ups in a row went unanswered (timed out), look-ups are skipped — answered
"could not tell" at once, counted in ``skipped`` — for `BREAKER_COOLDOWN` seconds; then one look-up
goes out as a probe (the others keep being skipped while it is under way): an answer of any kind
(even NXDOMAIN or SERVFAIL: the resolver is alive) closes the breaker, another timeout opens it for
the next cool-down. A dead resolver thus costs one budget per cool-down instead of one per message.
Only time-outs with at least `MIN_COUNTED_WAIT` seconds to go count: a look-up cut short by an
almost spent message budget says nothing about the resolver. Cached answers are served throughout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from mailhouse import metrics
from mailhouse.mailauth.resolvers import resolver_on

__all__ = [
    "BREAKER_COOLDOWN",
    "BREAKER_THRESHOLD",
    "CACHE_MAX",
    "MAX_TTL",
    "MIN_COUNTED_WAIT",
    "NEGATIVE_TTL",
    "Lookup",
    "reverse_name",
]

#: Seconds a "no such name / no data" answer is reused (RFC 2308 §5 allows caching it).
NEGATIVE_TTL = 60.0
#: Seconds a positive answer is reused at most (a list's TTL is usually shorter).
MAX_TTL = 3600.0
#: Answers remembered per process (oldest dropped first).
CACHE_MAX = 8192
#: Unanswered look-ups in a row that open the breaker (a message's rules make 2-5 at once, so a
#: dead resolver opens it within the first message or two; one lost UDP datagram does not).
BREAKER_THRESHOLD = 3
#: Seconds look-ups are skipped once the breaker is open, before one probe is let through.
BREAKER_COOLDOWN = 30.0
#: A time-out counts against the resolver only if the look-up had this long to wait.
MIN_COUNTED_WAIT = 0.5


def reverse_name(ip: str) -> str | None:
    """IP as a DNS list label without the zone: ``4.3.2.1`` for 1.2.3.4 (RFC 5782 §2.1), 32
    nibbles for IPv6 (RFC 5782 §2.4); IPv4-mapped IPv6 as IPv4; None for a non-address."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


class Lookup:
    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None,
        threshold: int = BREAKER_THRESHOLD,
        cooldown: float = BREAKER_COOLDOWN,
    ) -> None:
        self.resolver = resolver_on(dns.asyncresolver.Resolver, nameservers)
        # (name, type) → (expiry in time.monotonic, answer): a DNSBL is asked once per TTL
        self.cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self.threshold = threshold
        self.cooldown = cooldown
        self.attempted = 0  # look-ups sent to the resolver (the cache and the breaker spare the rest)
        self.skipped = 0  # look-ups the open breaker answered "could not tell" at once
        self._unanswered = 0  # time-outs in a row
        self._open_until = 0.0  # time.monotonic() until which look-ups are skipped; 0: closed
        self._probing = False  # the one look-up after a cool-down is under way

    @property
    def breaker_open(self) -> bool:
        return self._open_until > 0.0

    def _answered(self) -> None:
        self._unanswered = 0
        self._open_until = 0.0

    def _timed_out(self, waited: float, probe: bool) -> None:
        if waited < MIN_COUNTED_WAIT and not probe:
            return
        self._unanswered += 1
        if probe or self._unanswered >= self.threshold:
            self._open_until = time.monotonic() + self.cooldown

    def _remember(self, key: tuple[str, str], ttl: float, answer: list[str]) -> None:
        if ttl <= 0:
            return
        if len(self.cache) >= CACHE_MAX:
            del self.cache[next(iter(self.cache))]
        self.cache[key] = (time.monotonic() + ttl, answer)

    async def _query(self, name: str, rdtype: str, timeout: float) -> list[str] | None:
        key = (name.lower(), rdtype)
        hit = self.cache.get(key)
        if hit is not None:
            if hit[0] > time.monotonic():
                return list(hit[1])
            del self.cache[key]
        if timeout <= 0:
            return None
        if self._probing or self._open_until > time.monotonic():
            self.skipped += 1  # the breaker is open: the resolver has not been answering
            return None
        probe = self._open_until > 0.0  # the cool-down is over: this one finds out
        self._probing = probe
        self.attempted += 1
        try:
            with metrics.timed(metrics.DNS_SECONDS, rdtype):
                ans = await self.resolver.resolve(name, rdtype, lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._answered()
            self._remember(key, NEGATIVE_TTL, [])
            return []
        except dns.exception.Timeout:
            self._timed_out(timeout, probe)
            return None  # could not tell: never cached
        except (dns.exception.DNSException, OSError):
            self._answered()  # SERVFAIL, REFUSED…: the resolver is there, it could not tell
            return None  # could not tell: never cached
        finally:
            if probe:
                self._probing = False
        self._answered()
        out = [r.to_text().rstrip(".").lower() if rdtype == "PTR" else r.to_text() for r in ans]
        self._remember(key, min(float(ans.rrset.ttl) if ans.rrset is not None else 0.0, MAX_TTL), out)
        return out

    async def a(self, name: str, timeout: float) -> list[str] | None:
        return await self._query(name, "A", timeout)

    async def addresses(self, name: str, timeout: float) -> list[str] | None:
        """A and AAAA of NAME (None if either could not be told)."""
        v4, v6 = await asyncio.gather(self._query(name, "A", timeout), self._query(name, "AAAA", timeout))
        if v4 is None or v6 is None:
            return None
        return v4 + v6

    async def ptr(self, ip: str, timeout: float) -> list[str] | None:
        try:
            name = dns.reversename.from_address(ip.split("%", 1)[0]).to_text()
        except (ValueError, dns.exception.SyntaxError):
            return None
        return await self._query(name, "PTR", timeout)
