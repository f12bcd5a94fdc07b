"""SQLite primitives for received-report summaries and outgoing report rows; the rules are in `store/reports.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3

from mailhouse.store.api import ReportKind, ReportRow, ReportSummary


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

    async def add_report_row(self, r: ReportRow) -> None:
        self.c.execute(
            "INSERT INTO report_rows(kind, day, domain, key, count) VALUES (?,?,?,?,?)"
            " ON CONFLICT(kind, day, domain, key) DO UPDATE SET count = count + excluded.count",
            (r.kind.value, r.day, r.domain, r.key, r.count),
        )

    async def report_rows(self, kind: str, day: str) -> list[ReportRow]:
        rows = self.c.execute(
            "SELECT domain, key, count FROM report_rows WHERE kind=? AND day=? ORDER BY domain, key",
            (kind, day),
        ).fetchall()
        return [ReportRow(ReportKind(kind), day, r[0], r[1], r[2]) for r in rows]

    async def insert_report_send(self, kind: str, day: str, domain: str, owner: str, at: float) -> bool:
        cur = self.c.execute(
            "INSERT OR IGNORE INTO report_sends(kind, day, domain, owner, at) VALUES (?,?,?,?,?)",
            (kind, day, domain, owner, at),
        )
        return cur.rowcount > 0

    async def delete_report_rows(self, kind: str, before: str) -> int:
        n = self.c.execute("DELETE FROM report_rows WHERE kind=? AND day<?", (kind, before)).rowcount
        self.c.execute("DELETE FROM report_sends WHERE kind=? AND day<?", (kind, before))
        return n
