"""DNS block and allow lists (RFC 5782): the client IP in ``[spam] dnsbl``/``dnswl`` zones, and the
envelope sender's, the From and the body URLs' domains in ``[spam] domain_blocklists``.

A zone is configured as ``"zone"`` or ``"zone=score"``. The query is the reversed IPv4 octets or
the 32 reversed IPv6 nibbles before the zone (RFC 5782 §2.1, §2.4), or the domain itself
(§2.3). Answers are interpreted per zone:

- an A record in 127.0.0.0/8 is a listing (RFC 5782 §2.3), its last octet a code the reason
  names where the zone is known (Spamhaus ZEN: SBL, CSS, XBL, PBL; DBL; dnswl.org trust levels);
- 127.255.255.252/254/255 are Spamhaus's *error* codes (typing error in the zone, query through
  a public/open resolver, excessive queries): an error, logged, never a listing; dnswl.org's
  127.0.0.255 ("query limit") likewise;
- anything outside 127/8 is an error (a wildcarding resolver), as is no answer in time.

Look-ups are bounded: the client IP costs one query per zone; domains at most
`MAX_DOMAIN_LOOKUPS` distinct names per message (envelope, From, then URL hosts).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
from collections.abc import Sequence

from mailhouse.spam.lookup import Lookup, reverse_name
from mailhouse.spam.rules import Context, Hit, clean_reason, token

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BLOCK_SCORE",
    "DEFAULT_DOMAIN_SCORE",
    "DEFAULT_WELCOME_SCORE",
    "MAX_DOMAIN_LOOKUPS",
    "DomainLists",
    "IpLists",
    "interpret",
    "listed_in_allow_lists",
    "parse_zone",
]

DEFAULT_BLOCK_SCORE = 4.0
DEFAULT_WELCOME_SCORE = -3.0
DEFAULT_DOMAIN_SCORE = 4.0
#: Distinct domains looked up per message in each domain list: URL-stuffed mail costs no more.
MAX_DOMAIN_LOOKUPS = 10
#: Spamhaus return codes that mean "your query was refused", not "listed"
#: (https://www.spamhaus.org/faqs/domain-blocklist/#291: typing error, public resolver, excessive).
ERROR_CODES = frozenset(("127.255.255.252", "127.255.255.254", "127.255.255.255"))
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
#: What a zone's codes mean, for the reason (the rule fires on any 127/8 code but the errors).
KNOWN_CODES: dict[str, dict[str, str]] = {
    "zen.spamhaus.org": {
        "127.0.0.2": "SBL, a known spam source",
        "127.0.0.3": "SBL CSS, a snowshoe spam source",
        "127.0.0.4": "XBL, a hijacked or infected host",
        "127.0.0.9": "SBL DROP, a hijacked network",
        "127.0.0.10": "PBL, a dynamic address that should not send directly",
        "127.0.0.11": "PBL, a dynamic address that should not send directly",
    },
    "dbl.spamhaus.org": {
        "127.0.1.2": "a spam domain",
        "127.0.1.4": "a phishing domain",
        "127.0.1.5": "a malware domain",
        "127.0.1.6": "a botnet controller domain",
    },
}


def parse_zone(spec: str, default: float) -> tuple[str, float]:
    """``"zone"`` or ``"zone=score"`` → (zone, score)."""
    zone, _, score = spec.partition("=")
    return zone.strip().lower().rstrip("."), float(score) if score.strip() else default


def interpret(zone: str, answers: Sequence[str]) -> tuple[str | None, str | None]:
    """(listed code, error code) of a zone's A answers."""
    for a in answers:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            return None, a
        if a in ERROR_CODES or (zone.endswith("dnswl.org") and a.endswith(".255")):
            return None, a
        if addr.version != 4 or addr not in _LOOPBACK:
            return None, a  # a resolver that wildcards NXDOMAIN, not the list
    return (answers[0] if answers else None), None


def _meaning(zone: str, code: str) -> str:
    for suffix, codes in KNOWN_CODES.items():
        if zone == suffix or zone.endswith("." + suffix):
            if code in codes:
                return f"{code}: {codes[code]}"
    return code


async def _listed(lookup: Lookup, query: str, zone: str, timeout: float) -> str | None:
    answers = await lookup.a(f"{query}.{zone}", timeout)
    if answers is None:
        log.info("DNS list %s: no answer in time for %s", zone, query)
        return None
    code, error = interpret(zone, answers)
    if error is not None:
        log.warning("DNS list %s answered %s for %s: an error code, not a listing", zone, error, query)
    return code


class IpLists:
    """The client IP in the block lists (positive scores) and allow lists (negative scores)."""

    name = "DNS_IP_LISTS"

    def __init__(self, lookup: Lookup, block: Sequence[str], welcome: Sequence[str]) -> None:
        self.lookup = lookup
        self.zones = [(*parse_zone(z, DEFAULT_BLOCK_SCORE), False) for z in block] + [
            (*parse_zone(z, DEFAULT_WELCOME_SCORE), True) for z in welcome
        ]

    async def check(self, ctx: Context) -> list[Hit]:
        query = reverse_name(ctx.ip)
        if query is None or not self.zones:
            return []
        codes = await asyncio.gather(
            *(_listed(self.lookup, query, z, ctx.remaining()) for z, _, _ in self.zones)
        )
        hits = []
        for (zone, score, welcome), code in zip(self.zones, codes, strict=True):
            if code is None:
                continue
            what = "allow list" if welcome else "block list"
            hits.append(
                Hit(
                    ("RCVD_IN_DNSWL_" if welcome else "RCVD_IN_DNSBL_") + token(zone),
                    score,
                    clean_reason(f"client {ctx.ip} is on the {what} {zone} ({_meaning(zone, code)})"),
                )
            )
        return hits


async def listed_in_allow_lists(lookup: Lookup, ip: str, zones: Sequence[str], timeout: float) -> bool:
    """Whether client IP is on any of the allow-list ZONES (``"zone"`` or ``"zone=score"``) within
    TIMEOUT seconds (greylisting's DNSWL exemption; the answers are cached for `IpLists`)."""
    query = reverse_name(ip)
    if query is None or not zones:
        return False
    names = [parse_zone(z, DEFAULT_WELCOME_SCORE)[0] for z in zones]
    codes = await asyncio.gather(*(_listed(lookup, query, z, timeout) for z in names))
    return any(c is not None for c in codes)


def _domain(address: str) -> str:
    address = address.strip().strip("<>")
    return address.rsplit("@", 1)[1].lower().rstrip(".") if "@" in address else ""


def _from_domain(values: list[str]) -> str:
    if not values:
        return ""
    _, addr = email.utils.parseaddr(values[0])
    return _domain(addr)


class DomainLists:
    """Envelope sender, From and body-URL domains in the domain block lists (RFC 5782 §2.3)."""

    name = "DNS_DOMAIN_LISTS"

    def __init__(self, lookup: Lookup, zones: Sequence[str]) -> None:
        self.lookup = lookup
        self.zones = [parse_zone(z, DEFAULT_DOMAIN_SCORE) for z in zones]

    async def check(self, ctx: Context) -> list[Hit]:
        if not self.zones:
            return []
        where: dict[str, str] = {}
        for d, w in ((_domain(ctx.mail_from), "envelope sender"), (_from_domain(ctx.header("from")), "From")):
            if d:
                where.setdefault(d, w)
        for h in (await ctx.scan()).url_hosts:
            if len(where) >= MAX_DOMAIN_LOOKUPS:
                break
            try:  # an IP literal in a URL is no domain for these lists
                ipaddress.ip_address(h)
                continue
            except ValueError:
                where.setdefault(h.removeprefix("www."), "a link")
        names = [d for d in where if "." in d][:MAX_DOMAIN_LOOKUPS]
        pairs = [(d, z, s) for z, s in self.zones for d in names]
        codes = await asyncio.gather(*(_listed(self.lookup, d, z, ctx.remaining()) for d, z, _ in pairs))
        hits: dict[str, Hit] = {}
        for (d, zone, score), code in zip(pairs, codes, strict=True):
            if code is not None:
                name = "DOMAIN_IN_" + token(zone)
                hits.setdefault(
                    name,
                    Hit(
                        name,
                        score,
                        clean_reason(f"{where[d]} domain {d} is on {zone} ({_meaning(zone, code)})"),
                    ),
                )
        return list(hits.values())
