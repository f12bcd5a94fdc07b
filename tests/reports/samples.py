"""Hand-written reports shaped like real ones (RFC 7489 Appendix C, RFC 8460 §4.4), and the
messages that carry them (RFC 7489 §7.2.1.1, RFC 8460 §5.3)."""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile
from email.message import EmailMessage

DAY = 86400


def google_dmarc(
    domain: str = "example.org", report_id: str = "13191735443960738215", now: float | None = None
) -> bytes:
    """Google-shaped (no namespace, one pass row, one failing forged row)."""
    end = int(now if now is not None else time.time())
    begin = end - DAY
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>{report_id}</report_id>
    <date_range><begin>{begin}</begin><end>{end}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.25</source_ip><count>42</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results>
      <dkim><domain>{domain}</domain><result>pass</result><selector>mailhouse</selector></dkim>
      <spf><domain>{domain}</domain><result>pass</result></spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.66</source_ip><count>7</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><spf><domain>spam.example.net</domain><result>softfail</result></spf></auth_results>
  </record>
</feedback>
""".encode()


def microsoft_dmarc(
    domain: str = "example.org", report_id: str = "8ee2f5b1a0c64f0da5b4ce1a4d5e2f77", now: float | None = None
) -> bytes:
    """Microsoft-shaped (DMARCbis namespace, a forwarded row with a reason)."""
    end = int(now if now is not None else time.time())
    begin = end - DAY
    return f"""<?xml version="1.0"?>
<feedback xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>
  <report_metadata>
    <org_name>Outlook.com</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>{report_id}</report_id>
    <date_range><begin>{begin}</begin><end>{end}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct><fo>0</fo>
  </policy_published>
  <record>
    <row>
      <source_ip>198.51.100.9</source_ip><count>3</count>
      <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf>
        <reason><type>forwarded</type><comment /></reason></policy_evaluated>
    </row>
    <identifiers><envelope_to>outlook.com</envelope_to><envelope_from>list.example.com</envelope_from><header_from>{domain}</header_from></identifiers>
    <auth_results><dkim><domain>{domain}</domain><selector>mailhouse</selector><result>fail</result></dkim>
      <spf><domain>list.example.com</domain><scope>mfrom</scope><result>pass</result></spf></auth_results>
  </record>
  <record>
    <row><source_ip>192.0.2.25</source_ip><count>10</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><dkim><domain>{domain}</domain><selector>mailhouse</selector><result>pass</result></dkim>
      <spf><domain>{domain}</domain><scope>mfrom</scope><result>pass</result></spf></auth_results>
  </record>
</feedback>
""".encode()


def tlsrpt(
    domain: str = "example.org", report_id: str = "2026-12-06T00:00:00Z_example.org", now: float | None = None
) -> bytes:
    """Google-shaped TLS-RPT (RFC 8460 §4.4): an STS policy with failures of two types."""
    end = int(now if now is not None else time.time())
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return json.dumps(
        {
            "organization-name": "Google Inc.",
            "date-range": {
                "start-datetime": time.strftime(fmt, time.gmtime(end - DAY)),
                "end-datetime": time.strftime(fmt, time.gmtime(end)),
            },
            "contact-info": "smtp-tls-reporting@google.com",
            "report-id": report_id,
            "policies": [
                {
                    "policy": {
                        "policy-type": "sts",
                        "policy-string": [
                            "version: STSv1",
                            "mode: testing",
                            f"mx: mail.{domain}",
                            "max_age: 86400",
                        ],
                        "policy-domain": domain,
                        "mx-host": [f"mail.{domain}"],
                    },
                    "summary": {"total-successful-session-count": 120, "total-failure-session-count": 5},
                    "failure-details": [
                        {
                            "result-type": "certificate-expired",
                            "sending-mta-ip": "209.85.220.41",
                            "receiving-mx-hostname": f"mail.{domain}",
                            "failed-session-count": 3,
                        },
                        {
                            "result-type": "starttls-not-supported",
                            "sending-mta-ip": "209.85.220.42",
                            "receiving-mx-hostname": f"mail.{domain}",
                            "failed-session-count": 2,
                        },
                    ],
                }
            ],
        }
    ).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def zipped(data: bytes, name: str = "report.xml", extra: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
        for i in range(extra):
            z.writestr(f"more{i}.xml", b"<x/>")
    return buf.getvalue()


def report_message(
    payload: bytes,
    *,
    to: str = "postmaster@example.org",
    ctype: str = "application/gzip",
    filename: str = "google.com!example.org!1!2.xml.gz",
    subject: str = "Report Domain: example.org Submitter: google.com Report-ID: <1>",
    tls: bool = False,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "noreply-dmarc-support@google.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.time_ns()}@google.com>"
    if tls:
        msg["TLS-Report-Domain"] = "example.org"  # RFC 8460 §5.3
        msg["TLS-Report-Submitter"] = "google.com"
    msg.set_content("This is an aggregate report.")
    maintype, subtype = ctype.split("/", 1)
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<feedback><report_metadata><org_name>&lol4;</org_name></report_metadata></feedback>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<feedback><report_metadata><org_name>&xxe;</org_name><report_id>1</report_id>
<date_range><begin>1</begin><end>2</end></date_range></report_metadata>
<policy_published><domain>example.org</domain></policy_published></feedback>
"""
