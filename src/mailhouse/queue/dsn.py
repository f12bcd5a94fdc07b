"""Delivery Status Notifications: RFC 3464 multipart/report bounces, delay warnings, success.

RFCs: RFC 3464 (message/delivery-status), RFC 6522 (multipart/report), RFC 3461 §4
(NOTIFY, RET, ENVID, ORCPT honoured), RFC 3462/6522 text/rfc822-headers, RFC 3834
(Auto-Submitted), RFC 5321 §4.5.5 / §6.1 (a DSN goes to the reverse-path with a null
sender, and never to the null sender).

Invariants:
- `wanted()` is the only place that decides whether a recipient's event is reported:
  NOTIFY=NEVER suppresses everything; an explicit NOTIFY list reports only what it
  names; no NOTIFY means failures (and, by our choice as Postfix, delay warnings).
- The remote server's reply is carried verbatim (CR/LF folded, non-ASCII replaced) as
  `Diagnostic-Code: smtp; …`.
- RET=HDRS returns only the header (text/rfc822-headers); RET=FULL or none the whole
  message, unless it is larger than `MAX_RETURNED` (then the headers), and delay
  warnings carry the headers only.
- A DSN about a REQUIRETLS message (RFC 8689 §5) returns none of it (no third part, RFC 3464
  §2 allows that): the DSN itself travels without REQUIRETLS, so the content must not.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate

MAX_RETURNED = 1024 * 1024  # Postfix bounce_size_limit is 50 kB; 1 MiB keeps most originals whole

ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")  # RFC 3464 §2.3.3


@dataclass(frozen=True, slots=True)
class RecipientReport:
    address: str
    action: str  # one of ACTIONS
    status: str  # RFC 3463 status code "5.1.1"
    diagnostic: str = ""  # the remote reply, "550 5.1.1 no such user"
    remote_mta: str = ""
    orcpt: str = ""  # "rfc822;addr" as received (RFC 3461 §4.2)
    last_attempt: float = 0.0
    retry_until: float = 0.0


def wanted(notify: str, action: str) -> bool:
    """RFC 3461 §4.1: should ACTION for a recipient with NOTIFY be reported?"""
    items = {i.strip().upper() for i in notify.split(",") if i.strip()}
    if "NEVER" in items:
        return False
    if not items:  # default: failures; we also warn on delay (Postfix delay_warning_time)
        return action in ("failed", "delayed")
    want = {
        "failed": "FAILURE",
        "delayed": "DELAY",
        "delivered": "SUCCESS",
        "relayed": "SUCCESS",
        "expanded": "SUCCESS",
    }
    return want[action] in items


def status_of(reply: str, permanent: bool) -> str:
    """RFC 3463 status from a reply like "550 5.1.1 …", else a generic one by class."""
    parts = reply.split()
    if len(parts) > 1 and parts[1][:1] in "245" and parts[1].count(".") == 2:
        return parts[1]
    if parts and parts[0][:1] == "2":
        return "2.0.0"
    return "5.0.0" if permanent else "4.0.0"


def _clean(text: str, limit: int = 998) -> str:
    flat = " ".join(p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip())
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in flat)[:limit]


def _headers(message: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = message.find(sep)
        if i >= 0:
            return message[: i + len(sep)]
    return message


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}

INTRO = {
    "failed": "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients. The reasons are below.\r\n",
    "delayed": "Your message could not be delivered yet to one or more recipients.\r\n"
    "Delivery will be retried; you do not need to send it again.\r\n",
    "delivered": "Your message was successfully delivered to the recipients below.\r\n",
    "relayed": "Your message was relayed to a server that does not send delivery\r\n"
    "notifications; no further notice will follow.\r\n",
}


def build_dsn(
    *,
    reporting_mta: str,
    to: str,
    original: bytes,
    reports: list[RecipientReport],
    queue_id: str,
    arrival: float,
    ret: str = "",
    envid: str = "",
    now: float | None = None,
    return_content: bool = True,
) -> bytes:
    """The whole DSN message (CRLF line ends), ready for the queue or local delivery.
    RETURN_CONTENT=False (a REQUIRETLS message): notification and status parts only."""
    assert to, "never a DSN to the null sender"  # RFC 5321 §6.1 / RFC 3461 §6.2
    now = time.time() if now is None else now
    kind = reports[0].action if reports else "failed"
    if any(r.action == "failed" for r in reports):
        kind = "failed"
    boundary = f"{queue_id}.{secrets.token_hex(8)}/{reporting_mta}"
    crlf = "\r\n"
    head = crlf.join(
        [
            f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
            f"To: <{_clean(to)}>",
            f"Subject: {SUBJECTS.get(kind, SUBJECTS['failed'])}",
            f"Date: {formatdate(now, localtime=False)}",
            f"Message-ID: <{queue_id}.{secrets.token_hex(6)}@{reporting_mta}>",
            "Auto-Submitted: auto-replied",  # RFC 3834 §5
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status;{crlf}\tboundary="{boundary}"',
            "Content-Transfer-Encoding: 8bit",
        ]
    )
    human = [INTRO.get(kind, INTRO["failed"])]
    for r in reports:
        human.append(f"<{_clean(r.address)}>: {_clean(r.diagnostic or r.status)}\r\n")
    # RFC 3464 §2.2: per-message fields
    per_msg = [f"Reporting-MTA: dns; {reporting_mta}", f"X-Mailhouse-Queue-ID: {queue_id}"]
    if envid:
        per_msg.append(f"Original-Envelope-Id: {_clean(envid)}")  # RFC 3464 §2.2.1
    per_msg.append(f"Arrival-Date: {formatdate(arrival, localtime=False)}")
    blocks = [crlf.join(per_msg)]
    for r in reports:  # RFC 3464 §2.3: per-recipient fields
        f = []
        if r.orcpt:
            typ, _, addr = r.orcpt.partition(";")
            f.append(f"Original-Recipient: {typ or 'rfc822'};{_clean(addr)}")
        f.append(f"Final-Recipient: rfc822; {_clean(r.address)}")
        f.append(f"Action: {r.action}")
        f.append(f"Status: {r.status}")
        if r.remote_mta:
            f.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            f.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        if r.last_attempt:
            f.append(f"Last-Attempt-Date: {formatdate(r.last_attempt, localtime=False)}")
        if r.retry_until and r.action == "delayed":
            f.append(f"Will-Retry-Until: {formatdate(r.retry_until, localtime=False)}")
        blocks.append(crlf.join(f))
    status_body = (crlf + crlf).join(blocks) + crlf
    # RFC 3461 §4.3: RET=HDRS → headers only; FULL/default → whole message (size-capped)
    headers_only = ret.upper() == "HDRS" or kind == "delayed" or len(original) > MAX_RETURNED
    if headers_only:
        third_type, third = "text/rfc822-headers", _crlf(_headers(original))
    else:
        third_type, third = "message/rfc822", _crlf(original)
    if not third.endswith(b"\r\n"):
        third += b"\r\n"
    parts = [
        (
            f"--{boundary}{crlf}Content-Type: text/plain; charset=us-ascii{crlf}"
            f"Content-Description: Notification{crlf}{crlf}" + "".join(human)
        ).encode(),
        (
            f"--{boundary}{crlf}Content-Type: message/delivery-status{crlf}"
            f"Content-Description: Delivery report{crlf}{crlf}" + status_body
        ).encode(),
        (
            f"--{boundary}{crlf}Content-Type: {third_type}{crlf}"
            f"Content-Description: {'Undelivered Message' if kind == 'failed' else 'Message'}"
            f"{' Headers' if headers_only else ''}{crlf}{crlf}"
        ).encode()
        + third,
    ]
    if not return_content:  # RFC 8689 §5: nothing of a REQUIRETLS message over a plain DSN
        parts = parts[:2]
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return head.encode() + b"\r\n\r\n" + body
