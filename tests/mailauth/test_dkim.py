"""DKIM sign + verify round trips (RFC 6376, RFC 8463) with keys served by a real dnsmasq."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailhouse.mailauth import dkim, dkimkeys
from mailhouse.message.headers import get_headers, prepend_header
from mailhouse.store.api import DkimKey
from tests.peers.dns import DNSServer

MESSAGE = (
    b"From: Alice <alice@a.test>\r\n"
    b"To: bob@b.test\r\n"
    b"Subject: DKIM round trip\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@a.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nthis is signed.\r\n"
)


@pytest.fixture(scope="module")
def keys() -> list[DkimKey]:
    return dkimkeys.generate("a.test", "mh")


@pytest.fixture
def dns(dns_server_factory: Callable[..., DNSServer], keys: list[DkimKey]) -> DNSServer:
    return dns_server_factory(txt={f"{k.selector}._domainkey.a.test": [k.public_record] for k in keys})


def ns(server: DNSServer) -> list[tuple[str, int]]:
    assert server.port is not None
    return [(server.host, server.port)]


def by_algo(results: list[dkim.DkimResult]) -> dict[str, str]:
    return {r.algorithm: r.result for r in results}


def test_sign_adds_one_signature_per_key(keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    sigs = get_headers(signed, "DKIM-Signature")
    assert len(sigs) == 2
    assert signed.endswith(MESSAGE)  # only prepended, nothing else touched
    assert all(b"c=relaxed/relaxed" in s and b"d=a.test" in s for s in sigs)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_round_trip_through_real_dns(dns: DNSServer, keys: list[DkimKey], algorithm: str) -> None:
    key = [k for k in keys if k.algorithm == algorithm]
    signed = dkim.sign(MESSAGE, "a.test", key)
    results = dkim.verify(signed, ns(dns))
    assert [(r.result, r.algorithm, r.domain, r.selector) for r in results] == [
        ("pass", algorithm, "a.test", key[0].selector)
    ], results
    # the key really came from dnsmasq, and nothing was forwarded off the machine
    assert any(f"{key[0].selector}._domainkey.a.test" in q for q in dns.queries())
    assert dns.forwarded() == []


def test_both_signatures_verify(dns: DNSServer, keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    assert by_algo(dkim.verify(signed, ns(dns))) == {"rsa-sha256": "pass", "ed25519-sha256": "pass"}


def test_lf_line_endings_round_trip(dns: DNSServer, keys: list[DkimKey]) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    signed = dkim.sign(lf, "a.test", keys)
    assert b"\r\n" not in signed
    assert by_algo(dkim.verify(signed, ns(dns))) == {"rsa-sha256": "pass", "ed25519-sha256": "pass"}


def test_tampered_body_fails(dns: DNSServer, keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    tampered = signed.replace(b"this is signed.", b"this is forged.")
    assert by_algo(dkim.verify(tampered, ns(dns))) == {"rsa-sha256": "fail", "ed25519-sha256": "fail"}


def test_tampered_subject_fails(dns: DNSServer, keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    tampered = signed.replace(b"Subject: DKIM round trip", b"Subject: DKIM round trap")
    assert by_algo(dkim.verify(tampered, ns(dns))) == {"rsa-sha256": "fail", "ed25519-sha256": "fail"}


def test_added_from_breaks_signature_oversigning(dns: DNSServer, keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    # a second From inserted above the signed one (RFC 6376 §8.15)
    i = signed.index(b"From: Alice")
    tampered = signed[:i] + b"From: Mallory <m@evil.test>\r\n" + signed[i:]
    assert by_algo(dkim.verify(tampered, ns(dns))) == {"rsa-sha256": "fail", "ed25519-sha256": "fail"}


def test_trace_fields_added_later_keep_it_valid(dns: DNSServer, keys: list[DkimKey]) -> None:
    signed = dkim.sign(MESSAGE, "a.test", keys)
    relayed = prepend_header(signed, "Received", "from x by y; Thu, 01 Jan 2026 00:00:01 +0000")
    relayed = relayed.replace(b"Subject: DKIM round trip", b"Subject:   DKIM round trip")  # relaxed
    assert by_algo(dkim.verify(relayed, ns(dns))) == {"rsa-sha256": "pass", "ed25519-sha256": "pass"}


def test_key_missing_from_dns_is_permerror(
    dns_server_factory: Callable[..., DNSServer], keys: list[DkimKey]
) -> None:
    empty = dns_server_factory()
    results = dkim.verify(dkim.sign(MESSAGE, "a.test", keys), ns(empty))
    assert [r.result for r in results] == ["permerror", "permerror"]
    assert "no key record" in results[0].error


def test_wrong_key_published_fails(dns_server_factory: Callable[..., DNSServer], keys: list[DkimKey]) -> None:
    other = dkimkeys.generate("a.test", "mh")
    server = dns_server_factory(txt={f"{k.selector}._domainkey.a.test": [k.public_record] for k in other})
    results = dkim.verify(dkim.sign(MESSAGE, "a.test", keys), ns(server))
    assert by_algo(results) == {"rsa-sha256": "fail", "ed25519-sha256": "fail"}


def test_unreachable_nameserver_is_temperror(keys: list[DkimKey]) -> None:
    from tests.peers.ports import free_port

    dead = [("127.0.0.1", free_port("127.0.0.1"))]  # nothing listens: never the system resolver
    results = dkim.verify(dkim.sign(MESSAGE, "a.test", keys[:1]), dead, timeout=1.0)
    assert [r.result for r in results] == ["temperror"]


def test_unsigned_message_has_no_results(dns: DNSServer) -> None:
    assert dkim.verify(MESSAGE, ns(dns)) == []


def test_sign_requires_from(keys: list[DkimKey]) -> None:
    with pytest.raises(ValueError, match="From"):
        dkim.sign(b"Subject: x\r\n\r\nbody\r\n", "a.test", keys)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_signatures_are_identical_to_dkimpy(
    keys: list[DkimKey], monkeypatch: pytest.MonkeyPatch, eol: bytes
) -> None:
    """We sign without dkimpy.DKIM.sign (one parse and body hash per message, keys kept in
    OpenSSL); PKCS#1 v1.5 and Ed25519 are deterministic, so every signature field must be
    byte-for-byte what dkimpy itself produces for the same key, time and header list."""
    import time

    import dkim as dkimpy_mod

    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.5)  # dkimpy's t= comes from time.time
    msg = (
        b"Received: from x by y; Thu, 01 Jan 2026 00:00:00 +0000\r\nX-Mailer:  not   signed\r\n"
        + MESSAGE.replace(b"Subject: DKIM round trip", b"Subject: a long subject " + b"word " * 30)
        + b"trailing space \t\r\n  two  spaces,\ttab, \t mixed \r\n\r\n\r\n"
    ).replace(b"\r\n", eol)
    ours = dkim.DkimSigner(clock=lambda: 1_790_000_000.5).sign(msg, "A.test", keys)
    include = dkim.headers_to_sign(msg)
    theirs = b""
    for key in sorted(keys, key=lambda k: k.algorithm != "ed25519-sha256"):
        theirs += dkimpy_mod.DKIM(msg, linesep=eol).sign(
            key.selector.encode(),
            b"a.test",
            key.private_key,
            signature_algorithm=key.algorithm.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    assert ours == theirs + msg


def test_unusable_key_is_a_value_error(keys: list[DkimKey]) -> None:
    bad = DkimKey("a.test", "x", "rsa-sha256", b"-----BEGIN RSA PRIVATE KEY-----\nnope\n", "")
    with pytest.raises(ValueError, match="unusable"):
        dkim.sign(MESSAGE, "a.test", [bad])
    bad_ed = DkimKey("a.test", "y", "ed25519-sha256", b"c2hvcnQ=", "")
    with pytest.raises(ValueError, match="unusable"):
        dkim.sign(MESSAGE, "a.test", [bad_ed])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"\r\n\r\n",
        b"x",
        b"plain text, single spaces\r\nonly\r\n\r\n",
        b"a  b\t\tc \r\n \t\r\n\r\n",
        b"end with space \r\n",
        b"tab\tonly\r\n",
        b" lead\r\n\ttab\r\nend  ",
        b"a \r\n\r\nb\r\n",
    ],
)
def test_canonical_body_matches_dkimpy(body: bytes) -> None:
    from dkim.canonicalization import Relaxed

    assert dkim.canonical_body(body) == Relaxed.canonicalize_body(body)


@pytest.mark.parametrize(
    "msg",
    [
        b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n",
        b"From: a@b\r\n folded\r\n\r\n\r\nbody\r\n\r\n",
        b"From: a@b\r\n",  # no body
        b"From: a@b\r\n\r\n",
        b"From: a@b\nSubject: lf\n\nbody\n",
        b"From: a@b\r\nX: bare\rcr\r\n\r\nbody\r\n",
        b"From: a@b\r\n\nmixed\r\n",
    ],
)
def test_parse_matches_dkimpy(msg: bytes) -> None:
    import dkim as dkimpy_mod

    assert dkim._parse(msg) == dkimpy_mod.rfc822_parse(msg)
