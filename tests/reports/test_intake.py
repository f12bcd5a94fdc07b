"""Reports delivered over real SMTP to a hosted domain's report address (reports/intake.py via
delivery/local.py): summarised in the store, shown by `mailhouse report` and the admin page,
filed into the Reports folder; duplicates counted once; bad reports refused cleanly and kept."""

from __future__ import annotations

import gzip
import html
import imaplib
import smtplib
import ssl
from collections.abc import Callable

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.reports import samples
from tests.web.conftest import login

ADMIN = "root@example.org"
PM = "postmaster@example.org"


@pytest.fixture
def mh(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    m = mailhouse_factory(services=("smtp", "imap", "http"))
    m.add_domain("example.org")
    m.add_user(PM)
    m.add_user("alice@example.org")
    m.add_user(ADMIN, PASSWORD, "--admin")
    return m.start()


def send(mh: MailhouseProcess, raw: bytes, rcpt: str = PM) -> None:
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as s:
        s.sendmail("noreply-dmarc-support@google.com", [rcpt], raw)


def folder_subjects(mh: MailhouseProcess, user: str, folder: str) -> list[str]:
    with imaplib.IMAP4(*mh.addr("imap")) as c:
        c.starttls(ssl._create_unverified_context())  # the test server's self-signed certificate
        c.login(user, PASSWORD)
        typ, _ = c.select(folder, readonly=True)
        if typ != "OK":
            return []
        _, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [
            bytes(d[1]).decode().strip().removeprefix("Subject:").strip()
            for d in data
            if isinstance(d, tuple)
        ]


def test_dmarc_and_tlsrpt_reports_summarised_and_filed(mh: MailhouseProcess) -> None:
    google = samples.report_message(
        samples.gz(samples.google_dmarc()),
        subject="Report Domain: example.org Submitter: google.com Report-ID: <g1>",
    )
    ms = samples.report_message(
        samples.gz(samples.microsoft_dmarc()),
        filename="enterprise.protection.outlook.com!example.org!1!2.xml.gz",
        subject="Report Domain: example.org Submitter: enterprise.protection.outlook.com Report-ID: <m1>",
    )
    tls = samples.report_message(
        samples.gz(samples.tlsrpt()),
        ctype="application/tlsrpt+gzip",
        filename="google.com!example.org!1!2.json.gz",
        subject="Report Domain: example.org Submitter: google.com Report-ID: <t1>",
        tls=True,
    )
    send(mh, google)
    send(mh, google)  # a duplicate (resent): counted once, still kept
    send(mh, ms)
    send(mh, tls)
    send(mh, b"From: a@remote.test\r\nTo: postmaster@example.org\r\nSubject: hello postmaster\r\n\r\nhi\r\n")

    out = mh.cli("report", "dmarc", "example.org").stdout
    assert "3 reports" not in out and "2 reports, 62 messages, 52 passed, 10 failed" in out, out
    assert "google.com" in out and "Outlook.com" in out
    assert "203.0.113.66" in out and "dkim=fail spf=fail disposition=quarantine" in out
    assert "(forwarded)" in out  # the reporter's reason for the forwarded row
    out = mh.cli("report", "tlsrpt", "example.org").stdout
    assert "1 reports, 120 successful sessions, 5 failed" in out, out
    assert "certificate-expired=3" in out and "starttls-not-supported=2" in out and "Google Inc." in out

    reports = folder_subjects(mh, PM, "Reports")
    assert len(reports) == 4 and sum("<g1>" in s for s in reports) == 2  # nothing lost
    assert folder_subjects(mh, PM, "INBOX") == ["hello postmaster"]

    c = login(mh, ADMIN)
    page = html.unescape(c.get("/admin/domain/example.org").text)
    assert "Last 30 days: 2 reports, 62 messages, 52 passed, 10 failed." in page
    assert "203.0.113.66" in page and "certificate-expired=3" in page
    assert "Last 30 days: 1 reports, 120 successful sessions, 5 failed." in page


def test_bad_reports_refused_cleanly_and_kept(mh: MailhouseProcess) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros: above MAX_REPORT_BYTES
    cases = {
        "malformed": samples.gz(b"<feedback><report_metadata><org_name>x</org_"),
        "laughs": samples.gz(samples.BILLION_LAUGHS),
        "xxe": samples.gz(samples.XXE),
        "gzipbomb": bomb,
        "zipmembers": samples.zipped(b"<x/>", extra=10),
    }
    for name, payload in cases.items():
        send(mh, samples.report_message(payload, subject=f"Report Domain: example.org Report-ID: <{name}>"))
    # a report about a domain not hosted here is kept but not counted
    send(
        mh,
        samples.report_message(
            samples.gz(samples.google_dmarc(domain="victim.example")), subject="Report Domain: victim.example"
        ),
    )
    kept = folder_subjects(mh, PM, "Reports")
    assert len(kept) == len(cases) + 1, kept
    assert folder_subjects(mh, PM, "INBOX") == []
    out = mh.cli("report", "dmarc", "example.org").stdout
    assert "0 reports, 0 messages" in out, out
    log = mh.logtext()
    assert "unsafe XML refused" in log and "malformed XML" in log and "decompresses to more than" in log
    assert "members" in log and "not on example.org" in log
    # the server is still answering
    send(mh, samples.report_message(samples.gz(samples.google_dmarc())))
    assert "1 reports" in mh.cli("report", "dmarc", "example.org").stdout


def test_report_to_other_address_stays_in_inbox(mh: MailhouseProcess) -> None:
    send(mh, samples.report_message(samples.gz(samples.google_dmarc())), rcpt="alice@example.org")
    assert len(folder_subjects(mh, "alice@example.org", "INBOX")) == 1
    assert "0 reports" in mh.cli("report", "dmarc", "example.org").stdout


def test_report_command_errors(mh: MailhouseProcess) -> None:
    r = mh.cli("report", "dmarc", "nothosted.example", check=False)
    assert r.returncode == 1 and "not hosted" in r.stderr


def _big_dmarc(records: int) -> bytes:
    xml = samples.google_dmarc(report_id="big-1")
    row = xml[xml.index(b"<record>", xml.index(b"</record>")) : xml.rindex(b"</record>") + len(b"</record>")]
    return xml.replace(b"</feedback>", row * records + b"</feedback>")


def test_big_report_parsed_and_huge_report_kept(mh: MailhouseProcess) -> None:
    # a big but legal report, sent uncompressed (spooled to disk by the server): parsed
    big = _big_dmarc(20_000)
    assert len(big) > 4 << 20
    send(mh, samples.report_message(big, ctype="text/xml", filename="google.com!example.org!1!2.xml"))
    out = mh.cli("report", "dmarc", "example.org").stdout
    assert f"1 reports, {42 + 7 * 20_001} messages" in out, out
    # a report message above archive.MAX_MESSAGE_BYTES: not parsed, kept in Reports, error logged
    huge = samples.report_message(
        b"\0" * (17 << 20), ctype="application/gzip", subject="Report Domain: example.org Report-ID: <huge>"
    )
    send(mh, huge)
    assert [s for s in folder_subjects(mh, PM, "Reports") if "<huge>" in s]
    assert "report message larger than" in mh.logtext()
    assert "1 reports" in mh.cli("report", "dmarc", "example.org").stdout
