"""DMARC evaluation of inbound mail (RFC 7489, with the DMARCbis identifier-alignment rules).

Three pieces, so that the rules are testable on a table and the DNS stays in one place:

- :func:`author_domains` — the RFC5322.From domains of a header section (RFC 7489 §6.6.1);
- :func:`discover` — the policy record of one author domain: ``_dmarc.<domain>``, else
  ``_dmarc.<organisational domain>`` (RFC 7489 §6.6.3; not the DMARCbis tree walk), blocking
  on DNS within a deadline — call it from a worker thread (``mailauth.dnsbudget``);
- :func:`evaluate` — the result from that record and the SPF/DKIM results (pure).

Organisational domain: the Public Suffix List shipped in the ``publicsuffixlist`` package, ICANN
section only (RFC 7489 §3.2 names the PSL; the private section would make every
``user.github.io`` its own organisation, which is right for cookies and wrong for a policy that
the owner of the registered domain publishes). Nothing is downloaded at run time.

Results (RFC 7489 §11.2, the ``dmarc`` method of RFC 8601 ``Authentication-Results``): ``pass``, ``fail``, ``none`` (no policy record, or no
author domain), ``temperror`` (DNS failed or ran out of budget), ``permerror`` (a record that
says ``v=DMARC1`` but cannot be used, several records, or no usable From field). Only ``fail``
carries a disposition other than ``none``; what happens then is the caller's policy
(``mailauth.inbound``).

Invariants: never raises on untrusted input (records, From fields); ``pct`` sampling uses the
random function handed in, so tests decide the draw.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses

import dns.exception
import dns.rdatatype
import dns.resolver
from publicsuffixlist import PublicSuffixList

from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.spf import SpfResult
from mailhouse.message.headers import split_header_block

log = logging.getLogger(__name__)

__all__ = [
    "DmarcRecord",
    "DmarcResult",
    "Discovery",
    "Policy",
    "aligned",
    "author_domains",
    "discover",
    "evaluate",
    "organizational_domain",
    "parse_record",
]

# ICANN section only: see the module docstring. Built once (read-only data, ~1 ms per look-up).
_PSL = PublicSuffixList(only_icann=True)

#: A TXT answer longer than this is not a DMARC record anyone publishes (the longest real ones,
#: with several rua/ruf URIs, are a few hundred octets): it is ignored, never parsed.
MAX_RECORD_OCTETS = 4096


class Policy(enum.Enum):
    """RFC 7489 §6.3 ``p=`` / ``sp=`` values (and the disposition applied, §7.3 ``disposition``)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


_STRICTNESS = {Policy.NONE: 0, Policy.QUARANTINE: 1, Policy.REJECT: 2}


class RecordError(ValueError):
    """A record that starts with ``v=DMARC1`` but cannot be used (RFC 7489 §6.6.3 step 6)."""


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    p: Policy
    sp: Policy  # RFC 7489 §6.3: sp defaults to p
    pct: int = 100  # §6.3: 0..100, default 100
    adkim_strict: bool = False  # §6.3: adkim=r default
    aspf_strict: bool = False  # §6.3: aspf=r default
    rua: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Discovery:
    """What DNS said about one author domain's policy."""

    domain: str  # the author domain
    record: DmarcRecord | None
    at_org: bool = False  # found at the organisational domain (then ``sp`` applies, §6.6.3)
    error: str = ""  # "temperror" | "permerror" | "" (record found, or none published)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """RFC 8601 ``dmarc=`` result for the message, with the policy and the disposition applied."""

    result: str  # pass | fail | none | temperror | permerror
    from_domain: str  # header.from (RFC 7489 §11.2)
    policy: Policy | None = None  # the published p= (or sp=) that applied, None without a record
    disposition: Policy = Policy.NONE  # after pct sampling (RFC 7489 §6.6.4)
    reason: str = ""
    sampled_out: bool = False  # a failure that pct= exempted (reported as dis=none)
    aligned_spf: bool = False
    aligned_dkim: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------ identifiers


def organizational_domain(domain: str) -> str:
    """The registered domain of DOMAIN (RFC 7489 §3.2): one label below its public suffix.

    A domain that is itself a public suffix (or unknown to the list's ICANN section and a single
    label) is its own organisational domain.
    """
    d = domain.lower().rstrip(".")
    return _PSL.privatesuffix(d) or d


def aligned(a: str, b: str, strict: bool) -> bool:
    """Identifier alignment of A and B (RFC 7489 §3.1.1, §3.1.2): strict — the same name;
    relaxed — the same organisational domain (DMARCbis §4.4)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    if strict:
        return a == b
    return organizational_domain(a) == organizational_domain(b)


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]{1,63}$")


def author_domains(head: bytes) -> tuple[list[str], str]:
    """(domains, problem) of the RFC5322.From field(s) of HEAD (RFC 7489 §6.6.1).

    Several From fields, or several addresses in one, give every distinct domain (the caller
    applies the strictest outcome, §6.6.1). No From field, or none with a domain → ``[]`` and why.
    """
    fields, _, _ = split_header_block(head)
    values = [v.decode("utf-8", "replace") for n, v in fields if n.lower() == b"from"]
    if not values:
        return [], "no From field"
    domains: list[str] = []
    for _name, addr in getaddresses([re.sub(r"\r?\n", "", v) for v in values]):
        dom = addr.rpartition("@")[2].strip().lower().rstrip(".") if "@" in addr else ""
        try:
            dom = dom.encode("idna").decode("ascii") if dom and not dom.isascii() else dom
        except UnicodeError:
            dom = ""
        if dom and _DOMAIN.match(dom) and dom not in domains:
            domains.append(dom)
    if not domains:
        return [], "no domain in From"
    return domains, ""


# ------------------------------------------------------------------------------ records

_POLICIES = {p.value: p for p in Policy}


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC record (RFC 7489 §6.3, §6.4). Raises :class:`RecordError` when unusable.

    ``v=DMARC1`` must come first (§6.4). Unknown tags are ignored and a bad value of a known
    optional tag falls back to its default (§6.3: "syntax errors in the remainder of the record
    SHOULD be discarded in favor of default values"). A missing or invalid ``p=`` with a valid
    ``rua=`` is read as ``p=none`` (§6.6.3 step 6); without one the record is unusable.
    """
    tags: dict[str, str] = {}
    parts = [t.strip() for t in text.split(";")]
    for i, part in enumerate(parts):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if i == 0 and not (name == "v" and eq and value == "DMARC1"):  # §6.4: v= first, exact
            raise RecordError("record does not start with v=DMARC1")
        if eq and name not in tags:
            tags[name] = value
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip().lower().startswith("mailto:"))
    p = _POLICIES.get(tags.get("p", "").lower())
    if p is None:
        if not rua:
            raise RecordError("no valid p= tag")
        p = Policy.NONE  # RFC 7489 §6.6.3 step 6
    sp = _POLICIES.get(tags.get("sp", "").lower(), p)
    pct_s = tags.get("pct", "100")
    pct = int(pct_s) if pct_s.isdigit() and int(pct_s) <= 100 else 100
    return DmarcRecord(
        p=p,
        sp=sp,
        pct=pct,
        adkim_strict=tags.get("adkim", "r").lower() == "s",
        aspf_strict=tags.get("aspf", "r").lower() == "s",
        rua=rua,
    )


TxtLookup = Callable[[str, float], list[bytes] | None]
"""(name, timeout) → the TXT records at NAME (each one's strings joined), None for NXDOMAIN or
no TXT; raises :class:`DnsTemporary` for a timeout or SERVFAIL."""


class DnsTemporary(Exception):
    """A DNS look-up failed for a transient reason (RFC 7489 §6.6.3: temperror)."""


def resolver_lookup(resolver: dns.resolver.Resolver) -> TxtLookup:
    """A :data:`TxtLookup` on a dnspython resolver (``[dns] nameservers``)."""

    def lookup(name: str, timeout: float) -> list[bytes] | None:
        try:
            answer = resolver.resolve(name, dns.rdatatype.TXT, lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise DnsTemporary(str(e)) from e
        except dns.exception.DNSException as e:  # a malformed answer: as good as none
            log.info("DMARC look-up of %s: %s", name, e)
            return None
        return [b"".join(r.strings) for r in answer]

    return lookup


def _fetch(name: str, lookup: TxtLookup, deadline: float) -> list[bytes] | None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DnsTemporary("DNS budget exhausted")
    return lookup(name, left)


def discover(domain: str, lookup: TxtLookup, deadline: float) -> Discovery:
    """The DMARC policy record for author DOMAIN (RFC 7489 §6.6.3), DNS by LOOKUP before DEADLINE."""
    org = organizational_domain(domain)
    names = [domain] if org == domain else [domain, org]
    for n, name in enumerate(names):
        try:
            answers = _fetch(f"_dmarc.{name}", lookup, deadline)  # §6.6.3 step 1 / step 3
        except DnsTemporary as e:
            return Discovery(domain, None, error="temperror", reason=str(e))
        # §6.6.3 step 2: records that do not start with v=DMARC1 are discarded; an oversized
        # record is discarded unparsed (bounded work on hostile DNS data; the answer itself is
        # bounded by the DNS message size, 64 KiB over TCP)
        texts = [
            a.decode("ascii", "replace")
            for a in answers or ()
            if len(a) <= MAX_RECORD_OCTETS and re.match(rb"\s*v\s*=\s*DMARC1\s*(;|$)", a)
        ]
        if not texts:
            continue
        if len(texts) > 1:  # §6.6.3 step 4: more than one record → no DMARC processing
            return Discovery(domain, None, error="permerror", reason=f"{len(texts)} records at _dmarc.{name}")
        try:
            record = parse_record(texts[0])
        except RecordError as e:  # §6.6.3 step 6
            return Discovery(domain, None, error="permerror", reason=f"_dmarc.{name}: {e}")
        return Discovery(domain, record, at_org=n > 0)
    return Discovery(domain, None, reason="no DMARC record")


# ------------------------------------------------------------------------------ evaluation


def _evaluate_one(
    disc: Discovery, spf: SpfResult | None, dkim: Sequence[DkimResult] | None, rand: Callable[[], float]
) -> DmarcResult:
    dom = disc.domain
    if disc.error:
        return DmarcResult(disc.error, dom, reason=disc.reason)
    rec = disc.record
    if rec is None:
        return DmarcResult("none", dom, reason=disc.reason or "no DMARC record")
    # §6.6.3: a record found at the organisational domain for a subdomain applies sp=
    policy = rec.sp if disc.at_org else rec.p
    # §4.2: DMARC passes when SPF or DKIM passes *and* is aligned with the author domain
    spf_ok = bool(spf and spf.result == "pass" and aligned(spf.domain, dom, rec.aspf_strict))
    dkim_ok = tuple(r.domain.lower() for r in dkim or () if r.ok and aligned(r.domain, dom, rec.adkim_strict))
    if spf_ok or dkim_ok:
        return DmarcResult("pass", dom, policy, aligned_spf=spf_ok, aligned_dkim=dkim_ok)
    # §6.6.4 / §6.3 pct: the policy applies to pct % of failing messages; the rest get the next
    # lower one (reject → quarantine, quarantine → none)
    disposition, sampled_out = policy, False
    if policy is not Policy.NONE and rec.pct < 100 and rand() * 100 >= rec.pct:
        disposition = Policy.QUARANTINE if policy is Policy.REJECT else Policy.NONE
        sampled_out = True
    why = "no aligned SPF or DKIM pass"
    if any(r.result == "temperror" for r in dkim or ()) or (spf and spf.result == "temperror"):
        # an unfinished check could have passed: DMARC cannot conclude (RFC 7489 §6.6.2)
        return DmarcResult("temperror", dom, policy, reason="SPF/DKIM temperror, no aligned pass")
    return DmarcResult("fail", dom, policy, disposition, why, sampled_out)


_RANK = {"fail": 5, "temperror": 4, "permerror": 3, "pass": 2, "none": 1}


def evaluate(
    discoveries: Iterable[Discovery],
    spf: SpfResult | None,
    dkim: Sequence[DkimResult] | None,
    *,
    rand: Callable[[], float],
    problem: str = "",
) -> DmarcResult:
    """The message's DMARC result from the policy of each author domain (RFC 7489 §6.6.2–§6.6.4).

    Several author domains (§6.6.1): each is checked and the strictest outcome is the message's —
    a failure with the strictest disposition first. No author domain → permerror with PROBLEM.
    RAND (``random.random``-like) draws the ``pct`` sample.
    """
    results = [_evaluate_one(d, spf, dkim, rand) for d in discoveries]
    if not results:
        return DmarcResult("permerror", "", reason=problem or "no From domain")
    return max(results, key=lambda r: (_RANK[r.result], _STRICTNESS[r.disposition]))
