"""Report intake at local delivery: a report mailed to a hosted domain's report address is
summarised in the store and filed into the account's Reports folder.

The report addresses are those `mailhouse dns` publishes in DMARC ``rua=`` (RFC 7489 §7.2.1.1)
and ``_smtp._tls`` ``rua=`` (RFC 8460 §3), or what ``[reports] dmarc_address`` /
``tlsrpt_address`` name. Only a message that carries a report (`archive.find_report`) or says
it is one in its header (RFC 7489 §7.2.1.1 Subject "Report Domain:", RFC 8460 §5.3
TLS-Report-Domain) is moved out of INBOX; other mail to postmaster stays where it was.

Invariants:
- Nothing is lost: a malformed, unsafe or oversized report is still filed (into the Reports
  folder) and its error logged; `take` never raises for the message's content.
- Parsing runs off the event loop, at most `PARSE_WORKERS` at a time, on at most
  `archive.MAX_MESSAGE_BYTES` of message and `archive.MAX_REPORT_BYTES` of report.
- A report is stored under the recipient's hosted domain, and only when it reports on that
  domain or one of its subdomains (a report about someone else's domain is kept, not counted).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailhouse.reports import dmarc_in, tlsrpt_in
from mailhouse.reports.archive import MAX_MESSAGE_BYTES, ReportError, find_report, unpack
from mailhouse.store.api import ReportKind, Reports, ReportSummary
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

PARSE_WORKERS = 2  # reports parsed at once per process (threads; each bounded by the archive limits)
DEFAULT_FOLDER = "Reports"

# RFC 7489 §7.2.1.1 Subject "Report Domain: … Submitter: … Report-ID: …"; RFC 8460 §5.3 header
_REPORT_HEADER = re.compile(rb"^(subject:[^\r\n]*report domain:|tls-report-domain:)", re.I | re.M)


class Outcome(enum.Enum):
    NOT_REPORT = "not a report"  # filed as usual
    STORED = "stored"
    DUPLICATE = "duplicate"  # already stored: counted once
    REFUSED = "refused"  # kept in the Reports folder, error logged


@dataclass(frozen=True, slots=True)
class IntakeResult:
    outcome: Outcome
    kind: ReportKind | None = None
    detail: str = ""

    @property
    def is_report(self) -> bool:
        return self.outcome is not Outcome.NOT_REPORT


@dataclass(frozen=True, slots=True)
class Parsed:
    kind: ReportKind
    org: str
    report_id: str
    begin: int
    end: int
    domains: tuple[str, ...]  # the domains it reports on
    rows: str  # JSON


def _head(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")  # RFC 5322 §2.1: the empty line ends the header section
    return data if end < 0 else data[: end + 2]


def _parse(data: bytes) -> Parsed | None:
    """Runs in a worker thread: None when DATA carries no report; ReportError when it is bad."""
    att = find_report(data)
    if att is None:
        if _REPORT_HEADER.search(_head(data)):
            raise ReportError("report message without a readable report attachment")
        return None
    doc = unpack(att)
    if att.kind is ReportKind.TLSRPT:
        t = tlsrpt_in.parse(doc)
        rows = [
            {
                "type": p.policy_type,
                "domain": p.policy_domain,
                "success": p.success,
                "failure": p.failure,
                "failures": dict(p.failures),
            }
            for p in t.policies
        ]
        doms = tuple(p.policy_domain for p in t.policies)
        return Parsed(ReportKind.TLSRPT, t.org_name, t.report_id, t.begin, t.end, doms, json.dumps(rows))
    d = dmarc_in.parse(doc)
    drows = [
        {
            "ip": r.source_ip,
            "count": r.count,
            "from": r.header_from,
            "disposition": r.disposition,
            "dkim": r.dkim,
            "spf": r.spf,
            "reasons": list(r.reasons),
            "auth": " ".join([*(f"dkim:{x}" for x in r.dkim_domains), *(f"spf:{x}" for x in r.spf_domains)]),
        }
        for r in d.rows
    ]
    return Parsed(ReportKind.DMARC, d.org_name, d.report_id, d.begin, d.end, (d.domain,), json.dumps(drows))


def _about(domains: tuple[str, ...], hosted: str) -> bool:
    return bool(domains) and all(d == hosted or d.endswith("." + hosted) for d in domains)


class ReportIntake:
    """Recognises report addresses and summarises the reports they receive (`take`)."""

    def __init__(
        self,
        store: Reports,
        addresses: tuple[str, ...] = ("postmaster",),
        folder: str = DEFAULT_FOLDER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.addresses = frozenset(a.lower() for a in addresses)  # local parts or whole addresses
        self.folder = folder
        self.clock = clock
        self._slots = asyncio.Semaphore(PARSE_WORKERS)

    def is_report_address(self, address: str) -> bool:
        a = address.lower()
        return a in self.addresses or a.rpartition("@")[0] in self.addresses

    async def take(self, data: bytes | SpooledMessage, domain: str, queue_id: str) -> IntakeResult:
        """Summarise the report in DATA (delivered to a report address of hosted DOMAIN)."""
        if isinstance(data, SpooledMessage):
            if data.size > MAX_MESSAGE_BYTES:
                return self._oversized(data.head, queue_id)
            raw = await asyncio.to_thread(data.to_bytes)
        else:
            raw = data
            if len(raw) > MAX_MESSAGE_BYTES:
                return self._oversized(raw[:65536], queue_id)
        try:
            async with self._slots:
                parsed = await asyncio.to_thread(_parse, raw)
        except ReportError as e:
            log.warning("[%s] report for %s kept unparsed: %s", queue_id, domain, e)
            return IntakeResult(Outcome.REFUSED, None, str(e))
        except Exception:  # a parser bug must not lose the message
            log.exception("[%s] report for %s kept unparsed: parser failure", queue_id, domain)
            return IntakeResult(Outcome.REFUSED, None, "parser failure")
        if parsed is None:
            return IntakeResult(Outcome.NOT_REPORT)
        if not _about(parsed.domains, domain.lower()):
            detail = f"reports on {', '.join(parsed.domains) or 'no domain'}, not on {domain}"
            log.warning("[%s] %s report kept, not counted: %s", queue_id, parsed.kind.value, detail)
            return IntakeResult(Outcome.REFUSED, parsed.kind, detail)
        summary = ReportSummary(
            domain,
            parsed.kind,
            parsed.org,
            parsed.report_id,
            parsed.begin,
            parsed.end,
            self.clock(),
            parsed.rows,
        )
        fresh = await self.store.add_report(summary)
        outcome = Outcome.STORED if fresh else Outcome.DUPLICATE
        log.info(
            "[%s] %s report %r from %s for %s: %s",
            queue_id,
            parsed.kind.value,
            parsed.report_id,
            parsed.org,
            domain,
            outcome.value,
        )
        return IntakeResult(outcome, parsed.kind)

    def _oversized(self, head: bytes, queue_id: str) -> IntakeResult:
        if not _REPORT_HEADER.search(head):
            return IntakeResult(Outcome.NOT_REPORT)
        detail = f"report message larger than {MAX_MESSAGE_BYTES} octets"
        log.warning("[%s] report kept unparsed: %s", queue_id, detail)
        return IntakeResult(Outcome.REFUSED, None, detail)
