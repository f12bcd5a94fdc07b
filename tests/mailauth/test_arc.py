"""ARC helpers (RFC 8617): the oldest ARC-Authentication-Results read for a DMARC override, no
chain → none, a hostile chain → fail, and no seal with an invalid cv (temperror)."""

from __future__ import annotations

from mailhouse.mailauth import arc, dkimkeys

HEAD = (
    b"ARC-Authentication-Results: i=2; lists.test; dkim=fail header.d=bank.test; dmarc=fail\r\n"
    b"ARC-Authentication-Results: i=1; mx.first.test; dkim=pass (good) header.d=Bank.TEST;\r\n"
    b"\tspf=fail smtp.mailfrom=x@bank.test; dmarc=pass header.from=bank.test\r\n"
    b"From: a@bank.test\r\n\r\n"
)


def test_oldest_results_reads_instance_one_only() -> None:
    results, domains = arc.oldest_results(HEAD)
    assert results == {"dkim": ["pass"], "spf": ["fail"], "dmarc": ["pass"]}
    assert domains == {"dkim": ["bank.test"], "dmarc": ["bank.test"]}


def _never(name: bytes, timeout: float = 5.0) -> bytes | None:
    raise AssertionError("no DNS without a chain")


def test_no_chain_is_none_and_garbage_is_fail() -> None:
    assert arc.verify(b"From: a@b.test\r\n\r\nbody\r\n", _never).result == "none"
    bogus = b"ARC-Seal: i=1; cv=none; d=x.test; s=s; b=!!!\r\nFrom: a@b.test\r\n\r\nbody\r\n"
    assert arc.verify(bogus, lambda n, timeout=5.0: None).result == "fail"


def test_seal_needs_our_results_and_a_valid_cv() -> None:
    key = next(k for k in dkimkeys.generate("fwd.test", "s") if k.algorithm == "rsa-sha256")
    msg = b"From: a@bank.test\r\nSubject: x\r\n\r\nbody\r\n"
    assert arc.seal(msg, key, "mx.fwd.test") == b""  # no Authentication-Results of ours
    ok = b"Authentication-Results: mx.fwd.test; spf=pass smtp.mailfrom=bank.test; arc=none\r\n" + msg
    sealed = arc.seal(ok, key, "mx.fwd.test", now=1_700_000_000)
    assert b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test; s=sr;" in sealed
    temp = ok.replace(b"arc=none", b"arc=temperror")
    assert arc.seal(temp, key, "mx.fwd.test") == b""  # RFC 8617 §4.1.3: never an invalid cv=
