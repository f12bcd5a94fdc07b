"""Parse SMTP TLS reports (RFC 8460 §4: the JSON report schema).

Invariants: the document is at most `archive.MAX_REPORT_BYTES` (checked by the caller's
unpack); at most `MAX_POLICIES` policies and `MAX_FAILURE_DETAILS` failure details per policy
are read; a report without organization-name, report-id, date-range or policies is a
`ReportError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailhouse.reports.archive import ReportError

MAX_POLICIES = 10_000
MAX_FAILURE_DETAILS = 10_000


@dataclass(frozen=True, slots=True)
class TlsPolicyResult:
    """RFC 8460 §4.4: one entry of "policies"."""

    policy_type: str  # sts | tlsa | no-policy-found
    policy_domain: str
    success: int  # summary/total-successful-session-count
    failure: int  # summary/total-failure-session-count
    failures: tuple[tuple[str, int], ...]  # (result-type, failed-session-count), summed by type


@dataclass(frozen=True, slots=True)
class TlsReport:
    org_name: str
    report_id: str
    begin: int
    end: int
    contact: str
    policies: tuple[TlsPolicyResult, ...]


def _epoch(value: Any, what: str) -> int:
    # RFC 8460 §4.4: start-datetime/end-datetime are RFC 3339 date-times
    if not isinstance(value, str):
        raise ReportError(f"{what} missing")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ReportError(f"{what} is not an RFC 3339 date-time: {value[:40]!r}") from None


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(f"{what} is not a count")
    return value


def parse(data: bytes) -> TlsReport:
    """The report in DATA (already decompressed JSON); `ReportError` for anything else."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ReportError(f"malformed JSON: {str(e)[:80]}") from None
    if not isinstance(doc, dict):
        raise ReportError("not a TLS-RPT report (top level is not an object)")
    org, report_id = doc.get("organization-name"), doc.get("report-id")
    dr = doc.get("date-range")
    policies = doc.get("policies")
    if not isinstance(org, str) or not isinstance(report_id, str) or not org or not report_id:
        raise ReportError("organization-name or report-id missing")
    if not isinstance(dr, dict) or not isinstance(policies, list):
        raise ReportError("date-range or policies missing")
    if len(policies) > MAX_POLICIES:
        raise ReportError(f"{len(policies)} policies (at most {MAX_POLICIES})")
    out = []
    for p in policies:
        if not isinstance(p, dict) or not isinstance(p.get("policy"), dict):
            raise ReportError("a policies entry without policy")
        pol, summary = p["policy"], p.get("summary")
        if not isinstance(summary, dict):
            raise ReportError("a policies entry without summary")
        details = p.get("failure-details", [])
        if not isinstance(details, list) or len(details) > MAX_FAILURE_DETAILS:
            raise ReportError("failure-details is not a list or too long")
        by_type: dict[str, int] = {}
        for d in details:
            if not isinstance(d, dict) or not isinstance(d.get("result-type"), str):
                raise ReportError("a failure-details entry without result-type")
            n = _count(d.get("failed-session-count", 0), "failed-session-count")
            by_type[d["result-type"]] = by_type.get(d["result-type"], 0) + n
        out.append(
            TlsPolicyResult(
                policy_type=str(pol.get("policy-type", "")),
                policy_domain=str(pol.get("policy-domain", "")).lower().rstrip("."),
                success=_count(
                    summary.get("total-successful-session-count"), "total-successful-session-count"
                ),
                failure=_count(summary.get("total-failure-session-count"), "total-failure-session-count"),
                failures=tuple(sorted(by_type.items())),
            )
        )
    return TlsReport(
        org_name=org,
        report_id=report_id,
        begin=_epoch(dr.get("start-datetime"), "start-datetime"),
        end=_epoch(dr.get("end-datetime"), "end-datetime"),
        contact=str(doc.get("contact-info", "")),
        policies=tuple(out),
    )
