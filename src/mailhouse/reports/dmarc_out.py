"""DMARC aggregate reports we send (RFC 7489 §7.2, the XML of appendix C).

Recording: for each message arriving on port 25 whose author domain has a DMARC record
(result ``pass`` or ``fail``), :func:`record` adds one to the day's row for (policy domain,
source IP, disposition, aligned DKIM/SPF, the auth results' domains and selectors,
envelope-from, header-from) — an upsert, never a row per message.

Sending (`outbound.ReportSender`): :func:`build` re-fetches each domain's DMARC record
(RFC 7489 §6.6.3 discovery, as for inbound mail), takes its ``rua`` and ``p``/``sp``/``pct``/
``adkim``/``aspf`` for ``policy_published``, and makes ``<receiver>!<policy-domain>!<begin>!<end>.xml.gz``
(§7.2.1.1). Rows beyond `outbound.MAX_ROWS` are dropped, smallest counts first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from mailhouse.config import Config
from mailhouse.mailauth import dmarc
from mailhouse.mailauth.inbound import Evaluation
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
from mailhouse.smtpclient.tlsrpt import RowCounter, day_of
from mailhouse.store.api import ReportKind, ReportRow

log = logging.getLogger(__name__)

__all__ = ["make_build", "record", "row_key", "xml_report"]


def row_key(ev: Evaluation, ip: str, envelope_from: str) -> str:
    """The row's fields as canonical JSON (RFC 7489 appendix C ``RecordType``)."""
    r = ev.result
    spf = ev.spf
    fields = {
        "source_ip": ip,
        "disposition": r.disposition.value,  # §7.2.1.1 the policy actually applied
        "dkim": "pass" if r.aligned_dkim else "fail",  # policy_evaluated: aligned results
        "spf": "pass" if r.aligned_spf else "fail",
        "reason": "sampled_out" if r.sampled_out else ev.override,
        "header_from": r.from_domain,
        "envelope_from": envelope_from.rpartition("@")[2].lower(),
        "auth_dkim": sorted([d.domain.lower(), d.selector, _dkim_result(d.result)] for d in ev.dkim),
        "auth_spf": [spf.domain.lower(), "helo" if spf.identity == "helo" else "mfrom", spf.result]
        if spf is not None
        else [],
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _dkim_result(r: str) -> str:
    # appendix C DKIMResultType: none, pass, fail, policy, neutral, temperror, permerror
    return r if r in ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror") else "neutral"


async def record(store: RowCounter, ev: Evaluation, ip: str, envelope_from: str, now: float = 0.0) -> None:
    """Count one evaluated message in today's (UTC) row for its author domain."""
    if ev.result.result not in ("pass", "fail") or not ev.result.from_domain:
        return  # no policy record: nobody to report to
    row = ReportRow(
        ReportKind.DMARC, day_of(now or time.time()), ev.result.from_domain, row_key(ev, ip, envelope_from), 1
    )
    try:
        await store.count_report_row(row)
    except Exception:
        log.exception("DMARC report: could not record a result for %s", ev.result.from_domain)


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


_FIELDS = (
    "source_ip",
    "disposition",
    "dkim",
    "spf",
    "reason",
    "header_from",
    "envelope_from",
    "auth_dkim",
    "auth_spf",
)


def _fields(key: str) -> dict[str, Any] | None:
    """A row key's fields; None (logged) for a key this version did not write."""
    try:
        f = json.loads(key)
    except ValueError:
        f = None
    if not isinstance(f, dict) or any(k not in f for k in _FIELDS):
        log.warning("DMARC report: skipped a row with an unknown key %.200r", key)
        return None
    return f


def xml_report(
    org: str,
    email: str,
    report_id: str,
    begin: int,
    end: int,
    domain: str,
    rec: dmarc.DmarcRecord,
    rows: Sequence[tuple[str, int]],
) -> bytes:
    """The aggregate report document (RFC 7489 appendix C) for DOMAIN's ROWS (key, count)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<feedback>", _el("version", "1.0")]
    out += [
        "<report_metadata>",
        _el("org_name", org),
        _el("email", email),
        _el("report_id", report_id),
        f"<date_range>{_el('begin', begin)}{_el('end', end)}</date_range>",
        "</report_metadata>",
        "<policy_published>",
        _el("domain", domain),
        _el("adkim", "s" if rec.adkim_strict else "r"),
        _el("aspf", "s" if rec.aspf_strict else "r"),
        _el("p", rec.p.value),
        _el("sp", rec.sp.value),
        _el("pct", rec.pct),
        "</policy_published>",
    ]
    for key, count in rows:
        f = _fields(key)
        if f is None:
            continue
        reason = f"<reason>{_el('type', f['reason'])}</reason>" if f["reason"] else ""
        auth = "".join(
            f"<dkim>{_el('domain', d)}{_el('selector', s)}{_el('result', r)}</dkim>"
            for d, s, r in f["auth_dkim"]
        )
        spf = f["auth_spf"] or [f["envelope_from"] or f["header_from"], "mfrom", "none"]
        auth += f"<spf>{_el('domain', spf[0])}{_el('scope', spf[1])}{_el('result', spf[2])}</spf>"
        env = _el("envelope_from", f["envelope_from"]) if f["envelope_from"] else ""
        out += [
            "<record>",
            f"<row>{_el('source_ip', f['source_ip'])}{_el('count', count)}<policy_evaluated>"
            f"{_el('disposition', f['disposition'])}{_el('dkim', f['dkim'])}{_el('spf', f['spf'])}{reason}"
            "</policy_evaluated></row>",
            f"<identifiers>{env}{_el('header_from', f['header_from'])}</identifiers>",
            f"<auth_results>{auth}</auth_results>",
            "</record>",
        ]
    out.append("</feedback>")
    return ("\n".join(out) + "\n").encode()


def make_build(cfg: Config, lookup: TxtLookup) -> Build:
    """The `ReportSender.send` BUILD step for DMARC on CFG, DNS through LOOKUP."""

    async def build(day: str, by_domain: dict[str, list[tuple[str, int]]]) -> list[Document | Outcome]:
        begin, end = day_range(day)
        org = cfg.reports_org_name or cfg.hostname
        email = cfg.reports_from or f"noreply-reports@{cfg.hostname}"
        grouped: dict[str, tuple[dmarc.DmarcRecord, dict[str, int]]] = {}
        out: list[Document | Outcome] = []
        for domain, rows in sorted(by_domain.items()):
            disc = await _discover(domain, lookup)
            if disc.record is None:  # §7.2: re-fetched now; gone or broken → nothing to send
                why = disc.reason or disc.error or "no DMARC record"
                status = Status.DNS_ERROR if disc.error == "temperror" else Status.NO_RECORD
                out.append(Outcome(ReportKind.DMARC, domain, status, detail=why))
                continue
            # the policy domain: where the record was found (§6.6.3 organisational fallback)
            pdom = dmarc.organizational_domain(domain) if disc.at_org else domain
            rec, counts = grouped.setdefault(pdom, (disc.record, {}))
            for key, n in rows:
                counts[key] = counts.get(key, 0) + n
        for pdom, (rec, counts) in grouped.items():
            rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if len(rows) > MAX_ROWS:
                log.warning("DMARC report for %s: %d rows, sending the %d largest", pdom, len(rows), MAX_ROWS)
                rows = rows[:MAX_ROWS]
            rid = report_id(cfg, pdom, day)
            xml = xml_report(org, email, rid, begin, end, pdom, rec, rows)
            out.append(document(ReportKind.DMARC, cfg, pdom, day, xml, rec.rua))
        return out

    return build


async def _discover(domain: str, lookup: TxtLookup) -> dmarc.Discovery:
    """RFC 7489 §6.6.3 discovery with async LOOKUP (answers gathered first, then the same rules)."""
    answers: dict[str, list[bytes] | None] = {}
    org = dmarc.organizational_domain(domain)
    for name in dict.fromkeys([domain, org]):
        try:
            got = await lookup(f"_dmarc.{name}")
        except dmarc.DnsTemporary as e:
            return dmarc.Discovery(domain, None, error="temperror", reason=str(e))
        answers[f"_dmarc.{name}"] = None if got is None else [g.encode() for g in got]
    return dmarc.discover(domain, lambda name, _t: answers.get(name), time.monotonic() + 60)
