"""TLS-RPT reports we send (RFC 8460): a daily JSON report per policy domain to the ``rua`` of
its ``_smtp._tls`` TXT record.

The outbound path records each MX session's outcome (`smtpclient/tlsrpt.py`, an upsert per
distinct policy/result/failure details). :func:`build` reads the day's rows back, groups them
by policy (§4.4 ``policies``: type, policy strings, MX patterns) into the success and failure
session counts and ``failure-details``, and gzips ``<submitter>!<policy-domain>!<begin>!<end>.json.gz``
(§5.1). The record is re-fetched at send time (§3): ``v=TLSRPTv1`` first, ``rua`` a comma list
of ``mailto:`` (sent) and ``https:`` URIs (not supported: listed as skipped).
"""

from __future__ import annotations

import json
import logging
import re
import time

from mailhouse.config import Config
from mailhouse.mailauth.dmarc import DnsTemporary
from mailhouse.reports.outbound import (
    MAX_ROWS,
    Build,
    Document,
    Outcome,
    Status,
    TxtLookup,
    day_range,
    document,
    report_id,
)
from mailhouse.store.api import ReportKind

__all__ = ["json_report", "make_build", "parse_record"]

log = logging.getLogger(__name__)

#: A TXT answer longer than this is not a TLS-RPT record (a few rua URIs): ignored unparsed.
MAX_RECORD_OCTETS = 4096


def parse_record(texts: list[str]) -> list[str] | None:
    """The ``rua`` URIs of the one ``v=TLSRPTv1`` record among TEXTS (RFC 8460 §3), None when
    there is none or more than one (§3: "If multiple records are returned, … no report")."""
    recs = [t for t in texts if len(t) <= MAX_RECORD_OCTETS and re.match(r"v=TLSRPTv1\s*(;|$)", t)]
    if len(recs) != 1:
        return None
    for part in recs[0].split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip() == "rua":
            return [u.strip() for u in value.split(",") if u.strip()]
    return None


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def json_report(
    org: str, contact: str, report_id: str, begin: int, end: int, domain: str, rows: list[tuple[str, int]]
) -> bytes:
    """The RFC 8460 §4.4 report for DOMAIN from its (row key, count) ROWS."""
    policies: dict[str, dict[str, object]] = {}
    for key, count in rows:
        try:
            f = json.loads(key)
            pkey = json.dumps([f["policy-type"], f["policy-string"], f["mx-host"]])
            result = f["result-type"]
        except (ValueError, TypeError, KeyError):
            log.warning("TLS-RPT report: skipped a row with an unknown key %.200r", key)
            continue
        p = policies.setdefault(
            pkey,
            {
                "policy": {
                    "policy-type": f["policy-type"],
                    **({"policy-string": f["policy-string"]} if f["policy-string"] else {}),
                    "policy-domain": domain,
                    **({"mx-host": f["mx-host"]} if f["mx-host"] else {}),
                },
                "summary": {"total-successful-session-count": 0, "total-failure-session-count": 0},
                "failure-details": [],
            },
        )
        summary = p["summary"]
        assert isinstance(summary, dict)
        if not result:
            summary["total-successful-session-count"] += count
            continue
        summary["total-failure-session-count"] += count
        detail: dict[str, object] = {"result-type": result, "failed-session-count": count}
        for name in ("sending-mta-ip", "receiving-mx-hostname", "receiving-ip", "failure-reason-code"):
            if f.get(name):
                detail[name] = f[name]
        details = p["failure-details"]
        assert isinstance(details, list)
        details.append(detail)
    for p in policies.values():
        if not p["failure-details"]:
            del p["failure-details"]  # §4.4: only when there are failures
    doc = {
        "organization-name": org,
        "date-range": {"start-datetime": _iso(begin), "end-datetime": _iso(end)},
        "contact-info": contact,
        "report-id": report_id,
        "policies": list(policies.values()),
    }
    return json.dumps(doc, indent=1).encode()


def make_build(cfg: Config, lookup: TxtLookup) -> Build:
    """The `ReportSender.send` BUILD step for TLS-RPT on CFG, DNS through LOOKUP."""

    async def build(day: str, by_domain: dict[str, list[tuple[str, int]]]) -> list[Document | Outcome]:
        begin, end = day_range(day)
        org = cfg.reports_org_name or cfg.hostname
        contact = cfg.reports_from or f"noreply-reports@{cfg.hostname}"
        out: list[Document | Outcome] = []
        for domain, rows in sorted(by_domain.items()):
            try:
                rua = parse_record(await lookup(f"_smtp._tls.{domain}") or [])  # §3, re-fetched now
            except DnsTemporary as e:
                out.append(Outcome(ReportKind.TLSRPT, domain, Status.DNS_ERROR, detail=str(e)))
                continue
            if rua is None:
                out.append(Outcome(ReportKind.TLSRPT, domain, Status.NO_RECORD, detail="no TLSRPTv1 record"))
                continue
            rows = sorted(rows, key=lambda kv: (-kv[1], kv[0]))[:MAX_ROWS]
            body = json_report(org, contact, report_id(cfg, domain, day), begin, end, domain, rows)
            out.append(document(ReportKind.TLSRPT, cfg, domain, day, body, rua))
        return out

    return build
