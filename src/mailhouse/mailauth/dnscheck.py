"""Is a hosted domain's DNS right? Live answers compared with `dnsrecords.advice`, record by record.

`mailhouse dns DOMAIN --check` and the admin domain page. The comparison is by meaning, not by
string (issue 15 §7): an SPF record with more mechanisms than advised is right when it authorises
the addresses mail leaves from (evaluated with pyspf, RFC 7208 §4); an MX list that includes this
host is right; DKIM compares the public key (RFC 6376 §3.6.1 `p=`), not the tag order; DMARC
needs exactly one `v=DMARC1` record with a valid `p=` (RFC 7489 §6.6.3); MTA-STS needs exactly one
`v=STSv1` record (RFC 8461 §3.1) whose id is the served policy's; host names (autoconfig,
mta-sts) are right when they resolve to this host's addresses, by CNAME or by A/AAAA.
PTR: every outbound address (`[queue] source_address`, else this host's A/AAAA) needs a PTR
whose name resolves back to it (forward-confirmed reverse DNS, which receivers check).

Invariant: a DNS failure is reported as `unknown`, never as `missing`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from mailhouse.mailauth import spf
from mailhouse.mailauth.dnsrecords import Record
from mailhouse.mailauth.resolvers import resolver_on
from mailhouse.proto.mtasts import parse_txt

DNS_TIMEOUT = 5.0
DMARC_POLICIES = ("none", "quarantine", "reject")  # RFC 7489 §6.3 p=


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"  # works, but worth a look
    MISSING = "missing"
    DIFFERENT = "different"
    UNKNOWN = "unknown"  # DNS did not answer

    @property
    def fine(self) -> bool:
        return self in (Status.OK, Status.WARNING)


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    type: str
    status: Status
    found: tuple[str, ...]
    detail: str
    record: Record | None = None  # the advised record; None for PTR checks

    @property
    def failed(self) -> bool:
        """A required record that is missing or different (the command exits 1)."""
        required = self.record.required if self.record is not None else True
        return required and self.status in (Status.MISSING, Status.DIFFERENT)


class _Unanswered(Exception):
    """The resolver failed (timeout, SERVFAIL): the record's state is unknown."""


def async_resolver(
    nameservers: Sequence[tuple[str, int]], timeout: float = DNS_TIMEOUT
) -> dns.asyncresolver.Resolver:
    """A resolver asking `[dns] nameservers` (the system's when none are configured)."""
    return resolver_on(dns.asyncresolver.Resolver, nameservers, timeout)


class Checker:
    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        hostname: str,
        nameservers: Sequence[tuple[str, int]],
        source_addresses: Sequence[str] = (),
    ) -> None:
        self.resolver = resolver
        self.hostname = hostname.lower().rstrip(".")
        self.nameservers = list(nameservers)
        self.source_addresses = list(source_addresses)
        self._host_addrs: set[str] | None = None

    async def _answer(self, name: str, rtype: str) -> list[str]:
        try:
            ans = await self.resolver.resolve(name, rtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.DNSException, OSError) as e:
            raise _Unanswered(f"DNS did not answer for {name} {rtype}: {type(e).__name__}") from None
        if ans.rrset is None:
            return []
        if rtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in ans]  # RFC 7208 §3.3
        return [r.to_text() for r in ans]

    async def _addresses(self, name: str) -> set[str]:
        a, aaaa = await asyncio.gather(self._answer(name, "A"), self._answer(name, "AAAA"))
        return {str(ipaddress.ip_address(x)) for x in a + aaaa}

    async def host_addresses(self) -> set[str]:
        if self._host_addrs is None:
            self._host_addrs = await self._addresses(self.hostname)
        return self._host_addrs

    async def outbound_addresses(self) -> list[str]:
        return self.source_addresses or sorted(await self.host_addresses())

    async def check(self, domain: str, want: Sequence[Record]) -> list[Finding]:
        """Every advised record of WANT, then the PTR of every outbound address."""
        advised = {dns.reversename.to_address(dns.name.from_text(r.name)) for r in want if r.kind == "ptr"}
        results = await asyncio.gather(*(self._one(domain, r) for r in want), self._ptrs(advised))
        out: list[Finding] = list(results[:-1])  # type: ignore[arg-type]
        ptrs = results[-1]
        assert isinstance(ptrs, list)
        return out + ptrs

    async def _one(self, domain: str, rec: Record) -> Finding:
        try:
            return await _CHECKS[rec.kind](self, domain, rec)
        except _Unanswered as e:
            return Finding(rec.name, rec.type, Status.UNKNOWN, (), str(e), rec)

    async def _mx(self, domain: str, rec: Record) -> Finding:
        found = await self._answer(rec.name, "MX")
        hosts = [f.split()[-1].lower().rstrip(".") for f in found]
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value}")
        if self.hostname in hosts:
            others = [h for h in hosts if h != self.hostname]
            note = f"; also {', '.join(others)} (they must relay to {self.hostname})" if others else ""
            return _f(rec, Status.OK, found, f"MX names {self.hostname}{note}")
        return _f(
            rec, Status.DIFFERENT, found, f"no MX names {self.hostname}; mail for {domain} goes elsewhere"
        )

    async def _spf(self, domain: str, rec: Record) -> Finding:
        found = [t for t in await self._answer(rec.name, "TXT") if _is_spf(t)]
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value}")
        if len(found) > 1:  # RFC 7208 §4.5: more than one record is a permerror
            return _f(
                rec, Status.DIFFERENT, found, "more than one SPF record: receivers treat that as an error"
            )
        ips = await self.outbound_addresses()
        if not ips:
            return _f(rec, Status.UNKNOWN, found, f"no outbound address known ({self.hostname} has none)")
        bad = []
        for ip in ips:
            res = await asyncio.to_thread(
                spf.check, ip, f"postmaster@{domain}", self.hostname, self.nameservers, timeout=DNS_TIMEOUT
            )
            if res.result != "pass":
                bad.append(f"{ip} gets {res.result}")
        if bad:
            return _f(
                rec,
                Status.DIFFERENT,
                found,
                "SPF does not authorise the outbound addresses: " + "; ".join(bad),
            )
        return _f(rec, Status.OK, found, f"SPF passes for {', '.join(ips)}")

    async def _dkim(self, domain: str, rec: Record) -> Finding:
        found = [t for t in await self._answer(rec.name, "TXT") if "p=" in t]
        if not found:
            return _f(rec, Status.MISSING, found, "publish the key, or mail signed with it fails DKIM")
        want = _tags(rec.value).get("p", "")
        if any(_tags(t).get("p", "") == want for t in found):
            return _f(rec, Status.OK, found, "the published key is the signing key")
        return _f(rec, Status.DIFFERENT, found, "a different public key is published: signatures will fail")

    async def _dmarc(self, domain: str, rec: Record) -> Finding:
        found = [t for t in await self._answer(rec.name, "TXT") if t.strip().lower().startswith("v=dmarc1")]
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value}")
        if len(found) > 1:  # RFC 7489 §6.6.3: several records → no policy at all
            return _f(rec, Status.DIFFERENT, found, "more than one DMARC record: receivers apply none")
        tags = _tags(found[0])
        if tags.get("p", "").lower() not in DMARC_POLICIES:
            return _f(rec, Status.DIFFERENT, found, "p= is missing or not none/quarantine/reject")
        want_rua = _tags(rec.value).get("rua")
        if want_rua and not tags.get("rua"):
            return _f(rec, Status.WARNING, found, f"no rua=: aggregate reports will not reach {want_rua[7:]}")
        if tags["p"].lower() == "none":
            return _f(
                rec, Status.WARNING, found, "p=none: receivers only monitor, forged mail is still delivered"
            )
        return _f(rec, Status.OK, found, f"p={tags['p'].lower()}")

    async def _mta_sts(self, domain: str, rec: Record) -> Finding:
        found = [t for t in await self._answer(rec.name, "TXT") if t.startswith("v=STSv1")]
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value}")
        pid = parse_txt(found)
        if pid is None:
            return _f(rec, Status.DIFFERENT, found, "not exactly one valid v=STSv1 record (RFC 8461 §3.1)")
        want = _tags(rec.value).get("id", "")
        if pid != want:
            return _f(
                rec,
                Status.DIFFERENT,
                found,
                f"id={pid}, but the served policy is id={want}: senders keep the old one",
            )
        return _f(rec, Status.OK, found, "id matches the served policy")

    async def _tlsrpt(self, domain: str, rec: Record) -> Finding:
        found = [t for t in await self._answer(rec.name, "TXT") if t.startswith("v=TLSRPTv1")]
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value}")
        if len(found) > 1 or "rua" not in _tags(found[0]):  # RFC 8460 §3
            return _f(rec, Status.DIFFERENT, found, "not exactly one v=TLSRPTv1 record with rua=")
        return _f(rec, Status.OK, found, "TLS reports are requested")

    async def _srv(self, domain: str, rec: Record) -> Finding:
        found = await self._answer(rec.name, "SRV")
        _, _, port, target = rec.value.split()
        for f in found:
            parts = f.split()
            if len(parts) == 4 and parts[2] == port and parts[3].lower().rstrip(".") == target.rstrip("."):
                return _f(rec, Status.OK, found, f"port {port} on {self.hostname}")
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.value} (clients then find the server)")
        return _f(rec, Status.DIFFERENT, found, f"does not name port {port} on {self.hostname}")

    async def _host(self, domain: str, rec: Record) -> Finding:
        addrs, ours = await asyncio.gather(self._addresses(rec.name), self.host_addresses())
        found = tuple(sorted(addrs))
        if not addrs:
            return _f(rec, Status.MISSING, found, f"publish: {rec.name} CNAME {self.hostname}.")
        if ours and addrs & ours:
            return _f(rec, Status.OK, found, f"reaches {self.hostname}")
        return _f(
            rec,
            Status.DIFFERENT,
            found,
            f"resolves elsewhere than {self.hostname} ({', '.join(sorted(ours))})",
        )

    async def _ptrs(self, advised: set[str]) -> list[Finding]:
        """PTR checks of the outbound addresses no advised record covers."""
        try:
            ips = [ip for ip in await self.outbound_addresses() if ip not in advised]
        except _Unanswered as e:
            return [Finding(self.hostname, "PTR", Status.UNKNOWN, (), str(e))]
        return list(await asyncio.gather(*(self._ptr(ip) for ip in ips)))

    async def _ptr_record(self, domain: str, rec: Record) -> Finding:
        f = await self._ptr(dns.reversename.to_address(dns.name.from_text(rec.name)))
        return Finding(f.name, f.type, f.status, f.found, f.detail, rec)

    async def _address(self, domain: str, rec: Record) -> Finding:
        found = await self._answer(rec.name, rec.type)
        if not found:
            return _f(rec, Status.MISSING, found, f"publish: {rec.name} {rec.type} {rec.value}")
        if rec.value in {str(ipaddress.ip_address(x)) for x in found}:
            return _f(rec, Status.OK, found, f"{rec.name} has {rec.value}")
        return _f(rec, Status.DIFFERENT, found, f"{rec.name} does not have {rec.value}")

    async def _ptr(self, ip: str) -> Finding:
        rname = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
        try:
            names = [n.lower().rstrip(".") for n in await self._answer(rname, "PTR")]
            if not names:
                return Finding(
                    rname, "PTR", Status.MISSING, (), f"ask whoever runs {ip} for PTR {self.hostname}."
                )
            confirmed = [n for n in names if ip in await self._addresses(n)]
        except _Unanswered as e:
            return Finding(rname, "PTR", Status.UNKNOWN, (), str(e))
        if not confirmed:
            return Finding(
                rname,
                "PTR",
                Status.DIFFERENT,
                tuple(names),
                f"{', '.join(names)} does not resolve back to {ip}",
            )
        if self.hostname not in confirmed:
            return Finding(
                rname,
                "PTR",
                Status.WARNING,
                tuple(names),
                f"forward-confirmed, but not {self.hostname} (the HELO name)",
            )
        return Finding(rname, "PTR", Status.OK, tuple(names), f"{ip} ↔ {self.hostname}")


_CHECKS = {
    "mx": Checker._mx,
    "spf": Checker._spf,
    "dkim": Checker._dkim,
    "dmarc": Checker._dmarc,
    "mta-sts": Checker._mta_sts,
    "policy-host": Checker._host,
    "host": Checker._host,
    "tlsrpt": Checker._tlsrpt,
    "srv": Checker._srv,
    "address": Checker._address,
    "ptr": Checker._ptr_record,
}


def _f(rec: Record, status: Status, found: Sequence[str], detail: str) -> Finding:
    return Finding(rec.name, rec.type, status, tuple(found), detail, rec)


def _is_spf(txt: str) -> bool:
    t = txt.strip().lower()
    return t == "v=spf1" or t.startswith("v=spf1 ")  # RFC 7208 §4.5


def _tags(txt: str) -> dict[str, str]:
    """`k=v; k=v` tag lists (RFC 6376 §3.2, RFC 7489 §6.4), whitespace inside values removed."""
    out = {}
    for part in txt.split(";"):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = "".join(v.split())
    return out
