"""The daily send (reports/schedule.py): each serving node looks after start and every hour;
yesterday's reports go out once however many nodes look (the store's claim), DNS from dnsmasq,
the reports queued in the shared store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from mailhouse import config, services
from mailhouse.mailauth.dmarc import DmarcResult, Policy
from mailhouse.mailauth.inbound import Evaluation
from mailhouse.reports import schedule
from mailhouse.reports.dmarc_out import row_key
from mailhouse.reports.outbound import yesterday
from mailhouse.smtpclient.tlsrpt import PolicyType, TlsOutcome
from mailhouse.store.api import ReportKind, ReportRow


async def test_every_node_looks_one_sends(
    tmp_path: Path, dns_server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = dns_server_factory(
        txt={
            "_dmarc.shop.test": ["v=DMARC1; p=none; rua=mailto:dmarc@shop.test"],
            "_smtp._tls.shop.test": ["v=TLSRPTv1; rua=mailto:tls@shop.test"],
        }
    )
    monkeypatch.setattr(schedule, "START_JITTER", 0.0)
    cfg = config.from_dict(
        {"hostname": "mx.test", "data_dir": str(tmp_path), "dns": {"nameservers": [dns.nameserver]}}
    )
    nodes = [await services.build(cfg) for _ in range(3)]  # three nodes on one store
    try:
        day = yesterday(time.time())
        s = nodes[0].store
        ev = Evaluation(DmarcResult("pass", "shop.test", Policy.NONE, aligned_spf=True), None, ())
        await s.count_report_row(
            ReportRow(ReportKind.DMARC, day, "shop.test", row_key(ev, "192.0.2.1", ""), 4)
        )
        await s.count_report_row(
            ReportRow(ReportKind.DMARC, day, "shop.test", '{"from":"a future version"}', 1)
        )
        tls = TlsOutcome("shop.test", PolicyType.NO_POLICY, None)
        await s.count_report_row(ReportRow(ReportKind.TLSRPT, day, "shop.test", tls.key(), 9))
        daily = [
            schedule.DailyReports(cfg, n.store, n.outbound.enqueue, f"node{i}") for i, n in enumerate(nodes)
        ]
        for d in daily:
            d.start()
        deadline = time.monotonic() + 30
        while len(await s.list()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the other nodes have looked too by now
        for d in daily:
            await d.stop()
        queued = await s.list()
        assert sorted(r.address for e in queued for r in e.recipients) == ["dmarc@shop.test", "tls@shop.test"]
        assert {e.sender for e in queued} == {"noreply-reports@mx.test"}
        # the claims stay: a later look (or `report send`) sends nothing again
        out = await schedule.send_due(cfg, s, nodes[1].outbound.enqueue, "node1")
        assert {o.status.value for o in out} == {"already sent"}
        assert len(await s.list()) == 2
    finally:
        for n in nodes:
            await n.outbound.pool.close()
            await n.store.close()


async def test_send_false_records_and_sends_nothing(tmp_path: Path) -> None:
    cfg = config.from_dict({"hostname": "mx.test", "data_dir": str(tmp_path), "reports": {"send": False}})
    n = await services.build(cfg)
    try:
        d = schedule.DailyReports(cfg, n.store, n.outbound.enqueue, "node")
        d.start()
        assert d._task is None
        await d.stop()
    finally:
        await n.store.close()


async def test_dmarc_reports_false_sends_only_tlsrpt(tmp_path: Path, dns_server_factory: Any) -> None:
    """[dmarc] reports = false: no DMARC aggregate report goes out; TLS-RPT still does."""
    dns = dns_server_factory(
        txt={
            "_dmarc.shop.test": ["v=DMARC1; p=none; rua=mailto:dmarc@shop.test"],
            "_smtp._tls.shop.test": ["v=TLSRPTv1; rua=mailto:tls@shop.test"],
        }
    )
    cfg = config.from_dict(
        {
            "hostname": "mx.test",
            "data_dir": str(tmp_path),
            "dns": {"nameservers": [dns.nameserver]},
            "dmarc": {"reports": False},
        }
    )
    n = await services.build(cfg)
    try:
        day = yesterday(time.time())
        ev = Evaluation(DmarcResult("pass", "shop.test", Policy.NONE, aligned_spf=True), None, ())
        await n.store.count_report_row(
            ReportRow(ReportKind.DMARC, day, "shop.test", row_key(ev, "192.0.2.1", ""), 4)
        )
        tls = TlsOutcome("shop.test", PolicyType.NO_POLICY, None)
        await n.store.count_report_row(ReportRow(ReportKind.TLSRPT, day, "shop.test", tls.key(), 9))
        await schedule.send_due(cfg, n.store, n.outbound.enqueue, "node")
        assert [r.address for e in await n.store.list() for r in e.recipients] == ["tls@shop.test"]
    finally:
        await n.outbound.pool.close()
        await n.store.close()
