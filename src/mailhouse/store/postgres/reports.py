"""PostgreSQL primitives for received-report summaries; the rules are in `store/reports.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from mailhouse.store.api import ReportKind, ReportSummary
from mailhouse.store.postgres.engine import Conn


class ReportsTx:
    c: Conn

    async def insert_report(self, r: ReportSummary) -> bool:
        status = await self.c.execute(
            "INSERT INTO reports(domain, kind, org, report_id, begin_at, end_at, received, rows)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING",
            r.domain,
            r.kind.value,
            r.org,
            r.report_id,
            r.begin,
            r.end,
            r.received,
            r.rows,
        )
        return str(status).rpartition(" ")[2] != "0"

    async def reports(self, domain: str, kind: str, since: float) -> list[ReportSummary]:
        rows = await self.c.fetch(
            "SELECT domain, kind, org, report_id, begin_at, end_at, received, rows FROM reports"
            " WHERE domain=$1 AND kind=$2 AND end_at>=$3 ORDER BY begin_at, org, report_id",
            domain,
            kind,
            since,
        )
        return [
            ReportSummary(r[0], ReportKind(r[1]), r[2], r[3], float(r[4]), float(r[5]), float(r[6]), r[7])
            for r in rows
        ]
