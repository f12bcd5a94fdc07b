"""DANE certificate matching for outbound SMTP: a server's chain against its TLSA records.

RFCs: RFC 6698 §2.1 (TLSA fields: certificate usage, selector, matching type), RFC 7671
(DANE operational guidance), RFC 7672 §3.1 (SMTP: DANE-EE(3) and DANE-TA(2) only; PKIX-TA(0)
and PKIX-EE(1) are unusable), RFC 8460 §4.3 (the failure names a TLS-RPT report uses).

The DNS half (is there a secure TLSA RRset for this MX?) is `queue/dane.py`; this module only
answers "does the chain the server presented satisfy these records?", so the SMTP client can
run it right after the STARTTLS handshake, before any command is sent over the session.

Invariants:
- DANE-EE(3) matches the leaf alone: no chain, no name and no expiry check (RFC 7672 §3.1.1).
- DANE-TA(2) matches a certificate the server presented in its chain (RFC 7672 §3.1.2: the
  server MUST include it), which then is the only trust anchor the leaf is verified against,
  with the host name check against the reference identifiers (§3.2.2: the MX host name, the
  CNAME-expanded MX host name, the next-hop domain; any one suffices) and validity dates.
- A record with an unknown usage, selector or matching type, or a digest of the wrong length,
  is unusable (RFC 7672 §2.2, RFC 7671 §4): it never matches and never causes a failure by itself.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification


class Usage(enum.IntEnum):
    """RFC 6698 §2.1.1 certificate usages."""

    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(enum.IntEnum):
    """RFC 6698 §2.1.2: what of the certificate is matched."""

    CERT = 0  # the full DER certificate
    SPKI = 1  # its DER SubjectPublicKeyInfo


class Matching(enum.IntEnum):
    """RFC 6698 §2.1.3: how the association data is compared."""

    EXACT = 0
    SHA256 = 1
    SHA512 = 2


_DIGEST_LEN = {Matching.SHA256: 32, Matching.SHA512: 64}


class Failure(enum.Enum):
    """Why a DANE-protected session failed, in RFC 8460 §4.3 result-type terms."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    VALIDATION_FAILURE = "validation-failure"  # the TLS handshake itself failed
    TLSA_INVALID = "tlsa-invalid"  # §4.3.2.1: no usable record matched the presented chain
    DNSSEC_INVALID = "dnssec-invalid"  # §4.3.2.1: the resolver returned no valid (secure) answer
    DANE_REQUIRED = "dane-required"  # §4.3.2.1: TLSA published but the session could not use it
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record (RFC 6698 §2.1); values outside the enums are kept and are unusable."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        # RFC 7672 §3.1.3: PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP; unknown parameters too
        if self.usage not in (Usage.DANE_TA, Usage.DANE_EE) or self.selector not in (0, 1):
            return False
        if self.mtype not in (0, 1, 2):
            return False
        want = _DIGEST_LEN.get(Matching(self.mtype))
        return bool(self.data) and (want is None or len(self.data) == want)

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


class DaneMismatch(Exception):
    """The presented chain satisfies none of the usable TLSA records."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


def _selected(cert_der: bytes, selector: int) -> bytes:
    if selector == Selector.CERT:
        return cert_der
    cert = x509.load_der_x509_certificate(cert_der)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def matches(record: Tlsa, cert_der: bytes) -> bool:
    """RFC 6698 §2.1.2-§2.1.3: the selected part of CERT_DER, hashed per the matching type, equals the data."""
    if not record.usable:
        return False
    try:
        selected = _selected(cert_der, record.selector)
    except ValueError:
        return False
    if record.mtype == Matching.SHA256:
        return hashlib.sha256(selected).digest() == record.data
    if record.mtype == Matching.SHA512:
        return hashlib.sha512(selected).digest() == record.data
    return selected == record.data


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The DER certificates the server presented, leaf first (unverified: DANE decides).

    Python 3.13 has `get_unverified_chain()`; 3.10-3.12 have it on the private `_sslobj`.
    Without either, the leaf alone (enough for DANE-EE, not for DANE-TA)."""
    get = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    if get is not None:
        chain = get() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def check_chain(
    records: Sequence[Tlsa],
    chain: Sequence[bytes],
    names: str | Sequence[str],
    now: datetime.datetime | None = None,
) -> Tlsa:
    """The usable record CHAIN (leaf first) satisfies; DaneMismatch when none does.

    NAMES are the reference identifiers of a DANE-TA(2) match, the MX host name first (RFC 7672
    §3.2.2: also the CNAME-expanded MX host name and the next-hop domain; one must match)."""
    names = (names,) if isinstance(names, str) else tuple(names)
    hostname = names[0] if names else ""
    if not chain:
        raise DaneMismatch(Failure.VALIDATION_FAILURE, "the server presented no certificate")
    leaf = chain[0]
    usable = [r for r in records if r.usable]
    for r in usable:
        if r.usage == Usage.DANE_EE and matches(r, leaf):  # RFC 7672 §3.1.1: leaf only, no name check
            return r
    ta_error: DaneMismatch | None = None
    for r in usable:
        if r.usage != Usage.DANE_TA:
            continue
        for der in chain:
            if not matches(r, der):
                continue
            err = _verify_to_anchor(chain, der, names, now or datetime.datetime.now(datetime.UTC))
            if err is None:
                return r
            ta_error = ta_error or err
    if ta_error is not None:
        raise ta_error
    raise DaneMismatch(Failure.TLSA_INVALID, f"no TLSA record of {hostname} matches the server's certificate")


def _verify_to_anchor(
    chain: Sequence[bytes], anchor_der: bytes, names: Sequence[str], now: datetime.datetime
) -> DaneMismatch | None:
    """RFC 7672 §3.1.2: the leaf chains up to ANCHOR (the matched chain certificate), is within
    its validity dates and names one of NAMES (§3.2.2); None when it does, else why not."""
    try:
        certs = [x509.load_der_x509_certificate(d) for d in chain]
        anchor = x509.load_der_x509_certificate(anchor_der)
    except ValueError as e:
        return DaneMismatch(Failure.CERTIFICATE_NOT_TRUSTED, f"a certificate does not parse: {e}")
    leaf = certs[0]
    # RFC 7672 §3.2.2: any one of the reference identifiers may match
    hostname = next((n for n in names if _names(leaf, n)), None)
    if hostname is None:
        return DaneMismatch(
            Failure.CERTIFICATE_HOST_MISMATCH, f"DANE-TA: the certificate does not name {' or '.join(names)}"
        )
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return DaneMismatch(Failure.CERTIFICATE_EXPIRED, "DANE-TA: the certificate is not valid now")
    if leaf == anchor:
        return None  # the anchor is the server certificate itself (a "2 x x" for a self-issued one)
    builder = verification.PolicyBuilder().store(verification.Store([anchor])).time(now)
    try:
        verifier = builder.build_server_verifier(x509.DNSName(hostname))
        verifier.verify(leaf, [c for c in certs[1:] if c != anchor])
    except (verification.VerificationError, ValueError) as e:
        return DaneMismatch(
            Failure.CERTIFICATE_NOT_TRUSTED, f"DANE-TA: the chain does not verify to the trust anchor: {e}"
        )
    return None


def _names(cert: x509.Certificate, hostname: str) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    host = hostname.lower().rstrip(".")
    for name in sans.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:]):
            return True
    return False
