"""The DNS records a hosted domain should publish (`mailhouse dns DOMAIN`, web admin).

MX (RFC 5321 §5), SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), MTA-STS
(RFC 8461) and TLS-RPT (RFC 8460), and the SRV records for client set-up (RFC 6186,
RFC 8314 §5.1).

Only what Mailhouse does is advised (issue 15 §7): the `_mta-sts` record and `mta-sts.` host only
while the web face serves the policy (`[mta_sts] publish`, web/mtasts.py), and the DMARC `rua` and
TLS-RPT addresses only while arriving reports are read (`[reports]`, reports/intake.py).
`mailauth/dnscheck.py` compares these records with what DNS answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.reversename

from mailhouse.config import Config
from mailhouse.proto.mtasts import Mode, policy_id, render_policy
from mailhouse.store.api import DkimKey


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    type: str
    value: str
    note: str = ""
    kind: str = ""  # what dnscheck compares: mx, spf, dkim, dmarc, mta-sts, policy-host, tlsrpt, srv, host
    required: bool = False  # mail is refused or junked elsewhere without it (MX, SPF, DKIM, DMARC)

    def zone_line(self) -> str:
        value = self.value
        if self.type == "TXT":
            # RFC 1035 §3.3.14: character-strings are at most 255 octets each
            parts = [value[i : i + 255] for i in range(0, len(value), 255)]
            value = " ".join(f'"{p}"' for p in parts)
        return f"{self.name}. 3600 IN {self.type} {value}"


def published_policy(cfg: Config) -> str | None:
    """The MTA-STS policy file served for every hosted domain (RFC 8461 §3.2); None when off."""
    if cfg.mta_sts_publish == "off":
        return None
    return render_policy(Mode(cfg.mta_sts_publish), [cfg.hostname], cfg.mta_sts_publish_max_age)


def report_address(cfg: Config, domain: str, kind: str) -> str | None:
    """The address KIND ("dmarc" | "tlsrpt") reports for DOMAIN go to, when Mailhouse reads them
    (`[reports] dmarc_address` / `tlsrpt_address`: a local part on the domain, or an address)."""
    if not cfg.reports_enabled or not cfg.report_addresses:
        return None
    # config keeps (dmarc, tlsrpt), or one address when both are the same
    local = cfg.report_addresses[0] if kind == "dmarc" else cfg.report_addresses[-1]
    return local if "@" in local else f"{local}@{domain}"


def advice(cfg: Config, domain: str, dkim_keys: list[DkimKey]) -> list[Record]:
    """The records DOMAIN should publish for this configuration."""
    policy = published_policy(cfg)
    return records(
        domain,
        cfg.hostname,
        dkim_keys,
        mta_sts_id=policy_id(policy) if policy is not None else None,
        dmarc_rua=report_address(cfg, domain, "dmarc"),
        tlsrpt_rua=report_address(cfg, domain, "tlsrpt"),
    ) + host_records(cfg.hostname, cfg.source_addresses)


def host_records(hostname: str, addresses: Sequence[str]) -> list[Record]:
    """A/AAAA of the host name and the PTR of each address mail leaves from (`[queue]
    source_address`): the PTR is set by whoever runs the address, usually the provider."""
    out = []
    for ip in addresses:
        v6 = ipaddress.ip_address(ip).version == 6
        out.append(Record(hostname, "AAAA" if v6 else "A", ip, "this server's address", "address", True))
    for ip in addresses:
        rname = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
        out.append(
            Record(rname, "PTR", f"{hostname}.", "reverse DNS: set it at your provider (FCrDNS)", "ptr", True)
        )
    return out


def records(
    domain: str,
    hostname: str,
    dkim_keys: list[DkimKey],
    *,
    mta_sts_id: str | None = None,
    dmarc_rua: str | None = None,
    tlsrpt_rua: str | None = None,
) -> list[Record]:
    out = [
        Record(
            domain, "MX", f"10 {hostname}.", "where other servers deliver mail for the domain", "mx", True
        ),
        Record(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain", "spf", True),
    ]
    for k in dkim_keys:
        out.append(
            Record(
                f"{k.selector}._domainkey.{domain}",
                "TXT",
                k.public_record,
                f"DKIM {k.algorithm}",
                "dkim",
                True,
            )
        )
    dmarc = "v=DMARC1; p=quarantine" + (f"; rua=mailto:{dmarc_rua}" if dmarc_rua else "")
    out.append(Record(f"_dmarc.{domain}", "TXT", dmarc, "DMARC policy", "dmarc", True))
    if mta_sts_id is not None:
        out += [
            Record(
                f"_mta-sts.{domain}",
                "TXT",
                f"v=STSv1; id={mta_sts_id}",
                "MTA-STS: the id changes whenever the served policy does",
                "mta-sts",
            ),
            Record(
                f"mta-sts.{domain}",
                "CNAME",
                f"{hostname}.",
                f"the MTA-STS policy host: HTTPS on port 443 with a certificate for mta-sts.{domain}",
                "policy-host",
            ),
        ]
    if tlsrpt_rua:
        out.append(
            Record(
                f"_smtp._tls.{domain}",
                "TXT",
                f"v=TLSRPTv1; rua=mailto:{tlsrpt_rua}",
                "TLS reporting",
                "tlsrpt",
            )
        )
    out += [
        Record(
            f"_submissions._tcp.{domain}",
            "SRV",
            f"0 1 465 {hostname}.",
            "RFC 8314 submission over TLS",
            "srv",
        ),
        Record(f"_submission._tcp.{domain}", "SRV", f"0 1 587 {hostname}.", "RFC 6186 submission", "srv"),
        Record(f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {hostname}.", "RFC 6186 IMAP over TLS", "srv"),
        Record(f"_imap._tcp.{domain}", "SRV", f"0 1 143 {hostname}.", "RFC 6186 IMAP", "srv"),
        Record(f"_pop3s._tcp.{domain}", "SRV", f"10 1 995 {hostname}.", "RFC 6186 POP3 over TLS", "srv"),
        Record(f"autoconfig.{domain}", "CNAME", f"{hostname}.", "Thunderbird autoconfig", "host"),
        Record(f"autodiscover.{domain}", "CNAME", f"{hostname}.", "Outlook autodiscover", "host"),
    ]
    return out
