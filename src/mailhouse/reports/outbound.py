"""Sending the reports other domains ask for: the machinery DMARC aggregate reports (RFC 7489
§7.2, `dmarc_out.py`) and TLS-RPT reports (RFC 8460, `tlsrpt_out.py`) share.

A kind module turns one day's counted rows (`Store.report_rows`) into one report per policy
domain: the report-URIs its DNS record names now (re-fetched at send time) and the gzipped
document. This module then, per report:

1. claims (kind, day, policy domain) in the store — the first node to claim sends, so a cluster
   sends each report once (`Store.claim_report`);
2. keeps the ``mailto:`` URIs whose size limit (RFC 7489 §6.2 ``!10m``) the attachment fits,
   and for DMARC, whose domain has authorised reports about the policy domain (RFC 7489 §7.1);
3. mails it through the queue from ``[reports] from`` (DKIM-signed when that domain is hosted): DMARC with the §7.2.1.1 subject and an
   ``application/gzip`` attachment, TLS-RPT as ``multipart/report; report-type="tlsrpt"`` with
   the §5.3 ``TLS-Report-Domain``/``TLS-Report-Submitter`` fields and ``application/tlsrpt+gzip``.

Invariants: never reports on a domain hosted here (our own mail coming back to us is no news,
and a report about a report about a report is a loop); a report is claimed before it is queued,
so a crash in between loses that day's report rather than sending it twice; ``https:`` URIs of
a TLS-RPT record (RFC 8460 §3) get the report by HTTPS POST (reports/https_post.py), after the
claim as well; other URIs are listed as skipped.
"""

from __future__ import annotations

import asyncio
import calendar
import enum
import gzip
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import unquote

from mailhouse.config import Config
from mailhouse.mailauth import dkim, dmarc
from mailhouse.reports import https_post
from mailhouse.store.api import DkimKey, Domain, ReportKind, ReportRow

log = logging.getLogger(__name__)

#: Largest gzipped report we send at all, whatever the URI allows: Gmail and most MTAs refuse
#: messages above 25 MB; 10 MB with base64 stays under.
MAX_REPORT_BYTES = 10 * 1024 * 1024
#: Rows per report: a domain with more distinct (source, result) pairs than this in one day gets
#: the largest counts and a note in the log (bounded memory and message size).
MAX_ROWS = 10_000
#: Rows are kept this many days after their day, then dropped (a `report send --date` can redo
#: a recent day that was missed).
KEEP_DAYS = 7
#: Time for one DNS look-up at send time (the record, the §7.1 authorisation).
DNS_TIMEOUT = 5.0

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class Status(enum.Enum):
    SENT = "sent"
    NO_RECORD = "no record"  # no policy record, or no usable rua in it
    NOT_AUTHORISED = "not authorised"  # RFC 7489 §7.1: no verification record at the rua domain
    TOO_BIG = "too big"  # larger than every URI's limit (RFC 7489 §6.2) or MAX_REPORT_BYTES
    HOSTED = "hosted here"  # our own domain: not reported to itself
    ALREADY = "already sent"  # another node (or an earlier run) claimed it
    DNS_ERROR = "dns error"
    NOT_SENT = "not sent"  # every https: POST failed and there was no mailto: (RFC 8460 §5.4)


@dataclass(frozen=True, slots=True)
class ReportUri:
    """One ``mailto:`` report-URI with its optional size limit (RFC 7489 §6.2)."""

    address: str
    max_size: int | None = None


def parse_uris(values: Sequence[str]) -> tuple[list[ReportUri], list[str]]:
    """(mailto URIs, the others as given): RFC 7489 §6.2 ``mailto:addr[!size[kmgt]]``,
    RFC 8460 §3 ``rua=mailto:…,https://…``. The address is percent-decoded (RFC 6068)."""
    out: list[ReportUri] = []
    other: list[str] = []
    for v in values:
        v = v.strip()
        m = re.fullmatch(r"mailto:([^!]+)(?:!(\d+)([kmgtKMGT]?))?", v)
        if not m:
            if v:
                other.append(v)
            continue
        addr = unquote(m.group(1)).strip()
        if "@" not in addr or any(c in addr for c in " <>\r\n,"):
            other.append(v)
            continue
        size = int(m.group(2)) * _SIZE_UNITS[m.group(3).lower()] if m.group(2) else None
        out.append(ReportUri(addr, size))
    return out, other


@dataclass(frozen=True, slots=True)
class Document:
    """One report ready to mail."""

    kind: ReportKind
    policy_domain: str
    report_id: str
    filename: str
    gz: bytes  # the gzipped XML (DMARC) or JSON (TLS-RPT)
    uris: tuple[ReportUri, ...]  # from the policy domain's record, before the checks here
    begin: int
    end: int
    skipped_uris: tuple[str, ...] = ()  # URIs we cannot use (https: of DMARC, malformed)
    https_uris: tuple[str, ...] = ()  # TLS-RPT https: URIs (RFC 8460 §3): POSTed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one (kind, policy domain) report of a day."""

    kind: ReportKind
    domain: str
    status: Status
    to: tuple[str, ...] = ()
    detail: str = ""

    def line(self) -> str:
        to = f" to {', '.join(self.to)}" if self.to else ""
        why = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.value} {self.domain}: {self.status.value}{to}{why}"


Build = Callable[[str, dict[str, list[tuple[str, int]]]], Awaitable[list["Document | Outcome"]]]
"""A kind's step: (day, {policy domain: [(row key, count)]}) → its documents, or outcomes for
domains that get none (no record now, DNS error)."""


class Enqueue(Protocol):
    """`QueueRunner.enqueue`: queue MESSAGE from SENDER to the REMOTE recipients, durably."""

    def __call__(
        self,
        queue_id: str,
        sender: str,
        remote: list[tuple[str, dict[str, str | None]]],
        message: bytes,
        mail_params: dict[str, str | None],
    ) -> Awaitable[None]: ...


class ReportStore(Protocol):
    async def report_rows(self, kind: ReportKind, day: str) -> list[ReportRow]: ...
    async def claim_report(self, kind: ReportKind, day: str, domain: str, owner: str, now: float) -> bool: ...
    async def drop_report_rows(self, kind: ReportKind, before: str) -> int: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def get_dkim_keys(self, domain: str) -> list[DkimKey]: ...


TxtLookup = Callable[[str], Awaitable[list[str] | None]]
"""NAME → its TXT strings (each record's strings joined); None for NXDOMAIN/no answer;
raises `dmarc.DnsTemporary` on timeout/SERVFAIL."""


def txt_lookup(cfg: Config) -> TxtLookup:
    """A `TxtLookup` on ``[dns] nameservers`` (dnspython in a worker thread)."""
    blocking = dmarc.resolver_lookup(dkim.make_resolver(cfg.dns_nameservers or None, DNS_TIMEOUT))

    async def lookup(name: str) -> list[str] | None:
        got = await asyncio.to_thread(blocking, name, DNS_TIMEOUT)
        return None if got is None else [g.decode("utf-8", "replace") for g in got]

    return lookup


def day_range(day: str) -> tuple[int, int]:
    """[begin, end] epoch seconds of UTC DAY (RFC 7489 §7.2.1.1 date_range; RFC 8460 §4.4)."""
    begin = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    return begin, begin + 86400 - 1


def yesterday(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now - 86400))


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def document(
    kind: ReportKind, cfg: Config, domain: str, day: str, body: bytes, rua: Sequence[str]
) -> Document:
    """DOMAIN's report of DAY: BODY gzipped, named ``<submitter>!<domain>!<begin>!<end>.<ext>.gz``
    (RFC 7489 §7.2.1.1, RFC 8460 §5.1), for the ``mailto:`` URIs of RUA."""
    begin, end = day_range(day)
    ext = "xml" if kind is ReportKind.DMARC else "json"
    uris, other = parse_uris(rua)
    https = [u for u in other if kind is ReportKind.TLSRPT and u.lower().startswith("https://")]
    other = [u for u in other if u not in https]
    return Document(
        kind,
        domain,
        report_id(cfg, domain, day),
        f"{cfg.hostname}!{domain}!{begin}!{end}.{ext}.gz",
        gz(body),
        tuple(uris),
        begin,
        end,
        tuple(other),
        tuple(https),
    )


def report_id(cfg: Config, domain: str, day: str) -> str:
    """Unique per (reporter, domain, day): RFC 7489 §7.2.1.1, RFC 8460 §4.4 report-id."""
    return f"{day}.{domain}@{cfg.hostname}"


def build_message(doc: Document, cfg: Config, to: Sequence[str], now: float) -> bytes:
    """The report message (RFC 7489 §7.2.1.1 for DMARC, RFC 8460 §5.3 for TLS-RPT)."""
    org = cfg.reports_org_name or cfg.hostname
    msg = EmailMessage()
    msg["From"] = cfg.reports_from or f"noreply-reports@{cfg.hostname}"
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=cfg.hostname)
    # RFC 7489 §7.2.1.1 / RFC 8460 §5.3: the same subject shape
    msg["Subject"] = f"Report Domain: {doc.policy_domain} Submitter: {org} Report-ID: <{doc.report_id}>"
    if doc.kind is ReportKind.TLSRPT:
        msg["TLS-Report-Domain"] = doc.policy_domain  # RFC 8460 §5.3
        msg["TLS-Report-Submitter"] = org
        msg.set_content(
            f"This is an aggregate TLS report (RFC 8460) from {org} for {doc.policy_domain}.\n",
        )
        msg.add_attachment(
            doc.gz, maintype="application", subtype="tlsrpt+gzip", filename=doc.filename
        )  # RFC 8460 §5.3 and §6.4
        msg.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
        msg.set_boundary(uuid.uuid4().hex)
    else:
        msg.set_content(
            f"This is a DMARC aggregate report (RFC 7489) from {org} for {doc.policy_domain}.\n",
        )
        msg.add_attachment(doc.gz, maintype="application", subtype="gzip", filename=doc.filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def authorised(policy_domain: str, uri: ReportUri, lookup: TxtLookup) -> bool:
    """RFC 7489 §7.1: reports may go to a domain other than the policy domain's organisation
    only when ``<policy-domain>._report._dmarc.<rua-domain>`` has a ``v=DMARC1`` TXT record."""
    rua_domain = uri.address.rpartition("@")[2].lower().rstrip(".")
    if dmarc.organizational_domain(rua_domain) == dmarc.organizational_domain(policy_domain):
        return True
    answers = await lookup(f"{policy_domain}._report._dmarc.{rua_domain}")
    return any(re.match(r"\s*v\s*=\s*DMARC1\s*(;|$)", a) for a in answers or ())


@dataclass
class ReportSender:
    """Sends one kind's reports of a day; BUILD makes the documents from the day's rows."""

    cfg: Config
    store: ReportStore
    enqueue: Enqueue
    lookup: TxtLookup
    owner: str  # who claims (node id), for the record
    clock: Callable[[], float] = time.time
    signer: dkim.DkimSigner = field(default_factory=dkim.DkimSigner)
    post: https_post.Post | None = None  # None: https_post.poster(cfg)

    async def send(
        self,
        kind: ReportKind,
        day: str,
        build: Build,
    ) -> list[Outcome]:
        rows = await self.store.report_rows(kind, day)
        by_domain: dict[str, list[tuple[str, int]]] = {}
        outcomes: list[Outcome] = []
        for r in rows:
            by_domain.setdefault(r.domain, []).append((r.key, r.count))
        for domain in list(by_domain):
            if await self.store.get_domain(domain) is not None:  # see the module docstring: no loops
                outcomes.append(Outcome(kind, domain, Status.HOSTED))
                del by_domain[domain]
        for item in await build(day, by_domain):
            outcomes.append(item if isinstance(item, Outcome) else await self._mail(item, day))
        await self.store.drop_report_rows(kind, _days_before(day, KEEP_DAYS))
        for o in outcomes:
            log.info("report %s for %s: %s", day, o.domain, o.line())
        return outcomes

    async def _mail(self, doc: Document, day: str) -> Outcome:
        extra = f"; skipped {', '.join(doc.skipped_uris)}" if doc.skipped_uris else ""
        if not doc.uris and not doc.https_uris:
            return Outcome(doc.kind, doc.policy_domain, Status.NO_RECORD, detail="no mailto: rua" + extra)
        to: list[str] = []
        refused: list[str] = []
        for uri in doc.uris:
            if uri.max_size is not None and len(doc.gz) > uri.max_size:  # RFC 7489 §6.2
                refused.append(f"{uri.address} over its {uri.max_size}-octet limit")
            elif len(doc.gz) > MAX_REPORT_BYTES:
                refused.append(f"{uri.address}: over {MAX_REPORT_BYTES} octets")
            elif doc.kind is ReportKind.DMARC and not await authorised(doc.policy_domain, uri, self.lookup):
                refused.append(f"{uri.address} not authorised by {doc.policy_domain}._report._dmarc")
            elif uri.address not in to:
                to.append(uri.address)
        if not to and not doc.https_uris:
            detail = "; ".join(refused) + extra
            status = Status.NOT_AUTHORISED if any("authorised" in r for r in refused) else Status.TOO_BIG
            return Outcome(doc.kind, doc.policy_domain, status, detail=detail)
        if not await self.store.claim_report(doc.kind, day, doc.policy_domain, self.owner, self.clock()):
            return Outcome(doc.kind, doc.policy_domain, Status.ALREADY)
        posted: list[str] = []
        if doc.https_uris:  # RFC 8460 §5.4: the gzipped report, POSTed
            post = self.post or https_post.poster(self.cfg)
            for url in doc.https_uris:
                why = await post(url, doc.gz)
                if why is None:
                    posted.append(url)
                else:
                    refused.append(f"POST to {url} failed: {why}")
        detail = "; ".join(refused) + extra
        if not to:
            return Outcome(
                doc.kind, doc.policy_domain, Status.SENT if posted else Status.NOT_SENT, tuple(posted), detail
            )
        now = self.clock()
        sender = self.cfg.reports_from or f"noreply-reports@{self.cfg.hostname}"
        qid = f"R{uuid.uuid4().hex[:16].upper()}"
        message = build_message(doc, self.cfg, to, now)
        from_domain = sender.rpartition("@")[2].lower()
        keys = await self.store.get_dkim_keys(from_domain)
        if keys:  # a hosted From domain: signed as its other mail is (DMARC of the report itself)
            message = await asyncio.to_thread(self.signer.sign, message, from_domain, keys)
        await self.enqueue(qid, sender, [(a, {}) for a in to], message, {})
        return Outcome(doc.kind, doc.policy_domain, Status.SENT, (*to, *posted), detail)


def _days_before(day: str, n: int) -> str:
    begin, _ = day_range(day)
    return time.strftime("%Y-%m-%d", time.gmtime(begin - n * 86400))
