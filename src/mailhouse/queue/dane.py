"""DANE for outbound SMTP, the DNS half: which MX hosts have a secure, usable TLSA RRset.

RFCs: RFC 7672 §2.1 (DNSSEC from a validating resolver the client trusts), §2.2.1 (a
configured next hop: routes and relayhost), §2.2.2 (CNAME-expanded TLSA base first), §2.2 (only a secure
MX RRset and secure address RRsets lead to a TLSA lookup; a secure TLSA RRset with a usable
record means authenticated TLS is mandatory, with no fallback to cleartext; all records
unusable → opportunistic TLS; a failed TLSA lookup (SERVFAIL: bogus or unreachable) → the MX
is not used), §2.2.3 (TLSA base `_PORT._tcp.MXHOST`), RFC 6698 §2 (the record), RFC 8461 §2
(DANE takes precedence over MTA-STS), RFC 8460 §4.3-§4.4 (the typed outcome for TLS-RPT).

Where the DNSSEC status comes from is `[dns] dnssec`: "resolver" trusts the AD bit of the
configured `[dns] nameservers`, declared validating by the operator (Postfix's
`smtp_dns_support_level = dnssec`); "validate" asks `mailauth.dnssec.Validator` (in-process
validation from `[dns] trust_anchor`): a secure TLSA RRset counts, a secure or insecure denial
means no DANE, a bogus answer (or none) is a failed lookup; "off" means no DANE.

Invariants:
- A TLSA RRset counts only when it is secure (AD set, or validated here), and only for a
  `Target.secure` MX.
- Policies are cached per node by the TLSA RRset's TTL (at most `MAX_CACHE_SECONDS`); a failed
  lookup is never cached, so the next delivery pass asks again.
- The certificate matching itself is `smtpclient.dane` (run by the SMTP client after STARTTLS).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailhouse import metrics
from mailhouse.mailauth.dnssec import DnsUnavailable, Kind, Security, Validator
from mailhouse.queue.routing import Target, authenticated
from mailhouse.smtpclient.dane import Failure, Tlsa

log = logging.getLogger(__name__)

MAX_CACHE_SECONDS = 3600.0  # a TLSA RRset is reused for min(TTL, this) seconds (Postfix: the DNS cache)
MAX_CACHED = 10000  # MX hosts remembered per node


class DaneState(enum.Enum):
    NONE = "none"  # no DANE for this MX: insecure MX/addresses, no TLSA, or an insecure TLSA RRset
    USABLE = "usable"  # secure TLSA RRset with a usable record: DANE-authenticated TLS required
    UNUSABLE = "unusable"  # secure TLSA RRset, every record unusable: opportunistic TLS (§2.2)
    FAILED = "failed"  # the TLSA lookup failed (bogus or no answer): this MX is not used (§2.2)


@dataclass(frozen=True, slots=True)
class DanePolicy:
    """What DANE asks of the session with one MX host."""

    mx: str
    state: DaneState
    records: tuple[Tlsa, ...] = ()  # the usable records (USABLE only)
    published: tuple[Tlsa, ...] = ()  # the whole secure RRset (for reports)
    detail: str = ""
    # RFC 7672 §3.2.2: the reference identifiers a DANE-TA(2) match checks the certificate against
    names: tuple[str, ...] = ()


class Result(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class TlsaOutcome:
    """One DANE-governed delivery attempt, in RFC 8460 §4.4 terms (policy-type "tlsa"): what
    a TLS-RPT recorder counts per policy domain (the recipient domain)."""

    policy_domain: str
    mx_host: str
    policy_strings: tuple[str, ...]  # the TLSA records, presentation form (§4.4 "policy-string")
    result: Result
    failure: Failure | None = None  # RFC 8460 §4.3 result type of a failure
    detail: str = ""
    policy_type: str = "tlsa"


class Dane:
    """TLSA look-ups for the queue runner (one per node)."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        clock: Callable[[], float] = time.monotonic,
        validator: Validator | None = None,
    ) -> None:
        self.resolver = resolver  # routing.Router.tlsa_resolver: asks with DO + AD, no LRU cache
        self.clock = clock
        self.validator = validator  # [dns] dnssec = "validate": in-process validation instead of AD
        self._cache: dict[str, tuple[float, DanePolicy]] = {}

    async def policies(self, targets: Sequence[Target], domain: str = "") -> dict[str, DanePolicy]:
        """DANE policy of every secure target (MX host, the implicit MX of a domain without MX
        records, or route/relayhost host named in the configuration, RFC 7672 §2.2.1), by host
        name (the others have none). A route with `tls = "none"` or `"implicit"` opts out (no
        STARTTLS to authenticate). DOMAIN is the next-hop domain of MX targets."""
        out: dict[str, DanePolicy] = {}
        for t in targets:
            if t.route is not None and t.route.tls in ("none", "implicit"):
                continue
            if t.secure and t.name not in out:
                policy = await self.host_policy(t)
                out[t.name] = replace(policy, names=reference_names(t, domain))
        return out

    async def host_policy(self, t: Target) -> DanePolicy:
        """RFC 7672 §2.2.2: for a host name that is a (secure) CNAME, the TLSA records of the
        expanded name first, then those of the original name."""
        if t.canonical and t.canonical != t.name.lower().rstrip("."):
            expanded = await self.policy(t.canonical, t.port)
            if expanded.state is not DaneState.NONE:
                return replace(expanded, mx=t.name)
        return await self.policy(t.name, t.port)

    async def policy(self, mx: str, port: int) -> DanePolicy:
        """RFC 7672 §2.2: the DANE policy of MX (whose MX and address RRsets were secure)."""
        qname = f"_{port}._tcp.{mx.lower().rstrip('.')}"  # RFC 7672 §2.2.3, RFC 6698 §3
        now = self.clock()
        hit = self._cache.get(qname)
        if hit is not None and hit[0] > now:
            return hit[1]
        if self.validator is not None:
            return self._keep(qname, now, *await self._validated(mx, qname))
        try:
            with metrics.timed(metrics.DNS_SECONDS, "TLSA"):
                answer = await self.resolver.resolve(qname, "TLSA", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            # no TLSA (proved or not): no DANE; not cached, a negative answer costs one query
            return DanePolicy(mx, DaneState.NONE)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as e:
            # RFC 7672 §2.2: a failed TLSA lookup (SERVFAIL: bogus signatures) → do not deliver here
            detail = f"TLSA lookup of {qname} failed ({type(e).__name__}): DNSSEC bogus or unreachable"
            return DanePolicy(mx, DaneState.FAILED, detail=detail)
        if not authenticated(answer):
            log.info("TLSA of %s is not DNSSEC-validated (no AD): no DANE for this attempt", qname)
            return DanePolicy(mx, DaneState.NONE, detail=f"TLSA of {qname} is not DNSSEC-validated")
        ttl = float(answer.rrset.ttl if answer.rrset is not None else 0)
        return self._keep(qname, now, _secure_policy(mx, answer), ttl)

    async def _validated(self, mx: str, qname: str) -> tuple[DanePolicy, float]:
        """`policy` through the in-process validator: the policy and how long to keep it."""
        assert self.validator is not None
        try:
            with metrics.timed(metrics.DNS_SECONDS, "TLSA"):
                v = await self.validator.query(qname, "TLSA")
        except DnsUnavailable as e:
            return DanePolicy(mx, DaneState.FAILED, detail=f"TLSA lookup of {qname} failed: {e}"), 0.0
        if v.security is Security.BOGUS:
            # RFC 7672 §2.2: a bogus TLSA answer is a failed lookup → do not deliver here
            detail = f"TLSA lookup of {qname} failed: DNSSEC bogus ({v.detail})"
            return DanePolicy(mx, DaneState.FAILED, detail=detail), 0.0
        if v.security is Security.INSECURE:
            log.info("TLSA of %s is DNSSEC-insecure (%s): no DANE for this MX", qname, v.detail)
            return DanePolicy(mx, DaneState.NONE, detail=f"TLSA of {qname} is insecure"), v.ttl
        if v.kind is not Kind.ANSWER or v.rrset is None:
            return DanePolicy(mx, DaneState.NONE), v.ttl  # a proved denial: no TLSA, no DANE
        return _secure_policy(mx, v.rrset), v.ttl

    def _keep(self, qname: str, now: float, policy: DanePolicy, ttl: float) -> DanePolicy:
        ttl = min(ttl, MAX_CACHE_SECONDS)
        if ttl > 0 and policy.state is not DaneState.FAILED:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[qname] = (now + ttl, policy)
        return policy


def reference_names(t: Target, domain: str = "") -> tuple[str, ...]:
    """RFC 7672 §3.2.2: the names a DANE-TA(2) certificate may carry for target T: its host name,
    the name it securely CNAME-expanded to (T.secure covers the whole chain), and, for an MX
    found in DNS, the next-hop DOMAIN (a route's next hop is the host it names)."""
    names = [t.name.lower().rstrip(".")]
    if t.canonical:
        names.append(t.canonical.lower().rstrip("."))
    if t.route is None and domain:
        names.append(domain.lower().rstrip("."))
    return tuple(dict.fromkeys(names))


def _secure_policy(mx: str, rrset: Iterable[Any]) -> DanePolicy:
    """The policy of a secure TLSA RRSET."""
    published = tuple(Tlsa(int(rr.usage), int(rr.selector), int(rr.mtype), bytes(rr.cert)) for rr in rrset)
    usable = tuple(r for r in published if r.usable)
    # RFC 7672 §2.2: all records unusable → as if there were none, but TLS is still tried
    return DanePolicy(mx, DaneState.USABLE if usable else DaneState.UNUSABLE, usable, published)


def outcome(domain: str, policy: DanePolicy, failure: Failure | None = None, detail: str = "") -> TlsaOutcome:
    """The TLS-RPT view of one attempt under POLICY (FAILURE None: success)."""
    return TlsaOutcome(
        domain,
        policy.mx,
        tuple(r.text() for r in policy.published),
        Result.SUCCESS if failure is None else Result.FAILURE,
        failure,
        detail,
    )
