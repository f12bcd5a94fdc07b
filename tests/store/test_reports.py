"""Received-report summaries (store/reports.py) on every backend: stored once per
(domain, kind, org, report id), listed by date range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store import open_store
from mailhouse.store.api import ReportKind, ReportSummary, Store


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
