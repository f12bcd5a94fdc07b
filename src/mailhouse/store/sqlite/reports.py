"""SQLite primitives for received-report summaries; the rules are in `store/reports.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3

from mailhouse.store.api import ReportKind, ReportSummary


class ReportsTx:
    c: sqlite3.Connection

    async def insert_report(self, r: ReportSummary) -> bool:
        cur = self.c.execute(
            "INSERT OR IGNORE INTO reports(domain, kind, org, report_id, begin_at, end_at, received, rows)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (r.domain, r.kind.value, r.org, r.report_id, r.begin, r.end, r.received, r.rows),
        )
        return cur.rowcount > 0

    async def reports(self, domain: str, kind: str, since: float) -> list[ReportSummary]:
        rows = self.c.execute(
            "SELECT domain, kind, org, report_id, begin_at, end_at, received, rows FROM reports"
            " WHERE domain=? AND kind=? AND end_at>=? ORDER BY begin_at, org, report_id",
            (domain, kind, since),
        ).fetchall()
        return [ReportSummary(r[0], ReportKind(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
