"""reports/archive.py, dmarc_in.py, tlsrpt_in.py: real-shaped reports parse; bombs, entities,
malformed and oversized input are refused with ReportError (never an exception of another kind)."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.reports import archive, dmarc_in, tlsrpt_in
from mailhouse.reports.archive import Attachment, ReportError, find_report, unpack
from mailhouse.store.api import ReportKind
from tests.reports import samples


def _att(payload: bytes, kind: ReportKind = ReportKind.DMARC) -> Attachment:
    return Attachment(kind, "r", "application/octet-stream", payload)


def test_google_report_parses() -> None:
    r = dmarc_in.parse(samples.google_dmarc(now=1_700_000_000))
    assert (r.org_name, r.report_id, r.domain, r.policy) == (
        "google.com",
        "13191735443960738215",
        "example.org",
        "quarantine",
    )
    assert (r.begin, r.end) == (1_700_000_000 - 86400, 1_700_000_000)
    assert [(x.source_ip, x.count, x.passed) for x in r.rows] == [
        ("192.0.2.25", 42, True),
        ("203.0.113.66", 7, False),
    ]
    assert r.rows[1].disposition == "quarantine" and r.rows[1].spf_domains == ("spam.example.net=softfail",)


def test_microsoft_namespaced_report_parses() -> None:
    r = dmarc_in.parse(samples.microsoft_dmarc())
    assert r.org_name == "Outlook.com" and len(r.rows) == 2
    assert r.rows[0].reasons == ("forwarded",) and not r.rows[0].passed


def test_tlsrpt_parses() -> None:
    t = tlsrpt_in.parse(samples.tlsrpt(now=1_700_000_000))
    assert t.org_name == "Google Inc." and t.end == 1_700_000_000
    (p,) = t.policies
    assert (p.policy_type, p.policy_domain, p.success, p.failure) == ("sts", "example.org", 120, 5)
    assert p.failures == (("certificate-expired", 3), ("starttls-not-supported", 2))


@pytest.mark.parametrize("wrap", [samples.gz, samples.zipped, lambda b: b], ids=["gzip", "zip", "plain"])
def test_unpack_formats(wrap) -> None:  # type: ignore[no-untyped-def]
    xml = samples.google_dmarc()
    assert unpack(_att(wrap(xml))) == xml


def test_billion_laughs_refused() -> None:
    with pytest.raises(ReportError, match="unsafe XML"):
        dmarc_in.parse(samples.BILLION_LAUGHS)


def test_xxe_refused() -> None:
    with pytest.raises(ReportError, match="unsafe XML"):
        dmarc_in.parse(samples.XXE)


@pytest.mark.parametrize(
    "xml",
    [
        b"<feedback><report_metadata>",
        b"not xml at all",
        b"<other/>",
        b"<feedback/>",
        b'<?xml version="1.0" encoding="bogus"?><feedback/>',
    ],
    ids=["truncated", "garbage", "wrong-root", "empty", "unknown-encoding"],
)
def test_malformed_xml_refused(xml: bytes) -> None:
    with pytest.raises(ReportError):
        dmarc_in.parse(xml)


def test_gzip_bomb_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_REPORT_BYTES", 1 << 20)
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KiB
    assert len(bomb) < 64 * 1024
    with pytest.raises(ReportError, match="decompresses to more than"):
        unpack(_att(bomb))


def test_zip_bomb_refused_even_when_it_lies_about_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_REPORT_BYTES", 1 << 20)
    honest = samples.zipped(b"\0" * (8 << 20))
    with pytest.raises(ReportError, match="declares"):
        unpack(_att(honest))
    # patch the central directory's declared size down to 100: the bounded read still stops it
    buf = io.BytesIO(honest)
    with zipfile.ZipFile(buf) as z:
        info = z.infolist()[0]
    liar = bytearray(honest)
    cd = liar.rfind(b"PK\x01\x02")
    liar[cd + 24 : cd + 28] = (100).to_bytes(4, "little")  # uncompressed size in the central directory
    with pytest.raises(ReportError):
        unpack(_att(bytes(liar)))
    assert info.file_size == 8 << 20


def test_zip_with_many_members_refused() -> None:
    with pytest.raises(ReportError, match="members"):
        unpack(_att(samples.zipped(b"<x/>", extra=archive.MAX_ZIP_MEMBERS)))


def test_broken_gzip_refused() -> None:
    with pytest.raises(ReportError, match="broken archive"):
        unpack(_att(samples.gz(samples.google_dmarc())[:40]))


@pytest.mark.parametrize(
    "doc",
    [
        b"{",
        b"[]",
        b'{"organization-name": "x"}',
        b'{"organization-name":"x","report-id":"1","date-range":{},"policies":[{}]}',
    ],
)
def test_malformed_tlsrpt_refused(doc: bytes) -> None:
    with pytest.raises(ReportError):
        tlsrpt_in.parse(doc)


def test_deeply_nested_json_refused() -> None:
    with pytest.raises(ReportError):
        tlsrpt_in.parse(b"[" * 100_000 + b"]" * 100_000)


def test_find_report_kinds() -> None:
    m = samples.report_message(samples.gz(samples.google_dmarc()))
    att = find_report(m)
    assert att is not None and att.kind is ReportKind.DMARC
    t = samples.report_message(
        samples.gz(samples.tlsrpt()),
        ctype="application/tlsrpt+gzip",
        filename="google.com!example.org!1!2.json.gz",
        tls=True,
    )
    att = find_report(t)
    assert att is not None and att.kind is ReportKind.TLSRPT
    assert find_report(b"From: a@b\r\nSubject: hello\r\n\r\nJust mail.\r\n") is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_parsers_raise_only_report_error(data: bytes) -> None:
    for fn in (dmarc_in.parse, tlsrpt_in.parse, lambda b: unpack(_att(b))):
        try:
            fn(data)
        except ReportError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000))
def test_fuzz_truncated_report_raises_only_report_error(cut: int) -> None:
    for doc, parse in (
        (samples.google_dmarc(now=1), dmarc_in.parse),
        (samples.tlsrpt(now=1), tlsrpt_in.parse),
    ):
        try:
            parse(doc[:cut])
        except ReportError:
            pass
