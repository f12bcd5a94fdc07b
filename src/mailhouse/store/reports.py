"""Report rules, written once: summaries of the reports RECEIVED for hosted domains (DMARC
aggregate, TLS-RPT), and the aggregated rows and send claims of the reports we SEND.

Invariants:
- An outgoing report row is an upsert that adds to its count (RFC 7489 §7.2: an aggregate report
  counts messages per distinct result, never a row per message); concurrent nodes add, never
  overwrite.
- A (kind, day, policy domain) report is claimed once across the cluster: the first insert wins
  and only that node sends it.
- A report is identified by (domain, kind, reporting org, report id): RFC 7489 §7.2.1.1 and
  RFC 8460 §4.4 make the report id unique per reporter, so a report delivered twice (to two
  report addresses, or resent) is stored once and counted once.
- Domains are kept lower-case without a trailing dot; lookups normalise the same way.
"""

from __future__ import annotations

from dataclasses import replace

from mailhouse.store.api import ReportKind, ReportRow, ReportSummary
from mailhouse.store.backend import Tx


def _domain(d: str) -> str:
    return d.strip().lower().rstrip(".")


async def add_report(tx: Tx, summary: ReportSummary) -> bool:
    return await tx.insert_report(replace(summary, domain=_domain(summary.domain)))


async def list_reports(tx: Tx, domain: str, kind: ReportKind, since: float) -> list[ReportSummary]:
    return await tx.reports(_domain(domain), kind.value, since)


async def count_row(tx: Tx, row: ReportRow) -> None:
    if row.count > 0:
        await tx.add_report_row(replace(row, domain=_domain(row.domain)))


async def rows(tx: Tx, kind: ReportKind, day: str) -> list[ReportRow]:
    return await tx.report_rows(kind.value, day)


async def claim(tx: Tx, kind: ReportKind, day: str, domain: str, owner: str, now: float) -> bool:
    return await tx.insert_report_send(kind.value, day, _domain(domain), owner, now)
