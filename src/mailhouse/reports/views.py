"""What `mailhouse report` and the admin page show: the stored report summaries of a domain,
added up per reporter, per source (DMARC) and per policy (TLS-RPT).

Invariants: only summaries already in the store are read (no report is parsed here); a row
counts as DMARC-passing when its aligned DKIM or aligned SPF passed (RFC 7489 §6.6.2).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mailhouse.store.api import ReportKind, Reports, ReportSummary

TOP_SOURCES = 10  # failing sources listed


@dataclass(frozen=True, slots=True)
class Reporter:
    org: str
    reports: int
    passed: int  # DMARC: messages passing; TLS-RPT: successful sessions
    failed: int


@dataclass(frozen=True, slots=True)
class FailingSource:
    ip: str
    header_from: str
    messages: int
    reasons: str  # e.g. "dkim=fail spf=fail disposition=reject"


@dataclass(frozen=True, slots=True)
class DmarcView:
    domain: str
    days: int
    reports: int
    passed: int
    failed: int
    reporters: tuple[Reporter, ...]
    failing: tuple[FailingSource, ...]


@dataclass(frozen=True, slots=True)
class PolicyView:
    policy_type: str
    policy_domain: str
    success: int
    failure: int
    failures: tuple[tuple[str, int], ...]  # (result-type, sessions), most first


@dataclass(frozen=True, slots=True)
class TlsView:
    domain: str
    days: int
    reports: int
    success: int
    failure: int
    reporters: tuple[Reporter, ...]
    policies: tuple[PolicyView, ...]


def _rows(s: ReportSummary) -> list[dict[str, Any]]:
    rows = json.loads(s.rows)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _reporters(acc: dict[str, list[int]]) -> tuple[Reporter, ...]:
    return tuple(Reporter(org, n[0], n[1], n[2]) for org, n in sorted(acc.items(), key=lambda kv: -kv[1][0]))


def dmarc_view(domain: str, days: int, summaries: list[ReportSummary]) -> DmarcView:
    by_org: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    failing: dict[tuple[str, str], list[Any]] = {}
    passed = failed = 0
    for s in summaries:
        by_org[s.org][0] += 1
        for r in _rows(s):
            n = int(r.get("count", 0))
            ok = r.get("dkim") == "pass" or r.get("spf") == "pass"  # RFC 7489 §6.6.2
            if ok:
                passed += n
                by_org[s.org][1] += n
                continue
            failed += n
            by_org[s.org][2] += n
            key = (str(r.get("ip", "")), str(r.get("from", "")))
            entry = failing.setdefault(key, [0, set()])
            entry[0] += n
            why = f"dkim={r.get('dkim')} spf={r.get('spf')} disposition={r.get('disposition')}"
            reasons = r.get("reasons") or []
            entry[1].add(why + (f" ({', '.join(map(str, reasons))})" if reasons else ""))
    top = sorted(failing.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP_SOURCES]
    return DmarcView(
        domain,
        days,
        len(summaries),
        passed,
        failed,
        _reporters(by_org),
        tuple(FailingSource(ip, hf, e[0], "; ".join(sorted(e[1]))) for (ip, hf), e in top),
    )


def tls_view(domain: str, days: int, summaries: list[ReportSummary]) -> TlsView:
    by_org: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    pols: dict[tuple[str, str], list[Any]] = {}
    for s in summaries:
        by_org[s.org][0] += 1
        for r in _rows(s):
            ok, bad = int(r.get("success", 0)), int(r.get("failure", 0))
            by_org[s.org][1] += ok
            by_org[s.org][2] += bad
            p = pols.setdefault((str(r.get("type", "")), str(r.get("domain", ""))), [0, 0, defaultdict(int)])
            p[0] += ok
            p[1] += bad
            for kind, n in dict(r.get("failures") or {}).items():
                p[2][str(kind)] += int(n)
    policies = tuple(
        PolicyView(t, d, p[0], p[1], tuple(sorted(p[2].items(), key=lambda kv: (-kv[1], kv[0]))))
        for (t, d), p in sorted(pols.items())
    )
    return TlsView(
        domain,
        days,
        len(summaries),
        sum(p.success for p in policies),
        sum(p.failure for p in policies),
        _reporters(by_org),
        policies,
    )


async def load_dmarc(store: Reports, domain: str, days: int, now: float | None = None) -> DmarcView:
    since = (time.time() if now is None else now) - days * 86400
    return dmarc_view(domain, days, await store.list_reports(domain, ReportKind.DMARC, since))


async def load_tls(store: Reports, domain: str, days: int, now: float | None = None) -> TlsView:
    since = (time.time() if now is None else now) - days * 86400
    return tls_view(domain, days, await store.list_reports(domain, ReportKind.TLSRPT, since))
