"""The verified-password cache in front of argon2id (accounts/authcache.py), through Authenticator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse.accounts import passwords
from mailhouse.accounts.auth import Authenticator
from mailhouse.accounts.authcache import AuthCache
from mailhouse.accounts.throttle import LoginThrottle
from mailhouse.store import open_store
from mailhouse.store.api import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/mailhouse.db", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    h, scram = passwords.make_credentials("right")
    await s.add_account("alice@example.org", h, scram=scram)
    yield s
    await s.close()


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = passwords.verify_password

    def counting(stored: str | None, pw: str) -> bool:
        calls.append(pw)
        return real(stored, pw)

    monkeypatch.setattr(passwords, "verify_password", counting)
    return calls


async def test_second_login_skips_argon2(store: Store, argon2_calls: list[str]) -> None:
    auth = Authenticator(store, LoginThrottle(store))
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    assert await auth.check("Alice@Example.org", "right", "127.0.0.1")
    assert argon2_calls == ["right"]


async def test_wrong_password_always_pays_argon2_and_fails(store: Store, argon2_calls: list[str]) -> None:
    auth = Authenticator(store, LoginThrottle(store))
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    for _ in range(2):
        assert await auth.check("alice@example.org", "wrong", "127.0.0.2") is None
    assert argon2_calls == ["right", "wrong", "wrong"]
    assert await auth.check("alice@example.org", "right", "127.0.0.1")  # still cached
    assert len(argon2_calls) == 3


async def test_password_change_invalidates(store: Store, argon2_calls: list[str]) -> None:
    auth = Authenticator(store, LoginThrottle(store))
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    h, scram = passwords.make_credentials("new")
    await store.set_password("alice@example.org", h, scram)
    assert await auth.check("alice@example.org", "right", "127.0.0.1") is None  # old one is gone
    assert await auth.check("alice@example.org", "new", "127.0.0.1")
    assert argon2_calls == ["right", "right", "new"]


async def test_entries_expire(store: Store, argon2_calls: list[str]) -> None:
    now = [1000.0]
    auth = Authenticator(store, LoginThrottle(store), cache_ttl=60, clock=lambda: now[0])
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    now[0] += 59
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    assert argon2_calls == ["right"]
    now[0] += 2  # past the TTL of the first verification
    assert await auth.check("alice@example.org", "right", "127.0.0.1")
    assert argon2_calls == ["right", "right"]


async def test_cache_ttl_zero_turns_the_cache_off(store: Store, argon2_calls: list[str]) -> None:
    auth = Authenticator(store, LoginThrottle(store), cache_ttl=0)  # [auth] cache_ttl = 0
    for _ in range(3):
        assert await auth.check("alice@example.org", "right", "127.0.0.1")
    assert argon2_calls == ["right"] * 3


def test_no_plaintext_kept() -> None:
    authcache = AuthCache()
    authcache.remember("a@b", "$argon2id$stored", "hunter2-secret")
    stored: Any = authcache._entries["a@b"]
    assert b"hunter2-secret" not in repr(stored).encode() and "hunter2-secret" not in repr(stored)
    assert authcache.hit("a@b", "$argon2id$stored", "hunter2-secret")
    assert not authcache.hit("a@b", "$argon2id$stored", "hunter2-secreT")


def test_caches_are_per_authenticator() -> None:
    """No process-wide cache: what one node's authenticator verified, another does not know."""
    a, b = AuthCache(), AuthCache()
    a.remember("a@b", "$argon2id$stored", "pw")
    assert a.hit("a@b", "$argon2id$stored", "pw")
    assert not b.hit("a@b", "$argon2id$stored", "pw")


def test_injected_clock_expires_entries() -> None:
    now = [0.0]
    cache = AuthCache(clock=lambda: now[0])
    cache.remember("a@b", "h", "pw", ttl=10)
    now[0] = 10.0
    assert cache.hit("a@b", "h", "pw")
    now[0] = 10.5
    assert not cache.hit("a@b", "h", "pw")


async def test_concurrent_logins_share_one_argon2(store: Store, argon2_calls: list[str]) -> None:
    """Ten connections logging in at once on a node whose cache is cold (a second worker) pay one
    argon2id verification; a wrong password running beside them still fails."""
    import asyncio

    auth = Authenticator(store, LoginThrottle(store, is_trusted=lambda ip: True))
    got = await asyncio.gather(*(auth.check("alice@example.org", "right", f"127.0.0.{i}") for i in range(10)))
    assert all(a is not None for a in got)
    assert argon2_calls == ["right"]
    bad = await asyncio.gather(*(auth.check("alice@example.org", "wrong", f"127.0.1.{i}") for i in range(2)))
    assert bad == [None, None]
