"""DKIM key generation and DNS record text (RFC 6376 §3.6.1, RFC 8463 for ed25519).

Keys are made with `cryptography`; signing itself uses dkimpy (`mailauth/dkim.py`).
Each domain gets an RSA-2048 key (rsa-sha256, what every verifier understands) and an
Ed25519 key (ed25519-sha256), under selectors `<selector>r` and `<selector>e`.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailhouse.store.api import DkimKey

RSA_BITS = 2048  # RFC 8301 §3.2: signers MUST use ≥ 1024, SHOULD use ≥ 2048


def generate(domain: str, selector: str) -> list[DkimKey]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    rsa_pub = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ed_pub = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return [
        DkimKey(
            domain,
            f"{selector}r",
            "rsa-sha256",
            rsa_pem,
            f"v=DKIM1; k=rsa; p={base64.b64encode(rsa_pub).decode()}",
        ),
        # RFC 8463 §4: the private key is the 32-byte seed, base64, as dkimpy expects
        DkimKey(
            domain,
            f"{selector}e",
            "ed25519-sha256",
            base64.b64encode(ed_seed),
            f"v=DKIM1; k=ed25519; p={base64.b64encode(ed_pub).decode()}",
        ),
    ]
