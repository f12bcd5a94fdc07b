"""The pieces of report sending, on tables: report-URI parsing (RFC 7489 §6.2), the §7.1
authorisation rule, the aggregate XML (appendix C, read back by the intake's parser), the
TLS-RPT record (RFC 8460 §3) and result types (§4.3), the row cap and the `[reports]` keys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mailhouse import config
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import DmarcRecord, DmarcResult, Policy
from mailhouse.mailauth.inbound import Evaluation
from mailhouse.mailauth.spf import SpfResult
from mailhouse.reports import dmarc_in, dmarc_out, outbound, tlsrpt_out
from mailhouse.reports.outbound import Document, ReportUri, parse_uris
from mailhouse.smtpclient.tlsrpt import AppliedPolicy, PolicyType, ResultType, TlsOutcome, classify


def test_parse_uris() -> None:
    uris, other = parse_uris(
        [
            "mailto:a@x.test!10m",
            "mailto:dmarc%2Breports@x.test",
            "https://r.x.test/v1",
            "mailto:nobody",
            "mailto:d@x.test!5",
        ]
    )
    assert uris == [
        ReportUri("a@x.test", 10 * 1024 * 1024),  # RFC 7489 §6.2: k/m/g/t are powers of two
        ReportUri("dmarc+reports@x.test"),  # RFC 6068 percent-encoding
        ReportUri("d@x.test", 5),
    ]
    assert other == ["https://r.x.test/v1", "mailto:nobody"]
    assert parse_uris(["mailto:r@x.test!1k", "mailto:s@x.test!2G"])[0] == [
        ReportUri("r@x.test", 1024),
        ReportUri("s@x.test", 2 << 30),
    ]


async def test_external_destination_needs_the_report_record() -> None:
    answers = {"bank.test._report._dmarc.collector.test": ["v=DMARC1"]}

    async def lookup(name: str) -> list[str] | None:
        return answers.get(name)

    # the same organisation: no record needed (RFC 7489 §7.1)
    assert await outbound.authorised("news.bank.test", ReportUri("dmarc@bank.test"), lookup)
    assert await outbound.authorised("bank.test", ReportUri("agg@collector.test"), lookup)
    assert not await outbound.authorised("shop.test", ReportUri("agg@collector.test"), lookup)
    answers["shop.test._report._dmarc.collector.test"] = ["v=spf1 -all"]  # not a DMARC1 record
    assert not await outbound.authorised("shop.test", ReportUri("agg@collector.test"), lookup)


def _ev(result: DmarcResult, override: str = "") -> Evaluation:
    spf = SpfResult("softfail", "", "fwd.test", "mailfrom")
    dkim = (
        DkimResult("pass", "shop.test", "s1", "rsa-sha256"),
        DkimResult("fail", "other.test", "x", "ed25519-sha256"),
    )
    return Evaluation(result, spf, dkim, override)


def test_aggregate_xml_reads_back() -> None:
    passed = DmarcResult("pass", "shop.test", Policy.REJECT, aligned_dkim=("shop.test",))
    sampled = DmarcResult("fail", "shop.test", Policy.REJECT, Policy.QUARANTINE, sampled_out=True)
    waived = DmarcResult("fail", "shop.test", Policy.REJECT, Policy.NONE)
    rows = [
        (dmarc_out.row_key(_ev(passed), "192.0.2.1", "bounce@fwd.test"), 7),
        (dmarc_out.row_key(_ev(sampled), "192.0.2.2", ""), 2),
        (dmarc_out.row_key(_ev(waived, "trusted_forwarder"), "2001:db8::1", "a@fwd.test"), 1),
    ]
    rec = DmarcRecord(Policy.REJECT, Policy.QUARANTINE, pct=50, adkim_strict=True)
    xml = dmarc_out.xml_report("Org & Co", "r@mx.test", "id<1>", 100, 199, "shop.test", rec, rows)
    report = dmarc_in.parse(xml)
    assert (report.org_name, report.report_id, report.begin, report.end) == ("Org & Co", "id<1>", 100, 199)
    assert report.policy == "reject"
    assert b"<adkim>s</adkim><aspf>r</aspf>" in xml.replace(b"\n", b"") and b"<pct>50</pct>" in xml
    got = [(r.source_ip, r.count, r.disposition, r.dkim, r.spf, r.reasons) for r in report.rows]
    assert got == [
        ("192.0.2.1", 7, "none", "pass", "fail", ()),
        ("192.0.2.2", 2, "quarantine", "fail", "fail", ("sampled_out",)),
        ("2001:db8::1", 1, "none", "fail", "fail", ("trusted_forwarder",)),
    ]
    assert report.rows[0].dkim_domains == ("other.test=fail", "shop.test=pass")
    assert report.rows[0].spf_domains == ("fwd.test=softfail",)


async def test_rows_are_capped_largest_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dmarc_out, "MAX_ROWS", 3)
    cfg = config.from_dict({"hostname": "mx.test", "data_dir": str(tmp_path)})

    async def lookup(name: str) -> list[str] | None:
        return ["v=DMARC1; p=none; rua=mailto:d@shop.test"] if name == "_dmarc.shop.test" else None

    ev = _ev(DmarcResult("pass", "shop.test", Policy.NONE, aligned_spf=True))
    rows = [(dmarc_out.row_key(ev, f"192.0.2.{i}", ""), i) for i in range(1, 6)]
    (doc,) = await dmarc_out.make_build(cfg, lookup)("2026-12-07", {"shop.test": rows})
    assert isinstance(doc, Document)
    assert doc.uris == (ReportUri("d@shop.test"),)
    assert doc.filename == "mx.test!shop.test!1796601600!1796687999.xml.gz"
    report = dmarc_in.parse(gzip.decompress(doc.gz))
    assert [(r.source_ip, r.count) for r in report.rows] == [
        ("192.0.2.5", 5),
        ("192.0.2.4", 4),
        ("192.0.2.3", 3),
    ]


def test_tlsrpt_record() -> None:
    assert tlsrpt_out.parse_record(["v=TLSRPTv1; rua=mailto:a@x.test,https://r.x.test"]) == [
        "mailto:a@x.test",
        "https://r.x.test",
    ]
    assert tlsrpt_out.parse_record(["v=spf1 -all", "v=TLSRPTv1;rua=mailto:a@x.test"]) == ["mailto:a@x.test"]
    assert (
        tlsrpt_out.parse_record(["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"])
        is None
    )
    assert tlsrpt_out.parse_record(["v=TLSRPTv1"]) is None
    assert tlsrpt_out.parse_record(["v=TLSRPTv1; rua=mailto:a@x.test; x=" + "y" * 5000]) is None
    assert tlsrpt_out.parse_record([]) is None


def test_tlsrpt_json_groups_by_policy() -> None:
    sts = AppliedPolicy.sts("enforce", ("*.x.test",), 604800)
    ok = TlsOutcome("x.test", sts.type, None, sts.string, sts.mx_host, receiving_mx_hostname="mx1.x.test")
    bad = TlsOutcome(
        "x.test", sts.type, ResultType.CERTIFICATE_EXPIRED, sts.string, sts.mx_host, "mx2.x.test", "192.0.2.9"
    )
    plain = TlsOutcome(
        "x.test", PolicyType.NO_POLICY, ResultType.STARTTLS_NOT_SUPPORTED, receiving_mx_hostname="mx3"
    )
    doc = json.loads(
        tlsrpt_out.json_report(
            "Org", "r@mx.test", "id1", 0, 86399, "x.test", [(ok.key(), 9), (bad.key(), 2), (plain.key(), 1)]
        )
    )
    assert doc["date-range"] == {
        "start-datetime": "1970-01-01T00:00:00Z",
        "end-datetime": "1970-01-01T23:59:59Z",
    }
    p_sts, p_none = doc["policies"]
    assert p_sts["policy"] == {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: *.x.test", "max_age: 604800"],
        "policy-domain": "x.test",
        "mx-host": ["*.x.test"],
    }
    assert p_sts["summary"] == {"total-successful-session-count": 9, "total-failure-session-count": 2}
    assert p_sts["failure-details"] == [
        {
            "result-type": "certificate-expired",
            "failed-session-count": 2,
            "receiving-mx-hostname": "mx2.x.test",
            "receiving-ip": "192.0.2.9",
        }
    ]
    assert p_none["policy"] == {"policy-type": "no-policy-found", "policy-domain": "x.test"}
    assert p_none["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}


@pytest.mark.parametrize(
    ("reply", "verify", "want"),
    [
        ("451 4.7.5 certificate verification failed for mx: Hostname mismatch, certificate is not valid", True,
         ResultType.CERTIFICATE_HOST_MISMATCH),
        ("451 4.7.5 certificate verification failed for mx: certificate has expired", True,
         ResultType.CERTIFICATE_EXPIRED),
        ("451 4.7.5 certificate verification failed for mx: self-signed certificate", True,
         ResultType.CERTIFICATE_NOT_TRUSTED),
        ("451 4.7.4 TLS required but not offered by the remote server", False, ResultType.STARTTLS_NOT_SUPPORTED),
        ("451 4.7.5 TLS handshake with mx failed: SSLError", False, ResultType.VALIDATION_FAILURE),
        ("451 4.4.2 connection lost: ConnectionResetError", False, None),
    ],
)  # fmt: skip
def test_result_types(reply: str, verify: bool, want: ResultType | None) -> None:
    assert classify(reply, verify) is want


def test_reports_config(tmp_path: Path) -> None:
    base = {"hostname": "mx.test", "data_dir": str(tmp_path)}
    cfg = config.from_dict(base)
    assert (cfg.reports_send, cfg.reports_from, cfg.reports_org_name) == (True, "", "")
    cfg = config.from_dict({**base, "reports": {"send": False, "from": "dmarc@mx.test", "org_name": "Org"}})
    assert (cfg.reports_send, cfg.reports_from, cfg.reports_org_name) == (False, "dmarc@mx.test", "Org")
    with pytest.raises(config.ConfigError, match="reports.from"):
        config.from_dict({**base, "reports": {"from": "not an address"}})
    with pytest.raises(config.ConfigError, match="reports.send"):
        config.from_dict({**base, "reports": {"send": "yes"}})
