"""The SRS codec (delivery/srs.py): SRS0/SRS1 forms, hash and age checks, rotation."""

from __future__ import annotations

import pytest

from mailhouse.delivery.srs import DAY, SrsCodec, SrsError, SrsRefusal

NOW = 1_796_000_000.0  # a fixed day


def codec(
    day_offset: float = 0, keys: tuple[bytes, ...] = (b"k" * 32,), domain: str = "fwd.test"
) -> SrsCodec:
    return SrsCodec(domain, keys, 21, clock=lambda: NOW + day_offset * DAY)


def test_srs0_round_trip_and_shape() -> None:
    c = codec()
    srs = c.forward("alice@Orig.test")
    local, _, domain = srs.rpartition("@")
    assert domain == "fwd.test"
    tag, h, ts, odomain, olocal = local.split("=")
    assert (tag, odomain, olocal) == ("SRS0", "Orig.test", "alice")
    assert len(h) == 4 and len(ts) == 2
    assert c.reverse(srs) == "alice@Orig.test"
    # case folded in transit (hash and timestamp compared case-insensitively)
    assert c.reverse(srs.lower()) == "alice@orig.test"
    assert c.reverse(srs.upper().replace("FWD.TEST", "fwd.test")).lower() == "alice@orig.test"


def test_not_rewritten() -> None:
    c = codec()
    assert c.forward("") == ""  # null sender
    assert c.forward("postmaster") == "postmaster"
    ours = c.forward("bob@b.test")
    assert c.forward(ours) == ours  # already our SRS address


def test_forged_hash_refused() -> None:
    c = codec()
    srs = c.forward("alice@orig.test")
    tag, h, rest = srs.split("=", 2)
    forged = f"{tag}={'AAAA' if h.upper() != 'AAAA' else 'BBBB'}={rest}"
    with pytest.raises(SrsError) as e:
        c.reverse(forged)
    assert e.value.kind is SrsRefusal.FORGED
    # another address under the same hash
    with pytest.raises(SrsError) as e:
        c.reverse(srs.replace("=alice@", "=mallory@"))
    assert e.value.kind is SrsRefusal.FORGED
    # a different secret
    with pytest.raises(SrsError):
        codec(keys=(b"other" * 8,)).reverse(srs)


def test_expiry_and_future() -> None:
    srs = codec().forward("alice@orig.test")
    assert codec(21).reverse(srs) == "alice@orig.test"
    with pytest.raises(SrsError) as e:
        codec(22).reverse(srs)
    assert e.value.kind is SrsRefusal.EXPIRED
    with pytest.raises(SrsError) as e:
        codec(-1).reverse(srs)  # dated tomorrow
    assert e.value.kind is SrsRefusal.EXPIRED
    # the 1024-day wrap: still one day old after the counter wrapped
    late = SrsCodec("fwd.test", (b"k" * 32,), 21, clock=lambda: 1023 * DAY + 5)
    assert SrsCodec("fwd.test", (b"k" * 32,), 21, clock=lambda: 1024 * DAY + 5).reverse(
        late.forward("a@b.test")
    ) == ("a@b.test")


def test_srs1_double_forward() -> None:
    first = codec(domain="first.test", keys=(b"1" * 32,))
    second = codec(domain="second.test", keys=(b"2" * 32,))
    third = codec(domain="third.test", keys=(b"3" * 32,))
    srs0 = first.forward("alice@orig.test")
    srs1 = second.forward(srs0)
    assert srs1.startswith("SRS1=") and srs1.endswith(
        "=first.test==" + srs0[5:].split("@")[0] + "@second.test"
    )
    assert second.reverse(srs1) == srs0  # back to the first forwarder
    assert first.reverse(second.reverse(srs1)) == "alice@orig.test"
    srs1b = third.forward(srs1)  # a third hop keeps the first forwarder
    assert srs1b.split("=", 2)[2] == srs1.split("=", 2)[2].replace("second.test", "third.test")
    assert third.reverse(srs1b) == srs0
    with pytest.raises(SrsError) as e:
        second.reverse(srs1.replace("first.test", "evil.test"))
    assert e.value.kind is SrsRefusal.FORGED


def test_rotation_keeps_previous_secret() -> None:
    old = codec(keys=(b"old" * 11,))
    srs = old.forward("alice@orig.test")
    rotated = codec(keys=(b"new" * 11, b"old" * 11))
    assert rotated.reverse(srs) == "alice@orig.test"
    assert rotated.forward("alice@orig.test") != srs


@pytest.mark.parametrize(
    "addr",
    [
        "SRS0=abc@fwd.test",
        "SRS0==ZZ=d=l@fwd.test",
        "SRS1=x@fwd.test",
        "srsx@fwd.test",
        "SRS0=aaaa=1!=d=l@fwd.test",
    ],
)
def test_malformed(addr: str) -> None:
    with pytest.raises(SrsError):
        codec().reverse(addr)
