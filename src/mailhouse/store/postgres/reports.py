"""PostgreSQL primitives for received-report summaries and outgoing report rows; the rules are in `store/reports.py`.

Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from mailhouse.store.api import ReportKind, ReportRow, ReportSummary
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

    async def add_report_row(self, r: ReportRow) -> None:
        await self.c.execute(
            "INSERT INTO report_rows(kind, day, domain, key, count) VALUES ($1,$2,$3,$4,$5)"
            " ON CONFLICT(kind, day, domain, key) DO UPDATE SET count = report_rows.count + excluded.count",
            r.kind.value,
            r.day,
            r.domain,
            r.key,
            r.count,
        )

    async def report_rows(self, kind: str, day: str) -> list[ReportRow]:
        rows = await self.c.fetch(
            "SELECT domain, key, count FROM report_rows WHERE kind=$1 AND day=$2 ORDER BY domain, key",
            kind,
            day,
        )
        return [ReportRow(ReportKind(kind), day, r[0], r[1], int(r[2])) for r in rows]

    async def insert_report_send(self, kind: str, day: str, domain: str, owner: str, at: float) -> bool:
        status = await self.c.execute(
            "INSERT INTO report_sends(kind, day, domain, owner, at) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
            kind,
            day,
            domain,
            owner,
            at,
        )
        return str(status).rpartition(" ")[2] != "0"

    async def delete_report_rows(self, kind: str, before: str) -> int:
        status = await self.c.execute("DELETE FROM report_rows WHERE kind=$1 AND day<$2", kind, before)
        await self.c.execute("DELETE FROM report_sends WHERE kind=$1 AND day<$2", kind, before)
        return int(str(status).rpartition(" ")[2] or 0)
