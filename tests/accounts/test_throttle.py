"""accounts/throttle.py and accounts/bans.py over a real (SQLite) store, in process, with an
injected wall clock: the counting rules, exactly. The socket-level behaviour is in
test_login_throttle.py / test_bans.py, the cross-node one in tests/cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.accounts import passwords
from mailhouse.accounts.auth import Authenticator
from mailhouse.accounts.bans import Bans, network_of, normalise_ip
from mailhouse.accounts.housekeeping import Housekeeper
from mailhouse.accounts.throttle import Attempt, LoginThrottle, penalty
from mailhouse.config import AuthLimits
from mailhouse.store import open_store
from mailhouse.store.api import Store

LIM = AuthLimits(
    failure_window=900.0,
    failure_delay=1.0,
    max_failure_delay=64.0,
    account_delay_after=5,
    network_delay_after=10,
    ban_after=20,
    ban_time=3600.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/mailhouse.db", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    h, scram = passwords.make_credentials("right")
    await s.add_account("alice@example.org", h, scram=scram)
    yield s
    await s.close()


def throttle(store: Store, clock: Clock, lim: AuthLimits = LIM, trusted: str = "") -> LoginThrottle:
    is_trusted = (lambda ip: ip.startswith(trusted)) if trusted else (lambda ip: False)
    bans = Bans(store, is_trusted=is_trusted, clock=clock)
    return LoginThrottle(store, lim, bans, is_trusted=is_trusted, clock=clock)


async def fail(t: LoginThrottle, ip: str, user: str, n: int = 1) -> None:
    for _ in range(n):
        await t.record_failure(Attempt(t, normalise_ip(ip), user, "test"), "password")


def test_penalty_doubles_to_the_cap() -> None:
    assert [penalty(n, LIM) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 64, 64]
    assert penalty(10_000, LIM) == 64  # no overflow


async def test_success_clears_only_its_own_pair(store: Store) -> None:
    clock = Clock()
    t = throttle(store, clock)
    await fail(t, "192.0.2.1", "victim@example.org", 3)
    await fail(t, "192.0.2.1", "mallory@example.org", 2)
    assert await t.delay_for("192.0.2.1", "mallory@example.org") == penalty(5, LIM)
    await t.record_success("192.0.2.1", "mallory@example.org")
    # the three failures against another account still count, for every account
    assert await t.delay_for("192.0.2.1", "mallory@example.org") == penalty(3, LIM)
    assert await t.delay_for("192.0.2.1", "victim@example.org") == penalty(3, LIM)
    # a success with no failures of its own changes nothing
    await t.record_success("192.0.2.1", "mallory@example.org")
    assert await t.delay_for("192.0.2.1", "victim@example.org") == penalty(3, LIM)


async def test_a_typo_then_success_leaves_no_penalty(store: Store) -> None:
    clock = Clock()
    t = throttle(store, clock)
    await fail(t, "192.0.2.2", "alice@example.org")
    clock.now += 10
    await t.record_success("192.0.2.2", "alice@example.org")
    assert await t.delay_for("192.0.2.2", "alice@example.org") == 0
    assert await t.delay_for("192.0.2.2", "bob@example.org") == 0


async def test_cleared_pair_never_undercounts_the_others_as_time_passes(store: Store) -> None:
    clock = Clock()
    t0 = clock.now
    t = throttle(store, clock)
    await fail(t, "192.0.2.3", "own@example.org")  # t0: the pair's first failure
    clock.now = t0 + 100
    await fail(t, "192.0.2.3", "victim@example.org")
    clock.now = t0 + 200
    await fail(t, "192.0.2.3", "own@example.org")
    await t.record_success("192.0.2.3", "own@example.org")
    for at in (t0 + 300, t0 + 899):
        clock.now = at
        assert await t.delay_for("192.0.2.3", "x@example.org") == penalty(1, LIM), at
    for at in (t0 + 950, t0 + 999):
        # the cancelling event (dated t0) expired before the pair's later failure: counted high
        # for a while, never low — the victim failure (t0+100) counts until t0+1000
        clock.now = at
        assert await t.delay_for("192.0.2.3", "x@example.org") >= penalty(1, LIM), at
    clock.now = t0 + 1101  # everything has aged out
    assert await t.delay_for("192.0.2.3", "x@example.org") == 0


async def test_account_counter_from_any_ip_after_its_threshold(store: Store) -> None:
    clock = Clock()
    t = throttle(store, clock)
    for i in range(LIM.account_delay_after - 1):
        await fail(t, f"198.51.{i}.1", "alice@example.org")
    assert await t.delay_for("203.0.113.9", "alice@example.org") == 0  # a few typos are free
    await fail(t, "198.51.99.1", "alice@example.org")
    assert await t.delay_for("203.0.113.9", "alice@example.org") == penalty(1, LIM)
    await fail(t, "198.51.98.1", "alice@example.org", 20)
    # capped: the owner waits at most max_failure_delay, never locked out
    assert await t.delay_for("203.0.113.9", "Alice@Example.org ") == LIM.max_failure_delay
    assert await t.delay_for("203.0.113.9", "bob@example.org") == 0


async def test_network_aggregates_24_and_64(store: Store) -> None:
    clock = Clock()
    t = throttle(store, clock)
    for i in range(LIM.network_delay_after):
        await fail(t, f"192.0.2.{i + 10}", f"u{i}@example.org")
        await fail(t, f"2001:db8:0:1::{i + 10:x}", f"u{i}@example.org")
    assert await t.delay_for("192.0.2.200", "new@example.org") == penalty(1, LIM)
    assert await t.delay_for("192.0.3.200", "new@example.org") == 0
    assert await t.delay_for("2001:db8:0:1:ffff::1", "new@example.org") == penalty(1, LIM)
    assert await t.delay_for("2001:db8:0:2::1", "new@example.org") == 0
    assert network_of("::ffff:192.0.2.7") == "192.0.2.0/24"
    assert normalise_ip("::FFFF:192.0.2.7") == "192.0.2.7" and normalise_ip("2001:DB8::0:1") == "2001:db8::1"


async def test_two_stores_on_one_database_share_counts_and_bans(store: Store, tmp_path: Path) -> None:
    """Two nodes (two store instances, two throttles) on one database see each other's counts."""
    other = open_store(f"sqlite:///{tmp_path}/mailhouse.db", tmp_path)
    await other.open()
    try:
        clock = Clock()
        a, b = throttle(store, clock), throttle(other, clock)
        await fail(a, "192.0.2.4", "alice@example.org", 3)
        assert await b.delay_for("192.0.2.4", "bob@example.org") == penalty(3, LIM)
        await fail(b, "192.0.2.4", "alice@example.org", LIM.ban_after - 3)
        assert await a.bans.is_banned("192.0.2.4")
        assert [x.ip for x in await a.bans.list()] == ["192.0.2.4"]
    finally:
        await other.close()


async def test_ban_cache_and_expiry(store: Store) -> None:
    clock = Clock()
    mine = Bans(store, clock=clock, cache_ttl=3)
    cli = Bans(store, clock=clock)  # e.g. `mailhouse ban add` in another process
    assert not await mine.is_banned("192.0.2.5")
    await cli.ban("192.0.2.5", 60, "test")
    assert not await mine.is_banned("192.0.2.5")  # cached "no" for CACHE_TTL
    clock.now += 3.5
    assert await mine.is_banned("192.0.2.5")
    clock.now += 60
    assert not await mine.is_banned("192.0.2.5")  # expired
    assert await cli.list() == []


async def test_banned_refused_without_a_password_check(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = passwords.verify_password

    def counting(stored: str | None, pw: str) -> bool:
        calls.append(pw)
        return real(stored, pw)

    monkeypatch.setattr(passwords, "verify_password", counting)
    auth = Authenticator(store, limits=AuthLimits(failure_delay=0.01, max_failure_delay=0.01, ban_after=2))
    assert await auth.check("alice@example.org", "wrong", "192.0.2.6") is None
    assert await auth.check("alice@example.org", "wrong", "192.0.2.6") is None  # → banned
    assert await auth.bans.is_banned("192.0.2.6")
    assert await auth.check("alice@example.org", "right", "192.0.2.6") is None
    assert calls == ["wrong", "wrong"]  # the third attempt never reached argon2
    assert await auth.check("alice@example.org", "right", "192.0.2.7") is not None


async def test_trusted_networks_are_not_counted(store: Store) -> None:
    clock = Clock()
    auth = Authenticator(
        store, limits=AuthLimits(failure_delay=5, ban_after=2), is_trusted=lambda ip: ip.startswith("10.")
    )
    for _ in range(5):
        assert await auth.check("alice@example.org", "wrong", "10.0.0.1") is None  # no 5 s penalties
    assert not await auth.bans.is_banned("10.0.0.1")
    assert await auth.limiter.delay_for("10.0.0.1", "x") == 0
    del clock


async def test_housekeeping_purges_expired_marks_and_old_events(store: Store) -> None:
    clock = Clock()
    await store.set_mark("ban:192.0.2.8", "old", clock.now - 1)
    await store.set_mark("ban:192.0.2.9", "live", clock.now + 100)
    await store.count_event("authfail:ip:192.0.2.8", clock.now - 3 * 86400, 900)
    hk = Housekeeper(store, clock=clock)
    assert await hk.purge() == 2
    assert [m.key for m in await store.list_marks("ban:", clock.now)] == ["ban:192.0.2.9"]
