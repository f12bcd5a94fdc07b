"""SPF check of inbound mail (RFC 7208) with pyspf; a hook that returns the result, no policy.

pyspf evaluates the policy; this module only makes it ask *our* nameservers (`[dns] nameservers`)
through dnspython instead of the system resolver, and maps its answer to :class:`SpfResult`.
pyspf looks names up through its module-level ``DNSLookup``; we install a dispatcher once that
uses the resolver of the calling thread (set for the duration of one :func:`check`), so
concurrent checks with different nameservers never mix and code that uses pyspf directly keeps
its default behaviour.

Results (RFC 7208 §2.6): none, neutral, pass, fail, softfail, temperror, permerror.
Blocking (DNS): call from asyncio through ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import spf as pyspf

from mailhouse.mailauth.dkim import make_resolver

__all__ = ["SpfResult", "check", "unfinished"]

#: RFC 7208 §4.6.4: at most 20 s overall is the recommendation (pyspf's querytime)
SPF_TIMEOUT = 20.0

_local = threading.local()
_original_lookup = pyspf.DNSLookup


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str  # RFC 7208 §2.6
    explanation: str
    domain: str  # the domain checked: MAIL FROM's, or HELO's for the null sender (§2.4)
    identity: str  # "mailfrom" | "helo" (RFC 8601 §2.7.2 ptypes smtp.mailfrom / smtp.helo)


def _lookup(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> list[tuple[Any, Any]]:
    resolver: dns.resolver.Resolver | None = getattr(_local, "resolver", None)
    if resolver is None:
        return list(_original_lookup(name, qtype, tcpfallback, timeout))
    out: list[tuple[Any, Any]] = []
    try:
        answer = resolver.resolve(name, qtype, lifetime=timeout, search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return out
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
        raise pyspf.TempError(f"DNS {e}") from e
    for rdata in answer:  # the shapes pyspf's own DNSLookup_dnspython returns
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            out.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), rdata.strings))
    return out


pyspf.DNSLookup = _lookup  # installed once; falls back to pyspf's own lookup outside check()


def check(
    ip: str,
    mail_from: str,
    helo: str,
    nameservers: Sequence[tuple[str, int]] | None = None,
    *,
    timeout: float = SPF_TIMEOUT,
) -> SpfResult:
    """Evaluate SPF for a client IP, envelope sender and HELO name (RFC 7208 §2.3, §2.4).

    With the null sender the HELO identity is checked (``postmaster@HELO``, §2.4).
    """
    identity, domain = _identity(mail_from, helo)
    _local.resolver = make_resolver(nameservers, timeout)
    try:
        result, explanation = pyspf.check2(i=ip, s=mail_from, h=helo, querytime=timeout)
    finally:
        _local.resolver = None
    return SpfResult(str(result), str(explanation), domain, identity)


def _identity(mail_from: str, helo: str) -> tuple[str, str]:
    """(identity, domain) checked: MAIL FROM's domain, or HELO's for the null sender (§2.4)."""
    if mail_from:
        return "mailfrom", mail_from.rpartition("@")[2].lower()
    return "helo", helo.lower()


def unfinished(mail_from: str, helo: str, why: str) -> SpfResult:
    """The result of a check that ran out of DNS time: temperror (RFC 7208 §2.6.6)."""
    identity, domain = _identity(mail_from, helo)
    return SpfResult("temperror", why, domain, identity)
