"""RFC 3464 DSNs: structure checked with the stdlib email parser, NOTIFY/RET honoured."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailhouse.queue.dsn import RecipientReport, build_dsn, status_of, wanted

ORIG = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hello\r\n\r\nbody line\r\n"


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_failure_dsn_structure() -> None:
    raw = build_dsn(
        reporting_mta="mx.a.test",
        to="alice@a.test",
        original=ORIG,
        reports=[
            RecipientReport(
                "bob@b.test",
                "failed",
                "5.1.1",
                "550 5.1.1 <bob@b.test>: no such\r\n user",
                "mx.b.test",
                "rfc822;Bob@b.test",
                1.0,
            )
        ],
        queue_id="ABCDEF012345",
        arrival=0.0,
        envid="env-1",
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    m = parse(raw)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["Subject"] == "Undelivered Mail Returned to Sender"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    status = parts[1].get_payload()
    per_msg, per_rcpt = status[0], status[1]
    assert per_msg["Reporting-MTA"] == "dns; mx.a.test"
    assert per_msg["Original-Envelope-Id"] == "env-1"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@b.test"
    assert per_rcpt["Original-Recipient"] == "rfc822;Bob@b.test"
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.b.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@b.test>: no such user"
    returned = parts[2].get_payload()[0]
    assert returned["Subject"] == "hello"
    assert "body line" in returned.get_content()


def test_ret_hdrs_returns_headers_only() -> None:
    raw = build_dsn(
        reporting_mta="mx.a.test",
        to="alice@a.test",
        original=ORIG,
        reports=[RecipientReport("bob@b.test", "failed", "5.0.0", "550 no")],
        queue_id="Q",
        arrival=0,
        ret="HDRS",
    )
    parts = list(parse(raw).iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"body line" not in raw and b"Subject: hello" in raw


def test_delay_warning() -> None:
    raw = build_dsn(
        reporting_mta="mx.a.test",
        to="alice@a.test",
        original=ORIG,
        reports=[RecipientReport("bob@b.test", "delayed", "4.4.1", "451 4.4.1 down", retry_until=86400.0)],
        queue_id="Q",
        arrival=0,
    )
    m = parse(raw)
    assert m["Subject"].startswith("Delayed Mail")
    rcpt = list(m.iter_parts())[1].get_payload()[1]
    assert rcpt["Action"] == "delayed" and "Will-Retry-Until" in rcpt


def test_never_to_null_sender() -> None:
    with pytest.raises(AssertionError):
        build_dsn(reporting_mta="h", to="", original=ORIG, reports=[], queue_id="Q", arrival=0)


@pytest.mark.parametrize(
    ("notify", "action", "expected"),
    [
        ("", "failed", True),
        ("", "delayed", True),
        ("", "delivered", False),
        ("NEVER", "failed", False),
        ("NEVER", "delayed", False),
        ("SUCCESS", "failed", False),
        ("SUCCESS", "relayed", True),
        ("FAILURE", "failed", True),
        ("FAILURE", "delayed", False),
        ("DELAY,FAILURE", "delayed", True),
        ("success,failure", "delivered", True),
    ],
)
def test_notify(notify: str, action: str, expected: bool) -> None:
    assert wanted(notify, action) is expected


def test_status_of() -> None:
    assert status_of("550 5.1.1 nope", True) == "5.1.1"
    assert status_of("550 nope", True) == "5.0.0"
    assert status_of("421 closing", False) == "4.0.0"
