"""Client auto-configuration: Thunderbird autoconfig, Outlook Autodiscover (POX), Apple profile.

- Thunderbird: `GET /.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=…` and
  `/mail/config-v1.1.xml` (the `autoconfig.<domain>` host), clientConfig version 1.1
  (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
- Outlook: `POST /autodiscover/autodiscover.xml`, the "POX" request/response schemas
  of [MS-OXDSCLI] (…/outlook/requestschema/2006, responseschema/2006a).
- Apple: `GET /settings/mailhouse.mobileconfig` for the logged-in user — a configuration
  profile (com.apple.mail.managed) with server names, ports and user name, never the
  password (the device asks for it).

Only the listeners actually configured are advertised, implicit TLS first
(RFC 8314 §5.1), on `cfg.hostname`. Unknown domains get 404.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET  # noqa: S405 - parses at most MAX_REQUEST bytes; expat ≥ 2.4 limits entity expansion

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.config import Listener
from mailhouse.web.common import require_user, state

if TYPE_CHECKING:
    from mailhouse.config import Config

MAX_REQUEST = 16 * 1024  # an Autodiscover request is a few hundred bytes
AD_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
AD_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def _port(cfg: Config, svc: Listener) -> int | None:
    ls = cfg.listen.get(svc)
    return ls[0][1] if ls else None


def servers(cfg: Config) -> dict[str, list[tuple[int, str]]]:
    """{"imap": [(port, "SSL"|"STARTTLS")], "pop3": [...], "smtp": [...]} as configured."""
    out: dict[str, list[tuple[int, str]]] = {"imap": [], "pop3": [], "smtp": []}
    for kind, tls_svc, plain_svc in (
        ("imap", Listener.IMAPS, Listener.IMAP),
        ("pop3", Listener.POP3S, Listener.POP3),
        ("smtp", Listener.SUBMISSIONS, Listener.SUBMISSION),
    ):
        p = _port(cfg, tls_svc)
        if p:
            out[kind].append((p, "SSL"))
        p = _port(cfg, plain_svc)
        if p:
            out[kind].append((p, "STARTTLS"))
    return out


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


async def _hosted(request: Request, domain: str) -> bool:
    return bool(domain) and await state(request).svc.store.get_domain(domain) is not None


def _x(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


async def thunderbird(request: Request) -> Response:
    cfg = state(request).svc.cfg
    email = request.query_params.get("emailaddress", "")
    domain = _domain_of(email)
    if not domain:
        host = request.headers.get("host", "").split(":")[0].lower()
        domain = host[len("autoconfig.") :] if host.startswith("autoconfig.") else ""
    if not await _hosted(request, domain):
        raise HTTPException(404, "not a domain hosted here")
    srv = servers(cfg)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{_x(domain)}">',
        f"    <domain>{_x(domain)}</domain>",
        f"    <displayName>{_x(domain)} (Mailhouse)</displayName>",
        f"    <displayShortName>{_x(domain)}</displayShortName>",
    ]
    for kind in ("imap", "pop3"):
        for port, sock in srv[kind]:
            lines += [
                f'    <incomingServer type="{kind}">',
                f"      <hostname>{_x(cfg.hostname)}</hostname>",
                f"      <port>{port}</port>",
                f"      <socketType>{sock}</socketType>",
                "      <authentication>password-cleartext</authentication>",
                "      <username>%EMAILADDRESS%</username>",
                "    </incomingServer>",
            ]
    for port, sock in srv["smtp"]:
        lines += [
            '    <outgoingServer type="smtp">',
            f"      <hostname>{_x(cfg.hostname)}</hostname>",
            f"      <port>{port}</port>",
            f"      <socketType>{sock}</socketType>",
            "      <authentication>password-cleartext</authentication>",
            "      <username>%EMAILADDRESS%</username>",
            "    </outgoingServer>",
        ]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return Response("\n".join(lines), media_type="application/xml")


def _request_email(body: bytes) -> str:
    try:
        root = ET.fromstring(body)  # noqa: S314 - size-capped; no external entities in ElementTree
    except ET.ParseError:
        raise HTTPException(400, "malformed Autodiscover request") from None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "EMailAddress" and el.text:
            return el.text.strip()
    raise HTTPException(400, "no EMailAddress in the request")


async def autodiscover(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST:
            raise HTTPException(413, "request too large")
    email = _request_email(body)
    domain = _domain_of(email)
    if not re.fullmatch(r"[^@\s<>&\"]+@[^@\s<>&\"]+", email) or not await _hosted(request, domain):
        raise HTTPException(404, "not a domain hosted here")
    cfg = state(request).svc.cfg
    srv = servers(cfg)
    protos = []
    for kind, label in (("imap", "IMAP"), ("pop3", "POP3"), ("smtp", "SMTP")):
        if not srv[kind]:
            continue
        port, sock = srv[kind][0]
        protos.append(
            "      <Protocol>\n"
            f"        <Type>{label}</Type>\n"
            f"        <Server>{_x(cfg.hostname)}</Server>\n"
            f"        <Port>{port}</Port>\n"
            f"        <LoginName>{_x(email)}</LoginName>\n"
            "        <DomainRequired>off</DomainRequired>\n"
            "        <SPA>off</SPA>\n"
            f"        <SSL>{'on' if sock == 'SSL' else 'off'}</SSL>\n"
            + ("        <Encryption>TLS</Encryption>\n" if sock == "STARTTLS" else "")
            + "        <AuthRequired>on</AuthRequired>\n"
            "      </Protocol>\n"
        )
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Autodiscover xmlns="{AD_RESPONSE}">\n'
        f'  <Response xmlns="{AD_OUTLOOK}">\n'
        "    <Account>\n"
        "      <AccountType>email</AccountType>\n"
        "      <Action>settings</Action>\n"
        + "".join(protos)
        + "    </Account>\n  </Response>\n</Autodiscover>\n"
    )
    return Response(xml, media_type="application/xml")


async def mobileconfig(request: Request) -> Response:
    user = await require_user(request)
    cfg = state(request).svc.cfg
    srv = servers(cfg)
    imap = srv["imap"][0] if srv["imap"] else (993, "SSL")
    smtp = srv["smtp"][0] if srv["smtp"] else (465, "SSL")
    ns = uuid.UUID("6c1e6d7e-1f4b-4d4e-9a57-6d61696c686f")  # stable profile ids per user
    acct_uuid = str(uuid.uuid5(ns, "account:" + user.address)).upper()
    prof_uuid = str(uuid.uuid5(ns, "profile:" + user.address)).upper()
    rev = ".".join(reversed(cfg.hostname.split(".")))
    payload = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{rev}.mailhouse.account.{acct_uuid}",
        "PayloadUUID": acct_uuid,
        "PayloadDisplayName": user.address,
        "EmailAccountDescription": user.address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": user.address,
        "IncomingMailServerHostName": cfg.hostname,
        "IncomingMailServerPortNumber": imap[0],
        "IncomingMailServerUseSSL": True,  # TLS always: implicit, or STARTTLS on a plain port
        "IncomingMailServerUsername": user.address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": cfg.hostname,
        "OutgoingMailServerPortNumber": smtp[0],
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": user.address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{rev}.mailhouse.{prof_uuid}",
        "PayloadUUID": prof_uuid,
        "PayloadDisplayName": f"Mail: {user.address}",
        "PayloadDescription": f"Sets up {user.address} on {cfg.hostname}. You will be asked for the password.",
        "PayloadOrganization": cfg.hostname,
        "PayloadContent": [payload],
    }
    data = plistlib.dumps(profile)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", user.address) + ".mobileconfig"
    return Response(
        data,
        media_type="application/x-apple-aspen-config",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
