"""Report rules (store/reports.py) on every backend: received summaries stored once per
(domain, kind, org, report id), listed by date range; outgoing report rows counted by upsert
and claimed for sending once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store import open_store
from mailhouse.store.api import ReportKind, ReportRow, ReportSummary, Store


@pytest.fixture
async def store(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if store_backend == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    else:
        s = open_store(request.getfixturevalue("postgres_db_url"), tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _summary(
    report_id: str, end: float, kind: ReportKind = ReportKind.DMARC, domain: str = "Example.ORG."
) -> ReportSummary:
    return ReportSummary(
        domain, kind, "google.com", report_id, end - 86400, end, end + 60, '[{"ip": "192.0.2.1"}]'
    )


async def test_duplicate_report_stored_once(store: Store) -> None:
    assert await store.add_report(_summary("r1", 1000.0))
    assert not await store.add_report(_summary("r1", 1000.0))
    assert await store.add_report(_summary("r1", 1000.0, ReportKind.TLSRPT))  # another kind: another report
    got = await store.list_reports("example.org", ReportKind.DMARC, 0)
    assert [(r.domain, r.report_id, r.rows) for r in got] == [("example.org", "r1", '[{"ip": "192.0.2.1"}]')]


async def test_list_by_domain_kind_and_date(store: Store) -> None:
    await store.add_report(_summary("old", 1000.0))
    await store.add_report(_summary("new", 5000.0))
    await store.add_report(_summary("other", 5000.0, domain="example.net"))
    assert [r.report_id for r in await store.list_reports("EXAMPLE.org", ReportKind.DMARC, 2000.0)] == ["new"]
    assert [r.report_id for r in await store.list_reports("example.org", ReportKind.DMARC, 0.0)] == [
        "old",
        "new",
    ]
    assert await store.list_reports("example.org", ReportKind.TLSRPT, 0.0) == []


def _row(key: str, n: int = 1, day: str = "2026-12-07", kind: ReportKind = ReportKind.DMARC) -> ReportRow:
    return ReportRow(kind, day, "Example.ORG.", key, n)


async def test_report_rows_are_counted_not_appended(store: Store) -> None:
    # RFC 7489 §7.2: one row per distinct result with a count, however many messages
    await asyncio.gather(*(store.count_report_row(_row('{"ip":"192.0.2.1"}')) for _ in range(20)))
    await store.count_report_row(_row('{"ip":"192.0.2.2"}', 3))
    await store.count_report_row(_row('{"ip":"192.0.2.1"}', 2, day="2026-12-08"))
    await store.count_report_row(_row('{"ip":"192.0.2.1"}', 5, kind=ReportKind.TLSRPT))
    got = await store.report_rows(ReportKind.DMARC, "2026-12-07")
    assert [(r.domain, r.key, r.count) for r in got] == [
        ("example.org", '{"ip":"192.0.2.1"}', 20),
        ("example.org", '{"ip":"192.0.2.2"}', 3),
    ]
    assert [r.count for r in await store.report_rows(ReportKind.TLSRPT, "2026-12-07")] == [5]
    assert await store.drop_report_rows(ReportKind.DMARC, "2026-12-08") == 2
    assert await store.report_rows(ReportKind.DMARC, "2026-12-07") == []
    assert [r.count for r in await store.report_rows(ReportKind.DMARC, "2026-12-08")] == [2]
    assert [r.count for r in await store.report_rows(ReportKind.TLSRPT, "2026-12-07")] == [5]


async def test_report_claimed_once_across_nodes(store: Store) -> None:
    claims = await asyncio.gather(
        *(
            store.claim_report(ReportKind.DMARC, "2026-12-07", "Example.org", f"node{i}", 1.0)
            for i in range(5)
        )
    )
    assert sorted(claims) == [False] * 4 + [True]
    assert not await store.claim_report(ReportKind.DMARC, "2026-12-07", "example.org.", "node9", 2.0)
    assert await store.claim_report(ReportKind.TLSRPT, "2026-12-07", "example.org", "node9", 2.0)
    assert await store.claim_report(ReportKind.DMARC, "2026-12-08", "example.org", "node9", 2.0)
