"""Received-report rules (DMARC aggregate, TLS-RPT summaries per hosted domain), written once.

Invariants:
- A report is identified by (domain, kind, reporting org, report id): RFC 7489 §7.2.1.1 and
  RFC 8460 §4.4 make the report id unique per reporter, so a report delivered twice (to two
  report addresses, or resent) is stored once and counted once.
- Domains are kept lower-case without a trailing dot; lookups normalise the same way.
"""

from __future__ import annotations

from dataclasses import replace

from mailhouse.store.api import ReportKind, ReportSummary
from mailhouse.store.backend import Tx


def _domain(d: str) -> str:
    return d.strip().lower().rstrip(".")


async def add_report(tx: Tx, summary: ReportSummary) -> bool:
    return await tx.insert_report(replace(summary, domain=_domain(summary.domain)))


async def list_reports(tx: Tx, domain: str, kind: ReportKind, since: float) -> list[ReportSummary]:
    return await tx.reports(_domain(domain), kind.value, since)
