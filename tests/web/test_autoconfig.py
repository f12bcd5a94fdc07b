"""Client autoconfiguration: Thunderbird XML, Outlook Autodiscover POX, Apple profile."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import httpx

from tests.web.conftest import base_url, login

AD_REQ = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{addr}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def test_thunderbird_autoconfig(web_mh):
    c = httpx.Client(base_url=base_url(web_mh))
    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
        r = c.get(path, params={"emailaddress": "alice@example.org"})
        assert r.status_code == 200 and "xml" in r.headers["content-type"]
        root = ET.fromstring(r.content)
        assert root.tag == "clientConfig" and root.get("version") == "1.1"
        prov = root.find("emailProvider")
        assert prov.get("id") == "example.org" and prov.findtext("domain") == "example.org"
        outgoing = [
            (s.findtext("hostname"), int(s.findtext("port")), s.findtext("socketType"))
            for s in prov.findall("outgoingServer")
        ]
        assert ("mail.example.org", web_mh.ports["submissions"], "SSL") in outgoing
        assert ("mail.example.org", web_mh.ports["submission"], "STARTTLS") in outgoing
        for s in prov.findall("incomingServer") + prov.findall("outgoingServer"):
            assert s.findtext("username") == "%EMAILADDRESS%"
            assert s.findtext("authentication") == "password-cleartext"
            assert s.findtext("socketType") in ("SSL", "STARTTLS")
        kinds = {s.get("type") for s in prov.findall("incomingServer")}
        for svc, kind in (("imaps", "imap"), ("pop3s", "pop3")):
            assert (svc in web_mh.ports) == (kind in kinds)
    # the autoconfig.<domain> host without a parameter
    r = c.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.org"})
    assert r.status_code == 200 and b"<domain>example.org</domain>" in r.content
    assert c.get("/mail/config-v1.1.xml", params={"emailaddress": "x@not-hosted.test"}).status_code == 404


def test_outlook_autodiscover(web_mh):
    c = httpx.Client(base_url=base_url(web_mh))
    r = c.post(
        "/autodiscover/autodiscover.xml",
        content=AD_REQ.format(addr="bob@example.org"),
        headers={"content-type": "text/xml"},
    )
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    acct = root.find(f"{NS}Response/{NS}Account")
    assert acct.findtext(f"{NS}AccountType") == "email" and acct.findtext(f"{NS}Action") == "settings"
    protos = {p.findtext(f"{NS}Type"): p for p in acct.findall(f"{NS}Protocol")}
    smtp = protos["SMTP"]
    assert smtp.findtext(f"{NS}Server") == "mail.example.org"
    assert (
        int(smtp.findtext(f"{NS}Port")) == web_mh.ports["submissions"] and smtp.findtext(f"{NS}SSL") == "on"
    )
    assert smtp.findtext(f"{NS}LoginName") == "bob@example.org"
    assert (
        c.post("/Autodiscover/Autodiscover.xml", content=AD_REQ.format(addr="bob@example.org")).status_code
        == 200
    )
    assert (
        c.post("/autodiscover/autodiscover.xml", content=AD_REQ.format(addr="x@other.test")).status_code
        == 404
    )
    assert c.post("/autodiscover/autodiscover.xml", content="<not xml").status_code == 400
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + "]><Autodiscover><EMailAddress>&i;</EMailAddress></Autodiscover>"
    )
    assert c.post("/autodiscover/autodiscover.xml", content=bomb).status_code in (400, 404, 413)


def test_apple_mobileconfig_for_logged_in_user(web_mh):
    assert httpx.get(base_url(web_mh) + "/settings/mailhouse.mobileconfig").status_code in (303, 401)
    c = login(web_mh, "bob@example.org")
    r = c.get("/settings/mailhouse.mobileconfig")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-apple-aspen-config"
    assert r.headers["content-disposition"].startswith("attachment;")
    profile = plistlib.loads(r.content)
    assert profile["PayloadType"] == "Configuration"
    (acct,) = profile["PayloadContent"]
    assert acct["PayloadType"] == "com.apple.mail.managed"
    assert (
        acct["EmailAddress"] == "bob@example.org" and acct["IncomingMailServerUsername"] == "bob@example.org"
    )
    assert acct["OutgoingMailServerHostName"] == "mail.example.org"
    assert acct["OutgoingMailServerPortNumber"] == web_mh.ports["submissions"]
    assert not any("Password" in k and k != "OutgoingPasswordSameAsIncomingPassword" for k in acct)
    assert b"correct-horse" not in r.content
