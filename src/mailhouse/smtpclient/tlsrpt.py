"""TLS-RPT outcomes of outbound SMTP sessions (RFC 8460 §4.3), recorded as counts shared across nodes.

The outbound path (`queue/runner.py`, and the DANE check being built beside it) knows, for each
MX session, which policy applied (MTA-STS, DANE TLSA, or none) and how TLS went. It hands one
typed :class:`TlsOutcome` to :func:`record`; the daily report (`reports/tlsrpt_out.py`) reads
the counts back. This module sits under `queue/` and `reports/` so that both can use it.

Invariants:
- One upsert per outcome (`Store.count_report_row`): a row per distinct (policy, result, failure
  details), never a row per session; counts from every node add up.
- The row key is canonical JSON (sorted keys), so equal outcomes land on the same row.
- Recording never fails a delivery: a store error is logged and dropped.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from mailhouse.smtpclient.client import DaneFailed, SmtpConnection, SmtpError, TlsVerifyFailed
from mailhouse.store.api import ReportKind, ReportRow

log = logging.getLogger(__name__)

__all__ = [
    "AppliedPolicy",
    "NO_POLICY",
    "PolicyType",
    "ResultType",
    "TlsOutcome",
    "classify",
    "day_of",
    "record",
    "record_session",
    "sending_ip",
]


class PolicyType(enum.Enum):
    """RFC 8460 §4.4 ``policy-type``."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY = "no-policy-found"


class ResultType(enum.Enum):
    """RFC 8460 §4.3 result types (§4.3.1 negotiation, §4.3.2 policy failures)."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


@dataclass(frozen=True, slots=True)
class TlsOutcome:
    """One outbound session's TLS outcome toward POLICY_DOMAIN (the recipient domain)."""

    policy_domain: str
    policy_type: PolicyType
    result: ResultType | None  # None: the session negotiated TLS as the policy asks (a success)
    policy_string: tuple[str, ...] = ()  # §4.4: the policy's lines (STS) or TLSA records
    mx_host: tuple[str, ...] = ()  # §4.4 mx-host: the policy's MX patterns
    receiving_mx_hostname: str = ""  # §4.4 failure-details
    receiving_ip: str = ""
    sending_mta_ip: str = ""
    failure_reason_code: str = ""
    at: float = 0.0  # epoch seconds; 0 = now

    def key(self) -> str:
        """The row key: everything but the domain and the time, canonical JSON."""
        fields: dict[str, object] = {
            "policy-type": self.policy_type.value,
            "policy-string": list(self.policy_string),
            "mx-host": list(self.mx_host),
            "result-type": self.result.value if self.result else "",
        }
        if self.result is not None:  # §4.4: failure details only for failures
            fields.update(
                {
                    "sending-mta-ip": self.sending_mta_ip,
                    "receiving-mx-hostname": self.receiving_mx_hostname,
                    "receiving-ip": self.receiving_ip,
                    "failure-reason-code": self.failure_reason_code,
                }
            )
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


class RowCounter(Protocol):
    async def count_report_row(self, row: ReportRow) -> None: ...


def day_of(t: float) -> str:
    """The UTC day (YYYY-MM-DD) that epoch second T falls in: RFC 8460 §4.4 daily UTC ranges."""
    return time.strftime("%Y-%m-%d", time.gmtime(t))


async def record(store: RowCounter, outcome: TlsOutcome) -> None:
    """Count OUTCOME in today's (UTC) TLS-RPT rows for its policy domain."""
    domain = outcome.policy_domain.lower().rstrip(".")
    if not domain or domain.startswith("["):  # an address literal has no policy domain
        return
    row = ReportRow(ReportKind.TLSRPT, day_of(outcome.at or time.time()), domain, outcome.key(), 1)
    try:
        await store.count_report_row(row)
    except Exception:
        log.exception("TLS-RPT: could not record an outcome for %s", domain)


def classify(reply: str, verify_failed: bool) -> ResultType | None:
    """The RFC 8460 §4.3 result type of a failed connection attempt, from the client's error
    (VERIFY_FAILED: a certificate that did not verify); None when the failure is not about TLS."""
    text = reply.lower()
    if verify_failed:
        if "hostname mismatch" in text or "host name mismatch" in text or "ip address mismatch" in text:
            return ResultType.CERTIFICATE_HOST_MISMATCH
        if "expired" in text:
            return ResultType.CERTIFICATE_EXPIRED
        return ResultType.CERTIFICATE_NOT_TRUSTED
    if "tls required but not offered" in text:
        return ResultType.STARTTLS_NOT_SUPPORTED
    if "tls handshake" in text:
        return ResultType.VALIDATION_FAILURE
    return None


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """The policy that governed a delivery to a domain (RFC 8460 §4.4 ``policy``)."""

    type: PolicyType = PolicyType.NO_POLICY
    string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()

    @classmethod
    def sts(cls, mode: str, mx: tuple[str, ...], max_age: int) -> AppliedPolicy:
        """An MTA-STS policy (RFC 8461 §3.2), its lines as the report's policy-string."""
        lines = ("version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}")
        return cls(PolicyType.STS, lines, mx)


NO_POLICY = AppliedPolicy()


def sending_ip(
    session: SmtpConnection | SmtpError, receiving_ip: str, sources: Mapping[Literal[4, 6], str]
) -> str:
    """RFC 8460 §4.4 "sending-mta-ip": the local address of the connection when there is one,
    else the configured source address of RECEIVING_IP's family (`[queue] source_address`),
    else the address the kernel would send from (a connected UDP socket: no packet is sent)."""
    if isinstance(session, SmtpConnection) and session.writer is not None:
        name = session.writer.get_extra_info("sockname")
        if name:
            return str(name[0])
    try:
        version = ipaddress.ip_address(receiving_ip).version
    except ValueError:
        return ""
    if version in sources:
        return sources[version]
    try:
        with socket.socket(socket.AF_INET6 if version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((receiving_ip, 9))  # route selection only: UDP connect sends nothing
            return str(s.getsockname()[0])
    except OSError:
        return ""


async def record_session(
    store: RowCounter,
    domain: str,
    policy: AppliedPolicy | None,
    host: str,
    ip: str,
    session: SmtpConnection | SmtpError,
    sources: Mapping[Literal[4, 6], str] | None = None,
) -> None:
    """Record how a connection to MX HOST [IP] for DOMAIN went under POLICY (None: not an MX
    delivery, e.g. a configured route — nothing to report). SESSION is the connection, or the
    error that ended the attempt; errors that are not about TLS are not recorded. SOURCES: the
    configured source address per IP version (for "sending-mta-ip" of a failure)."""
    if policy is None:
        return
    result: ResultType | None
    if isinstance(session, DaneFailed):  # RFC 8460 §4.3.2.1: the DANE check names the result type
        result = ResultType(session.failure.value)
    elif isinstance(session, SmtpError):
        result = classify(session.reply, isinstance(session, TlsVerifyFailed))
        if result is None:
            return
    else:  # RFC 8460 §4.3.1: a session that did not negotiate TLS at all
        result = None if session.tls else ResultType.STARTTLS_NOT_SUPPORTED
    await record(
        store,
        TlsOutcome(
            domain,
            policy.type,
            result,
            policy.string,
            policy.mx_host,
            receiving_mx_hostname=host,
            receiving_ip=ip,
            sending_mta_ip=sending_ip(session, ip, sources or {}) if result is not None else "",
        ),
    )
