"""Parse DMARC aggregate reports (RFC 7489 §7.2 and Appendix C, and the DMARCbis namespace).

The XML is parsed with defusedxml with DTDs forbidden: no entity expansion (billion laughs), no
external entities (XXE), no network access. Element names are matched without namespace, so
both the RFC 7489 schema (no namespace) and ``urn:ietf:params:xml:ns:dmarc-2.0`` parse.

Invariants: at most `MAX_RECORDS` records are read; a report without ``report_metadata``
(org_name, report_id, date_range) or ``policy_published/domain`` is a `ReportError`.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from mailhouse.reports.archive import ReportError

MAX_RECORDS = 100_000  # rows per report (Google's biggest daily reports hold a few thousand)


@dataclass(frozen=True, slots=True)
class DmarcRow:
    """One <record>: RFC 7489 Appendix C RecordType (row + identifiers + auth_results)."""

    source_ip: str
    count: int
    header_from: str
    disposition: str  # none | quarantine | reject (policy_evaluated)
    dkim: str  # pass | fail (policy_evaluated: DMARC-aligned DKIM)
    spf: str  # pass | fail (policy_evaluated: DMARC-aligned SPF)
    reasons: tuple[str, ...]  # policy_evaluated/reason/type (forwarded, mailing_list, …)
    dkim_domains: tuple[str, ...]  # auth_results/dkim: "domain=result"
    spf_domains: tuple[str, ...]  # auth_results/spf: "domain=result"

    @property
    def passed(self) -> bool:
        # RFC 7489 §3.1 / §6.6.2: DMARC passes when aligned DKIM or aligned SPF passes
        return self.dkim == "pass" or self.spf == "pass"


@dataclass(frozen=True, slots=True)
class DmarcReport:
    org_name: str
    email: str
    report_id: str
    begin: int  # date_range, seconds since the epoch (UTC)
    end: int
    domain: str  # policy_published/domain
    policy: str  # policy_published/p
    rows: tuple[DmarcRow, ...]


@functools.lru_cache(maxsize=256)  # a report repeats a few dozen tag names thousands of times
def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element | None, *path: str) -> str:
    for name in path:
        el = _child(el, name)
    return (el.text or "").strip() if el is not None else ""


def _int(value: str, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ReportError(f"{what} is not an integer: {value[:40]!r}") from None
    if n < 0:
        raise ReportError(f"{what} is negative")
    return n


def parse(xml: bytes) -> DmarcReport:
    """The report in XML (already decompressed); `ReportError` for anything else."""
    try:
        root = SafeET.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise ReportError(f"unsafe XML refused: {type(e).__name__}") from None
    except (ET.ParseError, LookupError, ValueError) as e:  # LookupError: an unknown encoding declared
        raise ReportError(f"malformed XML: {e}") from None
    if _local(root.tag) != "feedback":  # RFC 7489 Appendix C: <feedback> is the root
        raise ReportError(f"not a DMARC aggregate report (root <{_local(root.tag)}>)")
    meta = _child(root, "report_metadata")
    org, report_id = _text(meta, "org_name"), _text(meta, "report_id")
    begin_s, end_s = _text(meta, "date_range", "begin"), _text(meta, "date_range", "end")
    domain = _text(root, "policy_published", "domain").lower().rstrip(".")
    if not (org and report_id and begin_s and end_s and domain):
        raise ReportError("report_metadata (org_name, report_id, date_range) or policy domain missing")
    records = _children(root, "record")
    if len(records) > MAX_RECORDS:
        raise ReportError(f"{len(records)} records (at most {MAX_RECORDS})")
    rows = []
    for rec in records:
        row = _child(rec, "row")
        pe = _child(row, "policy_evaluated")
        auth = _child(rec, "auth_results")
        rows.append(
            DmarcRow(
                source_ip=_text(row, "source_ip"),
                count=_int(_text(row, "count") or "0", "row count"),
                header_from=_text(rec, "identifiers", "header_from").lower(),
                disposition=_text(pe, "disposition").lower() or "none",
                dkim=_text(pe, "dkim").lower() or "fail",
                spf=_text(pe, "spf").lower() or "fail",
                reasons=tuple(_text(r, "type") for r in _children(pe, "reason") if _text(r, "type")),
                dkim_domains=tuple(
                    f"{_text(d, 'domain')}={_text(d, 'result')}" for d in _children(auth, "dkim")
                ),
                spf_domains=tuple(
                    f"{_text(s, 'domain')}={_text(s, 'result')}" for s in _children(auth, "spf")
                ),
            )
        )
    return DmarcReport(
        org_name=org,
        email=_text(meta, "email"),
        report_id=report_id,
        begin=_int(begin_s, "date_range begin"),
        end=_int(end_s, "date_range end"),
        domain=domain,
        policy=_text(root, "policy_published", "p"),
        rows=tuple(rows),
    )
