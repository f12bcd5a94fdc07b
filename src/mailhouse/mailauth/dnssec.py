"""In-process DNSSEC validation (`[dns] dnssec = "validate"`): is this DNS answer secure?

RFCs: RFC 4033 §5 (secure / insecure / bogus), RFC 4035 §5 (the chain of trust: trust anchor →
DNSKEY RRset signed by a key the anchor names; §5.2 each delegation's DS RRset signed by the
parent's keys authenticates the child's DNSKEY RRset; a DS RRset with no supported algorithm
makes the zone insecure; §5.3 each RRset's RRSIG checked with the zone's DNSKEY RRset within
its validity period; §5.4 signed NSEC proofs of NXDOMAIN and NODATA), RFC 5155 §8 (NSEC3
proofs: matching NSEC3 for NODATA and for a DS-less delegation, closest encloser + covered next
closer name for NXDOMAIN; §8.9 opt-out), RFC 7672 §2.1 (a DANE client needs this or a resolver
it trusts), RFC 6840 §5.9 (CD set so the resolver hands back what it could not validate).

How: the configured `[dns] nameservers` are asked with DO and CD (they need not validate);
the chain is walked top-down from the longest trust anchor above the name, one label at a
time (a DS query per label: a signed DS → DNSKEY of the child; a signed denial with the NS bit
→ an insecure delegation; a signed denial without it → no zone cut there). Signatures are
checked by `dns.dnssec.validate` (needs `cryptography`).

What is checked: every RRSIG on the path (DS, DNSKEY, the answer, NSEC/NSEC3 denials), the DS
digest of the key-signing key, NSEC/NSEC3 NODATA (type absent from the bitmap of the matching
record) and NXDOMAIN (NSEC covering the name; NSEC3 closest-encloser proof with the next closer
name covered), insecure delegations (DS absent, proved by a signed NSEC/NSEC3 with NS and
without DS or SOA, or an opt-out NSEC3 covering the name), wildcard expansions (RRSIG labels
below the owner's: a signed NSEC/NSEC3 must show no closer name exists, RFC 4035 §5.3.4, RFC
5155 §8.8). Not checked: that no wildcard could have answered an NXDOMAIN or NODATA (the
"no wildcard" half of RFC 4035 §5.4 / RFC 5155 §8.4, §8.7): such a denial is still signed by the
zone. An answer whose denial cannot be proved is BOGUS, never INSECURE.

Invariants:
- INSECURE only when an ancestor zone proves (signed) that the delegation has no DS, or no
  trust anchor covers the name; a missing or wrong signature inside a secure zone is BOGUS.
- Results (answers, zones) are cached for the lowest TTL of what they rest on, at most
  `MAX_CACHE_SECONDS`; a transport failure is `DnsUnavailable`, never cached.
"""

from __future__ import annotations

import base64
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.dnskeybase
import dns.rrset
import dns.zonefile
from dns.dnssectypes import Algorithm
from dns.exception import DeniedByPolicy, UnsupportedAlgorithm, ValidationFailure

K = TypeVar("K")
V = TypeVar("V")
Ord = TypeVar("Ord", bytes, dns.name.Name)  # NSEC owners (canonical order) or NSEC3 hashes

MAX_CACHE_SECONDS = 3600.0
MAX_CACHED = 10000
MAX_CNAMES = 8  # a longer CNAME chain is treated as a failure
QUERY_TIMEOUT = 5.0

# The IANA root zone KSK-2017 (key tag 20326), as DS: the default trust anchor
ROOT_ANCHOR = ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"

# RFC 8624 §3.1: the algorithms a validator must (or should) support and dnspython verifies
SUPPORTED_ALGORITHMS = {
    Algorithm.RSASHA1,
    Algorithm.RSASHA1NSEC3SHA1,
    Algorithm.RSASHA256,
    Algorithm.RSASHA512,
    Algorithm.ECDSAP256SHA256,
    Algorithm.ECDSAP384SHA384,
    Algorithm.ED25519,
    Algorithm.ED448,
}
SUPPORTED_DIGESTS = {2, 4}  # SHA-256, SHA-384 (RFC 8624 §3.3: SHA-1 DS no longer trusted)

IN = dns.rdataclass.IN


class Security(enum.Enum):
    """RFC 4033 §5."""

    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"


class Kind(enum.Enum):
    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"


@dataclass(frozen=True, slots=True)
class Validated:
    """The answer to (name, type) and how far it can be trusted. NAME is the owner of RRSET:
    the last target of a CNAME chain."""

    security: Security
    kind: Kind
    name: dns.name.Name
    rrset: dns.rrset.RRset | None
    ttl: float
    detail: str = ""


class DnsUnavailable(Exception):
    """No nameserver gave an answer (timeout, SERVFAIL, REFUSED)."""


@dataclass(frozen=True, slots=True)
class _Zone:
    """The deepest zone known above a name: its validated DNSKEY RRset when SECURE."""

    security: Security
    name: dns.name.Name
    keys: dns.rrset.RRset | None
    ttl: float
    detail: str = ""


class _Bogus(Exception):
    pass


def load_anchors(text: str) -> dict[dns.name.Name, dns.rrset.RRset]:
    """DS or DNSKEY records in zone-file format (e.g. unbound's root.key), by owner name."""
    out: dict[dns.name.Name, dns.rrset.RRset] = {}
    for rrset in dns.zonefile.read_rrsets(text, default_ttl=0, rdclass=None, default_rdclass=IN):
        if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            raise ValueError(
                f"trust anchor {rrset.name}: {dns.rdatatype.to_text(rrset.rdtype)} is not DS/DNSKEY"
            )
        have = out.get(rrset.name)
        if have is not None and have.rdtype != rrset.rdtype:
            raise ValueError(f"trust anchor {rrset.name}: both DS and DNSKEY")
        if have is None:
            out[rrset.name] = rrset
        else:
            have.union_update(rrset)  # type: ignore[no-untyped-call]
    if not out:
        raise ValueError("no DS or DNSKEY record")
    return out


def anchors_from(path: Path | None) -> dict[dns.name.Name, dns.rrset.RRset]:
    """`[dns] trust_anchor`, else the built-in root KSK."""
    return load_anchors(path.read_text() if path is not None else ROOT_ANCHOR)


def _ds_matches(owner: dns.name.Name, key: dns.rdata.Rdata, ds: dns.rdata.Rdata) -> bool:
    assert isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY) and isinstance(ds, dns.rdtypes.ANY.DS.DS)
    if key.protocol != 3 or not key.flags & dns.rdtypes.dnskeybase.Flag.ZONE:
        return False  # RFC 4035 §5.2: the key must be a zone key of protocol 3
    if key.algorithm != ds.algorithm or dns.dnssec.key_id(key) != ds.key_tag:
        return False
    try:
        return dns.dnssec.make_ds(owner, key, ds.digest_type).digest == ds.digest
    except (UnsupportedAlgorithm, DeniedByPolicy, ValueError):
        return False


def _usable_ds(ds: dns.rdata.Rdata) -> bool:
    assert isinstance(ds, dns.rdtypes.ANY.DS.DS)
    return ds.algorithm in SUPPORTED_ALGORITHMS and ds.digest_type in SUPPORTED_DIGESTS


def _types(rd: dns.rdata.Rdata) -> set[dns.rdatatype.RdataType]:
    assert isinstance(rd, (dns.rdtypes.ANY.NSEC.NSEC, dns.rdtypes.ANY.NSEC3.NSEC3))
    out: set[dns.rdatatype.RdataType] = set()
    for window, bitmap in rd.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(dns.rdatatype.RdataType.make(window * 256 + i * 8 + bit))
    return out


def _between(owner: Ord, nxt: Ord, x: Ord) -> bool:
    """X lies strictly between OWNER and NXT in canonical order, the chain wrapping round."""
    if owner < nxt:
        return bool(owner < x < nxt)
    return bool(x > owner or x < nxt)


@dataclass(frozen=True, slots=True)
class _Nsec3:
    hashed: bytes  # the owner's first label, base32hex decoded
    next: bytes
    types: set[dns.rdatatype.RdataType]
    opt_out: bool
    rd: dns.rdtypes.ANY.NSEC3.NSEC3


class _Denial:
    """The signed NSEC or NSEC3 records of one negative answer (RFC 4035 §5.4, RFC 5155 §8)."""

    def __init__(self, zone: dns.name.Name, nsec: list[dns.rrset.RRset], nsec3: list[dns.rrset.RRset]):
        self.zone = zone
        self.nsec = [(r.name, r[0]) for r in nsec]
        self.nsec3: list[_Nsec3] = []
        for r in nsec3:
            rd = r[0]
            assert isinstance(rd, dns.rdtypes.ANY.NSEC3.NSEC3)
            hashed = base64.b32hexdecode(r.name.labels[0].upper())
            opt_out = bool(rd.flags & 1)
            self.nsec3.append(_Nsec3(hashed, rd.next, _types(rd), opt_out, rd))

    def _hash(self, name: dns.name.Name) -> bytes | None:
        if not self.nsec3:
            return None
        rd = self.nsec3[0].rd
        try:
            h = dns.dnssec.nsec3_hash(name, rd.salt, rd.iterations, rd.algorithm)
        except ValueError:
            return None
        return base64.b32hexdecode(h)

    def matching(self, name: dns.name.Name) -> set[dns.rdatatype.RdataType] | None:
        """The types at NAME when a record proves it exists (None: no matching record)."""
        for owner, rd in self.nsec:
            if owner == name:
                return _types(rd)
        h = self._hash(name)
        for n3 in self.nsec3:
            if h is not None and n3.hashed == h:
                return n3.types
        return None

    def covering(self, name: dns.name.Name) -> _Nsec3 | bool:
        """A record proving NAME does not exist: True (NSEC), the NSEC3 record, else False."""
        for owner, rd in self.nsec:
            assert isinstance(rd, dns.rdtypes.ANY.NSEC.NSEC)
            if _between(owner, rd.next, name):
                return True
        h = self._hash(name)
        for n3 in self.nsec3:
            if h is not None and _between(n3.hashed, n3.next, h):
                return n3
        return False

    def nxdomain(self, name: dns.name.Name) -> bool | None:
        """NAME proved absent: True; through an opt-out NSEC3 (insecure): None; not proved: False."""
        if self.nsec:
            return self.covering(name) is True
        # RFC 5155 §8.4: the closest encloser exists (matching NSEC3), the next closer name is
        # covered
        candidate = name
        while candidate != self.zone and candidate.is_subdomain(self.zone):
            parent = candidate.parent()
            if self.matching(parent) is not None:
                cover = self.covering(candidate)
                if isinstance(cover, _Nsec3):
                    return None if cover.opt_out else True
                return False
            candidate = parent
        return False


class Validator:
    """Validates answers from NAMESERVERS (which need not validate) from trust ANCHORS."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]],
        anchors: dict[dns.name.Name, dns.rrset.RRset],
        *,
        timeout: float = QUERY_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not nameservers:
            raise ValueError('[dns] dnssec = "validate" needs [dns] nameservers')
        self.nameservers = list(nameservers)
        self.anchors = anchors
        self.timeout = timeout
        self.clock = clock
        self.wall = wall  # signature validity periods (RFC 4034 §3.1.5) are wall-clock times
        self._answers: dict[tuple[dns.name.Name, int], tuple[float, Validated]] = {}
        self._zones: dict[dns.name.Name, tuple[float, _Zone]] = {}

    # --- transport ---------------------------------------------------------------------------

    async def _ask(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232)
        q.flags |= dns.flags.CD  # RFC 6840 §5.9: the resolver must not hide what it finds bogus
        last = "no nameserver"
        for ip, port in self.nameservers:
            try:
                r, _ = await dns.asyncquery.udp_with_fallback(q, ip, timeout=self.timeout, port=port)
            except (dns.exception.DNSException, OSError) as e:
                last = f"{ip}:{port}: {type(e).__name__}"
                continue
            if r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return r
            last = f"{ip}:{port}: {dns.rcode.to_text(r.rcode())}"
        raise DnsUnavailable(f"{name} {dns.rdatatype.to_text(rdtype)}: {last}")

    # --- caches ------------------------------------------------------------------------------

    def _remember(self, cache: dict[K, tuple[float, V]], key: K, value: V, ttl: float) -> V:
        ttl = min(ttl, MAX_CACHE_SECONDS)
        if ttl > 0:
            if len(cache) >= MAX_CACHED:
                cache.clear()
            cache[key] = (self.clock() + ttl, value)
        return value

    @staticmethod
    def _fresh(cache: dict[K, tuple[float, V]], key: K, now: float) -> V | None:
        hit = cache.get(key)
        return hit[1] if hit is not None and hit[0] > now else None

    # --- signatures --------------------------------------------------------------------------

    def _check(
        self, msg: dns.message.Message, section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, zone: _Zone
    ) -> None:
        """RFC 4035 §5.3: RRSET carries a valid RRSIG by a key of ZONE; else _Bogus."""
        sigs = msg.find_rrset(section, rrset.name, IN, dns.rdatatype.RRSIG, rrset.rdtype, create=True)
        if not sigs:
            raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} is not signed")
        assert zone.keys is not None
        try:
            dns.dnssec.validate(rrset, sigs, {zone.name: zone.keys}, now=self.wall())
        except ValidationFailure as e:
            raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: {e}") from None

    def _wildcard_proof(self, msg: dns.message.Message, rrset: dns.rrset.RRset, zone: _Zone) -> None:
        """RFC 4035 §5.3.4, RFC 5155 §8.8: an answer synthesised from a wildcard (RRSIG labels
        fewer than the owner's) needs a signed NSEC covering the name, or an NSEC3 covering
        the next closer name (one label below the wildcard's closest encloser); else _Bogus."""
        sigs = msg.find_rrset(msg.answer, rrset.name, IN, dns.rdatatype.RRSIG, rrset.rdtype)
        owner_labels = len(rrset.name) - 1  # without the root label
        labels = min(int(sig.labels) for sig in sigs)
        if labels >= owner_labels:
            return
        denial = self._denial(msg, zone)
        next_closer = dns.name.Name(rrset.name.labels[-(labels + 2) :])
        if denial.covering(rrset.name) is True or isinstance(denial.covering(next_closer), _Nsec3):
            return
        raise _Bogus(f"{rrset.name}: wildcard answer without proof that no closer name exists")

    def _denial(self, msg: dns.message.Message, zone: _Zone) -> _Denial:
        """The NSEC/NSEC3 records of MSG's authority section, each signature checked."""
        nsec: list[dns.rrset.RRset] = []
        nsec3: list[dns.rrset.RRset] = []
        for rrset in msg.authority:
            if rrset.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3):
                self._check(msg, msg.authority, rrset, zone)
                (nsec if rrset.rdtype == dns.rdatatype.NSEC else nsec3).append(rrset)
        return _Denial(zone.name, nsec, nsec3)

    # --- the chain of trust ------------------------------------------------------------------

    async def _dnskeys(
        self, name: dns.name.Name, trusted: Callable[[dns.rdata.Rdata], bool], ttl: float
    ) -> _Zone:
        """NAME's DNSKEY RRset, self-signed by a key TRUSTED accepts (RFC 4035 §5.2)."""
        msg = await self._ask(name, dns.rdatatype.DNSKEY)
        keys = msg.get_rrset(msg.answer, name, IN, dns.rdatatype.DNSKEY)
        if keys is None:
            return _Zone(Security.BOGUS, name, None, 0, f"no DNSKEY RRset at {name}")
        entry = dns.rrset.RRset(name, IN, dns.rdatatype.DNSKEY)
        for k in keys:
            if trusted(k):
                entry.add(k)
        if not entry:
            return _Zone(Security.BOGUS, name, None, 0, f"no DNSKEY of {name} matches its DS")
        try:
            self._check(msg, msg.answer, keys, _Zone(Security.SECURE, name, entry, 0))
        except _Bogus as e:
            return _Zone(Security.BOGUS, name, None, 0, str(e))
        return _Zone(Security.SECURE, name, keys, min(ttl, keys.ttl))

    async def _anchor_zone(self, name: dns.name.Name) -> _Zone:
        anchor = self.anchors[name]
        if anchor.rdtype == dns.rdatatype.DNSKEY:
            return await self._dnskeys(name, lambda k: k in anchor, MAX_CACHE_SECONDS)
        if not any(_usable_ds(ds) for ds in anchor):
            return _Zone(Security.INSECURE, name, None, MAX_CACHE_SECONDS, "no supported trust anchor")
        return await self._dnskeys(
            name, lambda k: any(_ds_matches(name, k, ds) for ds in anchor), MAX_CACHE_SECONDS
        )

    async def _descend(self, zone: _Zone, child: dns.name.Name) -> _Zone:
        """One label down from the secure ZONE: is CHILD a zone cut, secure or not?"""
        msg = await self._ask(child, dns.rdatatype.DS)
        try:
            ds = msg.get_rrset(msg.answer, child, IN, dns.rdatatype.DS)
            if ds is not None:
                self._check(msg, msg.answer, ds, zone)
                usable = [d for d in ds if _usable_ds(d)]
                if not usable:  # RFC 4035 §5.2: no DS we can use → treat the zone as unsigned
                    return _Zone(
                        Security.INSECURE, child, None, ds.ttl, f"DS of {child}: unsupported algorithms"
                    )
                return await self._dnskeys(
                    child, lambda k: any(_ds_matches(child, k, d) for d in usable), min(zone.ttl, ds.ttl)
                )
            if msg.get_rrset(msg.answer, child, IN, dns.rdatatype.CNAME) is not None:
                return zone  # a CNAME owner is no zone cut
            denial = self._denial(msg, zone)
            ttl = min([zone.ttl, *(r.ttl for r in msg.authority)])
            types = denial.matching(child)
            if types is not None:
                if dns.rdatatype.DS in types:
                    raise _Bogus(f"{child}: the denial lists DS")
                if dns.rdatatype.NS in types and dns.rdatatype.SOA not in types:
                    # RFC 4035 §5.2, RFC 5155 §8.6: a delegation proved to have no DS: unsigned
                    return _Zone(Security.INSECURE, child, None, ttl, f"{child} is an unsigned delegation")
                return zone  # the name exists in ZONE and is no zone cut
            # CHILD does not exist (NXDOMAIN, or NODATA from a wildcard, RFC 5155 §8.7): no zone
            # cut; answers beneath prove their own denial
            proved = denial.nxdomain(child)
            if proved is True:
                return zone
            if proved is None:  # RFC 5155 §8.9 (opt-out): an unsigned delegation may lie here
                return _Zone(Security.INSECURE, child, None, ttl, f"{child} is in an opt-out span")
            cover = denial.covering(child)
            if isinstance(cover, _Nsec3) and cover.opt_out:
                # RFC 5155 §8.9 (opt-out): an unsigned delegation may lie in this span
                return _Zone(Security.INSECURE, child, None, ttl, f"{child} is in an opt-out span")
            if cover is True or isinstance(cover, _Nsec3):
                return zone
            raise _Bogus(f"no DS for {child}, and its absence is not proved")
        except _Bogus as e:
            return _Zone(Security.BOGUS, child, None, 0, str(e))

    async def zone(self, name: dns.name.Name) -> _Zone:
        """The deepest zone above or at NAME, walked down from the closest trust anchor."""
        anchor = max((a for a in self.anchors if name.is_subdomain(a)), key=len, default=None)
        if anchor is None:
            return _Zone(Security.INSECURE, dns.name.root, None, MAX_CACHE_SECONDS, "no trust anchor above")
        now = self.clock()
        zone = self._fresh(self._zones, anchor, now)
        if zone is None:
            zone = await self._anchor_zone(anchor)
            self._remember(self._zones, anchor, zone, zone.ttl if zone.security is not Security.BOGUS else 0)
        for depth in range(len(anchor) + 1, len(name) + 1):
            if zone.security is not Security.SECURE:
                return zone
            child = name.split(depth)[1]
            hit = self._fresh(self._zones, child, now)
            if hit is None:
                hit = await self._descend(zone, child)
                self._remember(self._zones, child, hit, hit.ttl if hit.security is not Security.BOGUS else 0)
            zone = hit
        return zone

    # --- answers -----------------------------------------------------------------------------

    async def query(self, qname: str | dns.name.Name, rdtype: str | dns.rdatatype.RdataType) -> Validated:
        """The answer to QNAME/RDTYPE (CNAMEs followed) and its security (RFC 4035 §5)."""
        name = dns.name.from_text(qname) if isinstance(qname, str) else qname
        t = dns.rdatatype.RdataType.make(rdtype)
        return await self._query(name, t, MAX_CNAMES)

    async def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, hops: int) -> Validated:
        now = self.clock()
        hit = self._fresh(self._answers, (name, rdtype), now)
        if hit is not None:
            return hit
        msg = await self._ask(name, rdtype)
        zone = await self.zone(name)
        result = self._judge(msg, name, rdtype, zone)
        if (
            result.kind is Kind.ANSWER
            and result.rrset is not None
            and result.rrset.rdtype == dns.rdatatype.CNAME
        ):
            if hops <= 0:
                raise DnsUnavailable(f"{name}: CNAME chain longer than {MAX_CNAMES}")
            cname = result.rrset[0]
            assert isinstance(cname, dns.rdtypes.ANY.CNAME.CNAME)
            tail = await self._query(cname.target, rdtype, hops - 1)
            worst = max((result.security, tail.security), key=_rank)
            result = Validated(
                worst, tail.kind, tail.name, tail.rrset, min(result.ttl, tail.ttl), tail.detail
            )
        ttl = result.ttl if result.security is not Security.BOGUS else 0
        return self._remember(self._answers, (name, rdtype), result, ttl)

    def _judge(
        self, msg: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, zone: _Zone
    ) -> Validated:
        rrset = msg.get_rrset(msg.answer, name, IN, rdtype) or msg.get_rrset(
            msg.answer, name, IN, dns.rdatatype.CNAME
        )
        kind = (
            Kind.ANSWER
            if rrset is not None
            else Kind.NXDOMAIN
            if msg.rcode() == dns.rcode.NXDOMAIN
            else Kind.NODATA
        )
        ttl = min([zone.ttl, *(r.ttl for r in (msg.answer if rrset is not None else msg.authority))])
        if zone.security is not Security.SECURE:
            return Validated(
                zone.security,
                kind,
                name,
                rrset,
                ttl if zone.security is Security.INSECURE else 0,
                zone.detail,
            )
        try:
            if rrset is not None:
                self._check(msg, msg.answer, rrset, zone)
                self._wildcard_proof(msg, rrset, zone)
                return Validated(Security.SECURE, kind, name, rrset, ttl)
            denial = self._denial(msg, zone)
            if kind is Kind.NODATA:
                types = denial.matching(name)
                if types is None:
                    cover = denial.covering(name)
                    if isinstance(cover, _Nsec3) and cover.opt_out:  # RFC 5155 §8.6 opt-out
                        return Validated(Security.INSECURE, kind, name, None, ttl, "opt-out span")
                    raise _Bogus(f"NODATA for {name} without a matching NSEC/NSEC3")
                if rdtype in types or dns.rdatatype.CNAME in types:
                    raise _Bogus(f"NODATA for {name}, but the NSEC/NSEC3 lists the type")
                return Validated(Security.SECURE, kind, name, None, ttl)
            proved = denial.nxdomain(name)
            if proved is None:
                return Validated(Security.INSECURE, kind, name, None, ttl, "opt-out span")
            if not proved:
                raise _Bogus(f"NXDOMAIN for {name} is not proved")
            return Validated(Security.SECURE, kind, name, None, ttl)
        except _Bogus as e:
            return Validated(Security.BOGUS, kind, name, rrset, 0, str(e))


def _rank(s: Security) -> int:
    return {Security.SECURE: 0, Security.INSECURE: 1, Security.BOGUS: 2}[s]
