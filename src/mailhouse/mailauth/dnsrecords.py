"""The DNS records a hosted domain should publish (`mailhouse dns DOMAIN`, web admin).

MX (RFC 5321 §5), SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), MTA-STS
(RFC 8461) and TLS-RPT (RFC 8460), and the SRV records for client set-up (RFC 6186,
RFC 8314 §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhouse.store.api import DkimKey


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    type: str
    value: str
    note: str = ""

    def zone_line(self) -> str:
        value = self.value
        if self.type == "TXT":
            # RFC 1035 §3.3.14: character-strings are at most 255 octets each
            parts = [value[i : i + 255] for i in range(0, len(value), 255)]
            value = " ".join(f'"{p}"' for p in parts)
        return f"{self.name}. 3600 IN {self.type} {value}"


def records(domain: str, hostname: str, dkim_keys: list[DkimKey]) -> list[Record]:
    out = [
        Record(domain, "MX", f"10 {hostname}.", "where other servers deliver mail for the domain"),
        Record(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain"),
    ]
    for k in dkim_keys:
        out.append(Record(f"{k.selector}._domainkey.{domain}", "TXT", k.public_record, f"DKIM {k.algorithm}"))
    out += [
        Record(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}",
            "DMARC policy",
        ),
        Record(
            f"_mta-sts.{domain}", "TXT", "v=STSv1; id=1", "MTA-STS policy id (serve the policy over HTTPS)"
        ),
        Record(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}", "TLS reporting"),
        Record(f"_submissions._tcp.{domain}", "SRV", f"0 1 465 {hostname}.", "RFC 8314 submission over TLS"),
        Record(f"_submission._tcp.{domain}", "SRV", f"0 1 587 {hostname}.", "RFC 6186 submission"),
        Record(f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {hostname}.", "RFC 6186 IMAP over TLS"),
        Record(f"_imap._tcp.{domain}", "SRV", f"0 1 143 {hostname}.", "RFC 6186 IMAP"),
        Record(f"_pop3s._tcp.{domain}", "SRV", f"10 1 995 {hostname}.", "RFC 6186 POP3 over TLS"),
        Record(f"autoconfig.{domain}", "CNAME", f"{hostname}.", "Thunderbird autoconfig"),
        Record(f"autodiscover.{domain}", "CNAME", f"{hostname}.", "Outlook autodiscover"),
    ]
    return out
