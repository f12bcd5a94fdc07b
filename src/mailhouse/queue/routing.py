"""Where mail for a destination domain goes: per-domain routes, relayhost, else MX.

RFCs: RFC 5321 §5.1 (MX by preference, equal preferences in random order, implicit MX
= the domain's own A/AAAA when there is no MX RRset, NXDOMAIN is permanent), RFC 7505
(null MX `0 .` → bounce at once with `556 5.1.10`), RFC 3974 (IPv4 and IPv6 both).

Invariants:
- DNS goes only to `cfg.dns_nameservers` when configured (`configure=False`: never
  /etc/resolv.conf), so tests and labs stay on their own DNS server.
- Overrides win in this order, as Postfix's transport_maps then relayhost: exact domain
  in `[routes]`, a parent domain in `[routes]` (`.example.org` style match on suffix),
  `relayhost`, then MX. An override host is resolved by A/AAAA only (like `[host]`).
- With `[dns] dnssec = "validate"` the same question goes to `mailauth.dnssec.Validator` (an
  in-process validator asking the nameservers with DO+CD); a bogus MX RRset defers the message
  and a bogus address RRset drops those addresses (what a validating resolver's SERVFAIL does).
- With `[dns] dnssec = "resolver"` every query asks for DNSSEC (EDNS DO and the AD bit, RFC 6840
  §5.7) and a target is `secure` only when its MX RRset and its address RRsets all came back
  with AD set (RFC 7672 §2.2: only then may TLSA records count); a route/relayhost host name is
  configured, so secure when its address RRsets are (RFC 7672 §2.2.1: DANE for it too);
  literals and the implicit MX are never secure (no DANE for them here).
- Answers are cached for their TTL (LRU, `DNS_CACHE_ENTRIES`), so a changed record is seen
  when its TTL has run out, as with any caching resolver; with `dnssec = "resolver"` only
  validated (AD) answers are cached (`ValidatedOnlyCache`), and TLSA answers not at all here.
- A transient DNS problem is a `RoutingError(permanent=False)` (the message is
  deferred); only NXDOMAIN and null MX are permanent.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailhouse import metrics
from mailhouse.config import Config, ConfigError, Dnssec, Route
from mailhouse.mailauth.dnssec import DnsUnavailable, Security, Validator, anchors_from
from mailhouse.mailauth.resolvers import addresses_of, resolver_on

DNS_CACHE_ENTRIES = 10000  # RRsets kept per node (dnspython LRU cache, each for its TTL)
DNS_LIFETIME = 10.0  # seconds for one whole lookup (Postfix: smtp_dns_... uses resolver defaults)


@dataclass(frozen=True, slots=True)
class Target:
    """One host to try: name (for TLS SNI and Remote-MTA), its addresses, port, route."""

    name: str
    addresses: tuple[str, ...]
    port: int
    preference: int = 0
    route: Route | None = None
    secure: bool = False  # MX and address RRsets DNSSEC-validated (AD): DANE applies (RFC 7672 §2.2)
    # the name the address lookup ended at when NAME is a CNAME (securely expanded: `secure`);
    # RFC 7672 §2.2.2: its TLSA records are tried first
    canonical: str | None = None


class RoutingError(Exception):
    def __init__(self, reply: str, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply  # "556 5.1.10 ..." style, for last_reply and the DSN
        self.permanent = permanent


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def authenticated(answer: dns.resolver.Answer) -> bool:
    """The resolver set AD: it validated the answer (trusted only with [dns] dnssec = "resolver")."""
    return bool(answer.response.flags & dns.flags.AD)


class ValidatedOnlyCache(dns.resolver.LRUCache):
    """With DNSSEC on, only answers the resolver validated (AD) are kept: an unvalidated MX or
    address answer is asked again next time rather than switching DANE off for a whole TTL."""

    def put(
        self,
        key: tuple[dns.name.Name, dns.rdatatype.RdataType, dns.rdataclass.RdataClass],
        value: dns.resolver.Answer,
    ) -> None:
        if authenticated(value):
            super().put(key, value)


def make_resolver(cfg: Config, cache: bool = True) -> dns.asyncresolver.Resolver:
    """A resolver on `[dns] nameservers` (else the system's), asking for DNSSEC when configured."""
    r = resolver_on(dns.asyncresolver.Resolver, cfg.dns_nameservers)
    r.lifetime = DNS_LIFETIME
    dnssec = cfg.dns_dnssec is Dnssec.RESOLVER
    if cache:
        # answers reused for their TTL (MX, A/AAAA, TXT per message otherwise; Postfix relies on
        # the system's caching resolver for the same)
        r.cache = (
            ValidatedOnlyCache(DNS_CACHE_ENTRIES) if dnssec else dns.resolver.LRUCache(DNS_CACHE_ENTRIES)
        )
    if dnssec:
        # RFC 6840 §5.7: set AD (and DO) so a validating resolver reports what it validated
        r.use_edns(0, dns.flags.DO, 1232)
        r.flags = dns.flags.RD | dns.flags.AD
    return r


class Router:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.resolver = make_resolver(cfg)
        # TLSA look-ups (queue/dane.py) bypass the LRU cache: DANE keeps only secure policies,
        # so one unvalidated answer never sticks for a whole TTL
        self.tlsa_resolver = make_resolver(cfg, cache=False)
        self.validator: Validator | None = None
        if cfg.dns_dnssec is Dnssec.VALIDATE:
            try:
                anchors = anchors_from(cfg.dns_trust_anchor)
            except (OSError, ValueError, dns.exception.DNSException) as e:
                why = f"not DS/DNSKEY records in zone-file format ({e})"
                raise ConfigError(cfg.source_path, "dns.trust_anchor", why) from None
            self.validator = Validator(addresses_of(self.resolver), anchors)

    async def security(self, answer: dns.resolver.Answer) -> Security:
        """RFC 7672 §2.1: how far ANSWER can be trusted (validated here, or the resolver's AD)."""
        if self.validator is None:
            return Security.SECURE if authenticated(answer) else Security.INSECURE
        try:
            return (await self.validator.query(answer.qname, answer.rdtype)).security
        except DnsUnavailable:
            return Security.INSECURE  # the answer itself came; only its proof is missing

    def override(self, domain: str) -> Route | None:
        domain = domain.lower().rstrip(".")
        routes = self.cfg.routes
        if domain in routes:
            return routes[domain]
        parts = domain.split(".")
        for i in range(1, len(parts)):
            suffix = "." + ".".join(parts[i:])
            if suffix in routes:
                return routes[suffix]
        return self.cfg.relayhost

    async def route(self, domain: str) -> list[Target]:
        """Ordered targets for DOMAIN; raises RoutingError when none can be found."""
        domain = domain.lower().rstrip(".")
        route = self.override(domain)
        if route is not None:
            addrs, secure, canonical = await self.host(route.host)
            if not addrs:
                raise RoutingError(f"451 4.4.3 cannot resolve route host {route.host}", permanent=False)
            return [Target(route.host, tuple(addrs), route.port, 0, route, secure, canonical)]
        if domain.startswith("[") and domain.endswith("]"):
            # RFC 5321 §4.1.3: address literal, no DNS
            lit = domain[1:-1]
            lit = lit[5:] if lit.lower().startswith("ipv6:") else lit
            if not _is_ip(lit):
                raise RoutingError("501 5.1.2 bad address literal", permanent=True)
            return [Target(lit, (lit,), self.cfg.outbound_port)]
        return await self.mx_targets(domain)

    async def mx_targets(self, domain: str) -> list[Target]:
        port = self.cfg.outbound_port
        mx_secure = False
        try:
            with metrics.timed(metrics.DNS_SECONDS, "MX"):
                answer = await self.resolver.resolve(domain, "MX", search=False)
            mx_security = await self.security(answer)
            if mx_security is Security.BOGUS:
                raise RoutingError(f"451 4.4.3 DNSSEC validation of MX for {domain} failed (bogus)", False)
            mx_secure = mx_security is Security.SECURE
            mxs = [
                (
                    int(rr.preference),
                    "." if rr.exchange == dns.name.root else rr.exchange.to_text(True).lower(),
                )
                for rr in answer
            ]
        except dns.resolver.NXDOMAIN:
            # RFC 5321 §5.1: a non-existent domain is a permanent error
            raise RoutingError(f"550 5.1.2 domain {domain} not found", permanent=True) from None
        except dns.resolver.NoAnswer:
            mxs = []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as e:
            raise RoutingError(
                f"451 4.4.3 DNS lookup of MX for {domain} failed: {type(e).__name__}", False
            ) from None
        # RFC 7505 §3: a single MX "0 ." means the domain accepts no mail
        if any(host in ("", ".") for _, host in mxs):
            if len(mxs) == 1:
                raise RoutingError(
                    f"556 5.1.10 domain {domain} does not accept mail (null MX)", permanent=True
                )
            mxs = [(p, h) for p, h in mxs if h not in ("", ".")]
        if not mxs:
            # RFC 5321 §5.1: no MX RRs → the domain itself is the implicit MX (preference 0);
            # RFC 7672 §2.2.1: with secure address records it gets a TLSA look-up like an MX host
            addrs, secure, canonical = await self.host(domain)
            if not addrs:
                raise RoutingError(
                    f"550 5.1.2 domain {domain} has no MX and no address record", permanent=True
                )
            return [Target(domain, tuple(addrs), port, 0, None, secure, canonical)]
        # RFC 5321 §5.1: by preference, equal preference in random order (load spreading)
        random.shuffle(mxs)
        mxs.sort(key=lambda m: m[0])
        targets: list[Target] = []
        for pref, host in mxs:
            addrs, secure, canonical = await self.host(host)
            if addrs:
                targets.append(Target(host, tuple(addrs), port, pref, None, mx_secure and secure, canonical))
        if not targets:
            raise RoutingError(f"451 4.4.3 no address for any MX host of {domain}", permanent=False)
        return targets

    async def addresses(self, host: str) -> list[str]:
        """A and AAAA records of HOST (an IP literal is returned as is). Transient errors → []."""
        return (await self.host(host))[0]

    async def host(self, host: str) -> tuple[list[str], bool, str | None]:
        """`addresses`, whether every address RRset found was DNSSEC-secure, and the name a CNAME
        chain led to (None: HOST itself)."""
        host = host.strip("[]")
        if _is_ip(host):
            return [host], False, None
        out: list[str] = []
        canonical: str | None = None
        secure = True
        for rdtype in ("A", "AAAA"):  # RFC 3974: both families; IPv4 first (loopback labs are v4)
            try:
                with metrics.timed(metrics.DNS_SECONDS, rdtype):
                    answer = await self.resolver.resolve(host, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
                continue
            security = await self.security(answer)
            if security is Security.BOGUS:
                continue
            secure = secure and security is Security.SECURE
            out.extend(rr.to_text() for rr in answer)
            if answer.canonical_name != answer.qname:
                canonical = answer.canonical_name.to_text(True).lower()
        return out, secure and bool(out), canonical

    async def txt(self, name: str) -> list[str] | None:
        """TXT strings of NAME (each record's character-strings joined, RFC 7208 §3.3 style);
        [] when there is none, None when the lookup failed (timeout, SERVFAIL)."""
        try:
            with metrics.timed(metrics.DNS_SECONDS, "TXT"):
                answer = await self.resolver.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
            return None
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]
