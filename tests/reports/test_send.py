"""Reports we send (reports/outbound.py, dmarc_out.py, tlsrpt_out.py), with real parts only:
dnsmasq serving the DMARC, `_report._dmarc` and `_smtp._tls` records; messages into port 25
that pass and fail DMARC; forwarded mail leaving over MX to one peer with STARTTLS and one
without; `mailhouse report send` → the reports arrive at Postfix's smtp-sink, where they are
unpacked with the intake's own parsers and checked field by field (DMARC XML) and against the
RFC 8460 §4.4 format as a JSON schema (TLS-RPT). Bad cases: rua to another domain without the
RFC 7489 §7.1 authorisation record, a rua size limit the report exceeds, a record gone by send
time, our own hosted domain; an https rua gets the report POSTed to a loopback HTTPS receiver
with a test CA (RFC 8460 §5.4), one whose certificate does not name it gets nothing; a second
run sends nothing twice."""

from __future__ import annotations

import calendar
import gzip
import json
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dkim as dkimpy
import jsonschema
import pytest

from mailhouse.reports import archive, dmarc_in
from mailhouse.store.api import ReportKind
from tests.mailhouse_proc import MailhouseProcess
from tests.smtpclient.fake_server import FakeSMTP
from tests.smtpclient.testca import TestCA

MX_TLS, MX_PLAIN = "127.0.0.32", "127.0.0.31"
HTTPS_RUA = "127.0.0.35"  # reports.plain.test and evil.plain.test: the HTTPS report receiver

RECORDS: dict[str, list[str]] = {
    # passes: SPF for the test client 127.0.0.1, aligned
    "pass.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.pass.test": ["v=DMARC1; p=reject; rua=mailto:dmarc@pass.test"],
    # fails, p=reject; reports to another organisation that authorised them (RFC 7489 §7.1)
    "bank.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.bank.test": ["v=DMARC1; p=reject; rua=mailto:agg@collector.test!10m"],
    "bank.test._report._dmarc.collector.test": ["v=DMARC1"],
    # fails, p=none; reports to another organisation that never agreed
    "nover.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.nover.test": ["v=DMARC1; p=none; rua=mailto:agg@collector.test"],
    # a rua limit of 100 octets: no aggregate report is that small
    "tiny.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.tiny.test": ["v=DMARC1; p=none; rua=mailto:dmarc@tiny.test!100"],
    # a record withdrawn before the report is due
    "gone.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.gone.test": ["v=DMARC1; p=none; rua=mailto:dmarc@gone.test"],
    # our own domain
    "_dmarc.example.org": ["v=DMARC1; p=none; rua=mailto:postmaster@example.org"],
    # TLS-RPT for the two outbound destinations
    "_smtp._tls.tls.test": ["v=TLSRPTv1; rua=mailto:tlsrpt@collector.test"],
    "_smtp._tls.plain.test": ["v=TLSRPTv1;rua=https://reports.plain.test/v1,mailto:tlsrpt@collector.test"],
}

# RFC 8460 §4.4 (report format), written down as a JSON schema
TLSRPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["organization-name", "date-range", "contact-info", "report-id", "policies"],
    "properties": {
        "organization-name": {"type": "string", "minLength": 1},
        "date-range": {
            "type": "object",
            "required": ["start-datetime", "end-datetime"],
            "properties": {
                "start-datetime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
                "end-datetime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
            },
        },
        "contact-info": {"type": "string"},
        "report-id": {"type": "string", "minLength": 1},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["policy", "summary"],
                "properties": {
                    "policy": {
                        "type": "object",
                        "required": ["policy-type", "policy-domain"],
                        "properties": {
                            "policy-type": {"enum": ["tlsa", "sts", "no-policy-found"]},
                            "policy-string": {"type": "array", "items": {"type": "string"}},
                            "policy-domain": {"type": "string"},
                            "mx-host": {"type": "array", "items": {"type": "string"}},
                        },
                        "additionalProperties": False,
                    },
                    "summary": {
                        "type": "object",
                        "required": ["total-successful-session-count", "total-failure-session-count"],
                        "properties": {
                            "total-successful-session-count": {"type": "integer", "minimum": 0},
                            "total-failure-session-count": {"type": "integer", "minimum": 0},
                        },
                        "additionalProperties": False,
                    },
                    "failure-details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["result-type", "failed-session-count"],
                            "properties": {
                                "result-type": {
                                    "enum": [
                                        "starttls-not-supported",
                                        "certificate-host-mismatch",
                                        "certificate-expired",
                                        "certificate-not-trusted",
                                        "validation-failure",
                                        "tlsa-invalid",
                                        "dnssec-invalid",
                                        "dane-required",
                                        "sts-policy-fetch-error",
                                        "sts-policy-invalid",
                                        "sts-webpki-invalid",
                                    ]
                                },
                                "sending-mta-ip": {"type": "string"},
                                "receiving-mx-hostname": {"type": "string"},
                                "receiving-mx-helo": {"type": "string"},
                                "receiving-ip": {"type": "string"},
                                "failed-session-count": {"type": "integer", "minimum": 1},
                                "additional-information": {"type": "string"},
                                "failure-reason-code": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


class ReportReceiver:
    """An HTTPS server on loopback (certificate for reports.plain.test only) that keeps every POST."""

    def __init__(self, host: str, ctx: ssl.SSLContext) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lab:
    def __init__(
        self,
        mh: MailhouseProcess,
        dns: Any,
        sink: Any,
        tls_mx: FakeSMTP,
        plain_mx: FakeSMTP,
        https: ReportReceiver,
        records: dict[str, list[str]],
    ) -> None:
        self.mh, self.dns, self.sink, self.tls_mx, self.plain_mx = mh, dns, sink, tls_mx, plain_mx
        self.https, self.records = https, records


@pytest.fixture
def lab(
    tmp_path: Path,
    dns_server_factory: Any,
    smtp_sink_factory: Any,
    mailhouse_factory: Callable[..., MailhouseProcess],
) -> Iterator[Lab]:
    ca = TestCA(tmp_path / "ca")
    tls_mx = FakeSMTP(
        MX_TLS, extensions=("PIPELINING", "STARTTLS", "8BITMIME"), server_ssl=ca.server_context("mx.tls.test")
    ).start_thread()
    plain_mx = FakeSMTP(MX_PLAIN, tls_mx.port, extensions=("PIPELINING", "8BITMIME")).start_thread()
    https = ReportReceiver(HTTPS_RUA, ca.server_context("reports.plain.test"))
    rua = f"https://reports.plain.test:{https.port}/v1,https://evil.plain.test:{https.port}/v1"
    records = {**RECORDS, "_smtp._tls.plain.test": [f"v=TLSRPTv1;rua={rua},mailto:tlsrpt@collector.test"]}
    dns = dns_server_factory(
        txt=records,
        mx={"tls.test": [(10, "mx.tls.test")], "plain.test": [(10, "mx.plain.test")]},
        a={
            "mx.tls.test": MX_TLS,
            "mx.plain.test": MX_PLAIN,
            "reports.plain.test": HTTPS_RUA,
            "evil.plain.test": HTTPS_RUA,
        },
    )
    sink = smtp_sink_factory(host="127.0.0.1", dump_dir=tmp_path / "sink")
    route = f'{{ host = "{sink.host}", port = {sink.port}, tls = "none" }}'
    extra = (
        f'[dns]\nnameservers = ["{dns.nameserver}"]\n'
        f'[tls]\nca_file = "{ca.ca_file}"\n'  # the HTTPS report receiver's CA
        f"[queue]\noutbound_port = {tls_mx.port}\n"
        "[routes]\n"
        + "".join(f'"{d}" = {route}\n' for d in ("collector.test", "pass.test", "tiny.test"))
        # DMARC alone decides here: spam scoring would junk the SPF-failing test messages
        + '[spam]\nenabled = false\n[reports]\nfrom = "dmarc-reports@example.org"\norg_name = "Example Mail"\n'
    )
    mh = mailhouse_factory(services=("smtp",), extra=extra, verify_inbound=True)
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.admin(lambda a: a.add_alias("tls@example.org", "x@tls.test"))
    mh.admin(lambda a: a.add_alias("plain@example.org", "y@plain.test"))
    mh.start()
    try:
        yield Lab(mh, dns, sink, tls_mx, plain_mx, https, records)
    finally:
        https.stop()
        tls_mx.stop_thread()
        plain_mx.stop_thread()


def _send(mh: MailhouseProcess, frm: str, subject: str, rcpt: str = "alice@example.org") -> int:
    msg = f"From: {frm}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nhi\r\n"
    try:
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            c.sendmail(frm, [rcpt], msg.encode())
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    return 250


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _reports(sink: Any) -> dict[tuple[str, str], tuple[Any, bytes]]:
    """(kind, policy domain) → (the message, the unpacked report document) for each dump."""
    out = {}
    for path in sink.messages():
        raw = path.read_bytes()
        raw = raw[raw.find(b"DKIM-Signature: ") :]  # after smtp-sink's own lines
        msg = message_from_bytes(raw)
        att = archive.find_report(raw)
        assert att is not None, raw[:2000]
        kind = "tlsrpt" if att.kind is ReportKind.TLSRPT else "dmarc"
        domain = msg["Subject"].split("Report Domain: ", 1)[1].split()[0]
        out[(kind, domain)] = (msg, archive.unpack(att))
    return out


def test_daily_reports_are_built_authorised_and_sent_once(lab: Lab) -> None:
    mh = lab.mh
    for i in range(3):
        assert _send(mh, "a@pass.test", f"pass{i}") == 250
    for i in range(2):
        assert _send(mh, "alerts@bank.test", f"bank{i}") == 550  # p=reject: refused, still reported
    for dom in ("nover.test", "tiny.test", "gone.test"):
        assert _send(mh, f"x@{dom}", f"{dom}-1") == 250
    assert _send(mh, "alice@example.org", "own") == 250  # SPF none → DMARC fail, p=none
    # two messages leave over MX: one to a server with STARTTLS, one to a server without
    assert _send(mh, "a@pass.test", "out-tls", "tls@example.org") == 250
    assert _send(mh, "a@pass.test", "out-plain", "plain@example.org") == 250
    _wait(lambda: len(lab.tls_mx.transactions) == 1 and len(lab.plain_mx.transactions) == 1, "outbound mail")
    assert lab.tls_mx.tls_sessions == 1
    records = dict(lab.records)
    del records["_dmarc.gone.test"]
    lab.dns.update(txt=records)

    day = time.strftime("%Y-%m-%d", time.gmtime())
    out = mh.cli("report", "send", "--date", day).stdout
    lines = {ln.split(":", 1)[0]: ln for ln in out.splitlines()}
    assert lines["dmarc pass.test"] == "dmarc pass.test: sent to dmarc@pass.test", out
    assert lines["dmarc bank.test"] == "dmarc bank.test: sent to agg@collector.test", out
    assert lines["dmarc nover.test"].startswith("dmarc nover.test: not authorised"), out
    assert "nover.test._report._dmarc" in lines["dmarc nover.test"]
    assert lines["dmarc tiny.test"].startswith(
        "dmarc tiny.test: too big (dmarc@tiny.test over its 100-octet"
    ), out
    assert lines["dmarc gone.test"].startswith("dmarc gone.test: no record"), out
    assert lines["dmarc example.org"] == "dmarc example.org: hosted here", out
    assert lines["tlsrpt tls.test"] == "tlsrpt tls.test: sent to tlsrpt@collector.test", out
    port = lab.https.port
    assert lines["tlsrpt plain.test"].startswith(
        f"tlsrpt plain.test: sent to tlsrpt@collector.test, https://reports.plain.test:{port}/v1"
    ), out
    # RFC 8460 §5.4 over verified TLS: a certificate that does not name evil.plain.test gets nothing
    assert f"POST to https://evil.plain.test:{port}/v1 failed" in lines["tlsrpt plain.test"], out
    ((path, headers, posted),) = lab.https.posts
    assert (path, headers["content-type"], headers["host"]) == (
        "/v1",
        "application/tlsrpt+gzip",
        f"reports.plain.test:{port}",
    )
    posted_doc = json.loads(gzip.decompress(posted))
    jsonschema.validate(posted_doc, TLSRPT_SCHEMA)
    assert posted_doc["policies"][0]["policy"]["policy-domain"] == "plain.test"

    lab.sink.wait_messages(4)
    _wait(lambda: len(_reports(lab.sink)) == 4, "four reports at smtp-sink")
    reports = _reports(lab.sink)
    # signed by the hosted From domain's DKIM keys, verifiable with the records `mailhouse dns` prints
    zone = mh.cli("dns", "example.org").stdout
    keys = {
        ln.split()[0].rstrip(".").encode(): "".join(re.findall(r'"([^"]*)"', ln)).encode()
        for ln in zone.splitlines()
        if "._domainkey." in ln
    }
    for path in lab.sink.messages():
        raw = path.read_bytes()
        raw = raw[raw.find(b"DKIM-Signature:") :]
        assert raw.startswith(b"DKIM-Signature:") and b"d=example.org" in raw[:400]
        assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: keys.get(name.rstrip(b".")))
    assert set(reports) == {
        ("dmarc", "pass.test"),
        ("dmarc", "bank.test"),
        ("tlsrpt", "tls.test"),
        ("tlsrpt", "plain.test"),
    }

    # DMARC (RFC 7489 §7.2.1.1 message, appendix C document)
    msg, xml = reports[("dmarc", "bank.test")]
    assert msg["From"] == "dmarc-reports@example.org"
    assert (
        re.sub(r"\r?\n", "", msg["Subject"])  # RFC 5322 §2.2.3 unfolding
        == f"Report Domain: bank.test Submitter: Example Mail Report-ID: <{day}.bank.test@mail.example.org>"
    )
    begin = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    filenames = [p.get_filename() for p in msg.walk() if p.get_filename()]
    assert filenames == [f"mail.example.org!bank.test!{begin}!{begin + 86399}.xml.gz"]
    report = dmarc_in.parse(xml)
    assert (report.org_name, report.begin, report.end, report.domain) == (
        "Example Mail",
        begin,
        begin + 86399,
        "bank.test",
    )
    assert report.email == "dmarc-reports@example.org"
    assert report.policy == "reject"
    (row,) = report.rows
    assert (row.source_ip, row.count, row.disposition, row.dkim, row.spf, row.header_from) == (
        "127.0.0.1",
        2,
        "reject",
        "fail",
        "fail",
        "bank.test",
    )
    assert b"<envelope_from>bank.test</envelope_from>" in xml
    assert row.spf_domains == ("bank.test=fail",) and row.dkim_domains == ()
    _, xml = reports[("dmarc", "pass.test")]
    rows = dmarc_in.parse(xml).rows
    assert [(r.count, r.disposition, r.spf) for r in rows] == [(5, "none", "pass")]  # 3 + the 2 forwarded

    # TLS-RPT (RFC 8460 §5.3 message, §4.4 document)
    msg, body = reports[("tlsrpt", "plain.test")]
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "plain.test" and msg["TLS-Report-Submitter"] == "Example Mail"
    parts = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert [p.get_filename() for p in parts] == [
        f"mail.example.org!plain.test!{begin}!{begin + 86399}.json.gz"
    ]
    doc = json.loads(body)
    jsonschema.validate(doc, TLSRPT_SCHEMA)
    assert doc["date-range"] == {
        "start-datetime": f"{day}T00:00:00Z",
        "end-datetime": f"{day}T23:59:59Z",
    }
    (p,) = doc["policies"]
    assert p["policy"] == {"policy-type": "no-policy-found", "policy-domain": "plain.test"}
    assert p["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}
    assert p["failure-details"] == [
        {
            "result-type": "starttls-not-supported",
            "failed-session-count": 1,
            "sending-mta-ip": "127.0.0.1",  # RFC 8460 §4.4: the address this node connected from
            "receiving-mx-hostname": "mx.plain.test",
            "receiving-ip": MX_PLAIN,
        }
    ]
    _, body = reports[("tlsrpt", "tls.test")]
    doc = json.loads(body)
    jsonschema.validate(doc, TLSRPT_SCHEMA)
    (p,) = doc["policies"]
    assert p["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 0}
    assert "failure-details" not in p

    # a second run (another node, or the daily timer) sends nothing again
    out = mh.cli("report", "send", "--date", day).stdout
    assert "dmarc pass.test: already sent" in out and "tlsrpt tls.test: already sent" in out
    time.sleep(1.0)  # the queue polls every 0.5 s: anything queued would have gone out
    assert len(lab.sink.messages()) == 4


def test_report_send_refuses_bad_input(mailhouse_factory: Callable[..., MailhouseProcess]) -> None:
    mh = mailhouse_factory(services=("smtp",))
    r = mh.cli("report", "send", "--date", "2026-13-45", check=False)
    assert r.returncode != 0 and "--date 2026-13-45: expected YYYY-MM-DD" in r.stderr
    r = mh.cli("report", "send", "example.org", check=False)
    assert r.returncode != 0 and "takes no domain" in r.stderr
    r = mh.cli("report", "send", "--tlsrpt", "--date", "2026-12-01")
    assert r.stdout.strip() == "no reports due"
