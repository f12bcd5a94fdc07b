"""The TLS-ALPN-01 validation certificate (RFC 8737 §3), built with `cryptography`.

`validation_certificate(name, key_authorization)` returns a fresh self-signed certificate and
its key (PEM): subjectAltName the one dNSName being validated, and the critical
`id-pe-acmeIdentifier` extension (OID 1.3.6.1.5.5.7.1.31) whose value is the DER OCTET STRING of
the SHA-256 digest of the key authorization (RFC 8555 §8.1). The ordering node stores the pair
(mark `acme:tlsalpn01:NAME`, certs.TLSALPN01_PREFIX) and every node's HTTPS listener serves it to
a ClientHello with that SNI and ALPN `acme-tls/1` (tls.ServerCertificate, web/acme.py).
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailhouse import tls

ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
VALID_FOR = datetime.timedelta(days=7)  # only ever shown during one order


def acme_identifier(key_authorization: str) -> bytes:
    """The extension's value: `Authorization ::= OCTET STRING (SIZE (32))`, DER (RFC 8737 §3)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return bytes([0x04, len(digest)]) + digest


def validation_certificate(name: str, key_authorization: str) -> tuple[str, str]:
    """(certificate, key) PEM proving control of NAME for KEY_AUTHORIZATION."""
    cert, key = tls.self_signed(
        name,
        [x509.DNSName(name)],  # §3: exactly one dNSName, the identifier being validated
        VALID_FOR,
        # §3: the acmeIdentifier extension MUST be critical
        [(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, acme_identifier(key_authorization)), True)],
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
