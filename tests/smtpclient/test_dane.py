"""smtpclient/dane.py: TLSA matching (RFC 6698 §2.1) and the SMTP rules of RFC 7672 §3.1, on
certificates from the test CA; the socket path is tests/queue/test_dane.py (Postfix peer)."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailhouse.smtpclient.dane import DaneMismatch, Failure, Tlsa, check_chain, matches
from tests.smtpclient.testca import TestCA


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCA, list[bytes]]:
    ca = TestCA(tmp_path / "ca")
    cert, _ = ca.issue("mx.example.test")
    chain = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(cert.read_bytes())]
    return ca, chain


def spki(der: bytes) -> bytes:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_selectors_and_matching_types(pki: tuple[TestCA, list[bytes]]) -> None:
    leaf = pki[1][0]
    for sel, data in ((0, leaf), (1, spki(leaf))):
        assert matches(Tlsa(3, sel, 0, data), leaf)
        assert matches(Tlsa(3, sel, 1, hashlib.sha256(data).digest()), leaf)
        assert matches(Tlsa(3, sel, 2, hashlib.sha512(data).digest()), leaf)
        assert not matches(Tlsa(3, sel, 1, hashlib.sha256(data + b"x").digest()), leaf)


def test_unusable_records(pki: tuple[TestCA, list[bytes]]) -> None:
    """RFC 7672 §3.1.3: PKIX usages are unusable; so are unknown parameters and bad digest sizes."""
    h = hashlib.sha256(spki(pki[1][0])).digest()
    assert Tlsa(3, 1, 1, h).usable and Tlsa(2, 1, 1, h).usable
    for r in (Tlsa(0, 1, 1, h), Tlsa(1, 1, 1, h), Tlsa(4, 1, 1, h), Tlsa(3, 2, 1, h), Tlsa(3, 1, 3, h)):
        assert not r.usable and not matches(r, pki[1][0])
    assert not Tlsa(3, 1, 1, h[:31]).usable and not Tlsa(3, 1, 2, h).usable


def test_dane_ee_ignores_names_and_dates(pki: tuple[TestCA, list[bytes]]) -> None:
    leaf = pki[1][0]
    rec = Tlsa(3, 1, 1, hashlib.sha256(spki(leaf)).digest())
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=400)
    assert check_chain([rec], [leaf], "other.example.test", now=later) == rec


def test_dane_ta_matches_a_chain_certificate_then_checks_name_and_dates(
    pki: tuple[TestCA, list[bytes]],
) -> None:
    ca, chain = pki
    rec = Tlsa(2, 0, 1, hashlib.sha256(ca.cert.public_bytes(Encoding.DER)).digest())
    assert check_chain([rec], chain, "mx.example.test") == rec
    with pytest.raises(DaneMismatch) as e:
        check_chain([rec], chain, "other.example.test")
    assert e.value.failure is Failure.CERTIFICATE_HOST_MISMATCH
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=400)
    with pytest.raises(DaneMismatch) as e:
        check_chain([rec], chain, "mx.example.test", now=later)
    assert e.value.failure is Failure.CERTIFICATE_EXPIRED
    # RFC 7672 §3.1.2: the anchor must be in the presented chain
    with pytest.raises(DaneMismatch) as e:
        check_chain([rec], chain[:1], "mx.example.test")
    assert e.value.failure is Failure.TLSA_INVALID


def test_dane_ta_from_another_ca_does_not_verify(tmp_path: Path, pki: tuple[TestCA, list[bytes]]) -> None:
    """A chain that presents the anchor but whose leaf the anchor did not sign."""
    other = TestCA(tmp_path / "other", "Other CA")
    _, chain = pki
    other_der = other.cert.public_bytes(Encoding.DER)
    rec = Tlsa(2, 1, 1, hashlib.sha256(spki(other_der)).digest())
    with pytest.raises(DaneMismatch) as e:
        check_chain([rec], [chain[0], other_der], "mx.example.test")
    assert e.value.failure is Failure.CERTIFICATE_NOT_TRUSTED


def test_no_match_and_no_certificate(pki: tuple[TestCA, list[bytes]]) -> None:
    with pytest.raises(DaneMismatch) as e:
        check_chain([Tlsa(3, 1, 1, b"\0" * 32), Tlsa(1, 1, 1, b"\0" * 32)], pki[1], "mx.example.test")
    assert e.value.failure is Failure.TLSA_INVALID
    with pytest.raises(DaneMismatch) as e:
        check_chain([Tlsa(3, 1, 1, b"\0" * 32)], [], "mx.example.test")
    assert e.value.failure is Failure.VALIDATION_FAILURE


def test_dane_ta_accepts_any_reference_identifier(pki: tuple[TestCA, list[bytes]]) -> None:
    """RFC 7672 §3.2.2: the MX host name, its CNAME expansion and the next-hop domain are all
    reference identifiers: the certificate needs to name one of them."""
    ca, chain = pki
    rec = Tlsa(2, 0, 1, hashlib.sha256(ca.cert.public_bytes(Encoding.DER)).digest())
    assert check_chain([rec], chain, ["alias.example.test", "mx.example.test", "example.test"]) == rec
    with pytest.raises(DaneMismatch) as e:
        check_chain([rec], chain, ["alias.example.test", "example.test"])
    assert e.value.failure is Failure.CERTIFICATE_HOST_MISMATCH
    assert "alias.example.test or example.test" in e.value.detail
