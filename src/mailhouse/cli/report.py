"""`mailhouse report dmarc DOMAIN [--days N]` and `mailhouse report tlsrpt DOMAIN [--days N]`:
the DMARC aggregate (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports received for a hosted domain.
`mailhouse report send [--dmarc|--tlsrpt] [--date YYYY-MM-DD]`: send the reports we owe other
domains for that UTC day (default yesterday) now (`reports/schedule.py`), one line per report.

Reads the summaries `reports.intake` stored at delivery (the reports themselves stay in the
report address's Reports folder); tables: reporters, pass/fail volumes, top failing sources
with reasons (DMARC) or policies with failure types (TLS-RPT).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.reports.schedule import send_due
from mailhouse.reports.views import DmarcView, TlsView, load_dmarc, load_tls
from mailhouse.store.api import ReportKind

DEFAULT_DAYS = 30


def _table(head: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    cells = [tuple(str(c) for c in r) for r in [head, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def format_dmarc(v: DmarcView) -> str:
    out = [
        f"DMARC aggregate reports for {v.domain}, last {v.days} days: {v.reports} reports, "
        f"{v.passed + v.failed} messages, {v.passed} passed, {v.failed} failed",
        "",
    ]
    out += _table(
        ("reporter", "reports", "passed", "failed"),
        [(r.org, r.reports, r.passed, r.failed) for r in v.reporters],
    )
    out += ["", "top failing sources:"]
    if v.failing:
        out += _table(
            ("source ip", "header from", "messages", "reasons"),
            [(f.ip, f.header_from, f.messages, f.reasons) for f in v.failing],
        )
    else:
        out.append("(none)")
    return "\n".join(out)


def format_tls(v: TlsView) -> str:
    out = [
        f"TLS-RPT reports for {v.domain}, last {v.days} days: {v.reports} reports, "
        f"{v.success} successful sessions, {v.failure} failed",
        "",
    ]
    out += _table(
        ("reporter", "reports", "successful", "failed"),
        [(r.org, r.reports, r.passed, r.failed) for r in v.reporters],
    )
    out += [""]
    out += _table(
        ("policy", "policy domain", "successful", "failed", "failure types"),
        [
            (
                p.policy_type,
                p.policy_domain,
                p.success,
                p.failure,
                ", ".join(f"{k}={n}" for k, n in p.failures) or "-",
            )
            for p in v.policies
        ],
    )
    return "\n".join(out)


async def cmd_send(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    from mailhouse.services import build

    if args.domain:
        raise ValueError("report send takes no domain (it sends every report due)")
    day = args.date
    if day is not None:
        try:
            time.strptime(day, "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"--date {day}: expected YYYY-MM-DD") from None
    kinds = [k for k, on in ((ReportKind.DMARC, args.dmarc), (ReportKind.TLSRPT, args.tlsrpt)) if on]
    svc = await build(cfg)
    try:
        outcomes = await send_due(
            cfg, svc.store, svc.outbound.enqueue, svc.outbound.owner, kinds or list(ReportKind), day
        )
    finally:
        await svc.outbound.pool.close()
        await svc.store.close()
    for o in outcomes:
        print(o.line())
    if not outcomes:
        print("no reports due")
    return 0


async def cmd_report(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    if args.kind == "send":
        return await cmd_send(args, cfg)
    if not args.domain:
        raise ValueError(f"report {args.kind} needs a DOMAIN")

    async def run(store: Any) -> int:
        domain = args.domain.lower().rstrip(".")
        if await store.get_domain(domain) is None:
            raise ValueError(f"domain {domain} is not hosted here")
        if args.days <= 0:
            raise ValueError("--days needs a positive number")
        if args.kind == "dmarc":
            print(format_dmarc(await load_dmarc(store, domain, args.days)))
        else:
            print(format_tls(await load_tls(store, domain, args.days)))
        return 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    r = sub.add_parser(
        "report", help="DMARC aggregate and TLS-RPT reports received for a hosted domain; send: those we owe"
    )
    r.add_argument("kind", choices=["dmarc", "tlsrpt", "send"])
    r.add_argument("domain", nargs="?")
    r.add_argument("--dmarc", action="store_true", help="send: only DMARC aggregate reports")
    r.add_argument("--tlsrpt", action="store_true", help="send: only TLS-RPT reports")
    r.add_argument("--date", help="send: the UTC day to report, YYYY-MM-DD (default: yesterday)")
    r.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"how far back (default {DEFAULT_DAYS})")
    r.set_defaults(fn=cmd_report)
